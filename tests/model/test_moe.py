"""MoE routing and load balancing; every expert on every token when decoding."""

import pytest
import torch

from minir1 import Transformer
from minir1.model import Gate, MoE, max_violation, sequence_balance
from minir1.model import moe as moe_module
from tests.conftest import small_cfg


def make_gate(**kw):
    cfg = small_cfg(**kw)
    gate = Gate(cfg)
    torch.nn.init.normal_(gate.weight, std=0.5)
    return cfg, gate


def test_bias_changes_selection_not_weights():
    cfg, gate = make_gate(route_scale=2.5)
    x = torch.randn(64, cfg.dim)
    s = gate.scores(x)
    gate.bias[5] = 10.0  # expert 5 now wins every token's selection...
    w, idx = gate.route(s)
    assert (idx == 5).any(dim=-1).all()
    # ...but every weight is still the *unbiased* affinity, normalised over the selected experts
    expected = s.gather(1, idx)
    expected = expected / expected.sum(-1, keepdim=True) * 2.5
    torch.testing.assert_close(w, expected)


def test_routed_weights_sum_to_route_scale():
    cfg, gate = make_gate(route_scale=2.5)
    w, idx, _ = gate(torch.randn(100, cfg.dim))
    torch.testing.assert_close(w.sum(-1), torch.full((100,), 2.5))
    assert w.shape == idx.shape == (100, cfg.n_activated_experts)


def test_group_limit_is_respected():
    cfg, gate = make_gate()  # 16 experts in 4 groups, tokens may use 2 groups
    gate.bias.normal_(std=0.3)
    x = torch.randn(500, cfg.dim)
    s = gate.scores(x)
    _, idx = gate.route(s)
    per_group = cfg.n_routed_experts // cfg.n_expert_groups
    groups = idx // per_group
    assert max(len(set(row)) for row in groups.tolist()) <= cfg.n_limited_groups
    # and the kept groups are the ones with the largest sum of their top-2 biased scores
    top2 = (s + gate.bias).view(500, cfg.n_expert_groups, per_group).topk(2, -1).values.sum(-1)
    best = top2.topk(cfg.n_limited_groups, -1).indices.sort(-1).values
    for row, allowed in zip(groups.tolist(), best.tolist(), strict=False):
        assert set(row) <= set(allowed)
    # without the limit, tokens would have spread over more groups
    cfg_free, _ = make_gate(n_limited_groups=cfg.n_expert_groups)
    free = Gate(cfg_free)
    free.load_state_dict(gate.state_dict())
    _, idx_free = free.route(s)
    assert max(len(set(row)) for row in (idx_free // per_group).tolist()) > cfg.n_limited_groups


def test_softmax_gate_is_not_renormalised():
    cfg, gate = make_gate(score_func="softmax", n_expert_groups=1, n_limited_groups=1)
    w, idx, s = gate(torch.randn(20, cfg.dim))
    torch.testing.assert_close(w, s.gather(1, idx))
    assert (w.sum(-1) < 1).all()


def test_moe_matches_dense_per_token_loop():
    cfg = small_cfg()
    moe = MoE(cfg)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 7, cfg.dim)
    y, _ = moe(x)
    flat = x.view(-1, cfg.dim)
    w, idx, _ = moe.gate(flat)
    ref = torch.stack([sum(w[t, j] * moe.experts[int(idx[t, j])](flat[t])
                           for j in range(idx.shape[1]))
                       + moe.shared_experts(flat[t]) for t in range(flat.shape[0])])
    torch.testing.assert_close(y.view(-1, cfg.dim), ref, atol=1e-6, rtol=1e-5)


def test_idle_experts_are_never_called():
    cfg = small_cfg()
    moe = MoE(cfg)
    calls = []
    for e, expert in enumerate(moe.experts):
        expert.register_forward_hook(lambda m, i, o, e=e: calls.append(e))
    moe.gate.bias[:] = -100.0
    moe.gate.bias[[0, 1, 2, 3]] = 100.0  # everyone goes to experts 0-3 (two groups)
    moe(torch.randn(1, 9, cfg.dim))
    assert sorted(calls) == [0, 1, 2, 3]


def test_balance_loss_equals_alpha_under_uniform_routing():
    B, T, E, K = 2, 16, 8, 2
    scores = torch.full((B, T, E), 0.5)
    idx = torch.stack([torch.tensor([(2 * t) % E, (2 * t + 1) % E])
                       for t in range(T)]).expand(B, T, K)
    assert sequence_balance(scores, idx).item() == pytest.approx(1.0)
    cfg = small_cfg(balance_alpha=0.003)
    moe = MoE(cfg)
    torch.nn.init.zeros_(moe.gate.weight)  # all affinities equal...
    # ...ties broken deterministically
    moe.gate.bias.copy_(torch.arange(cfg.n_routed_experts) * 1e-3)
    x = torch.randn(1, cfg.n_routed_experts // cfg.n_activated_experts, cfg.dim)
    # with equal scores P_i = 1/N_r, so any f gives sum f_i P_i = 1 and the loss is exactly alpha
    assert moe(x, balance_alpha=cfg.balance_alpha)[1].item() == pytest.approx(0.003)
    # concentrated affinities on the chosen experts cost more
    skewed = torch.zeros(B, T, E)
    skewed[..., :K] = 1.0
    assert sequence_balance(skewed + 1e-3, idx.zero_() + torch.arange(K)).item() > 3.5


def test_balance_loss_reaches_the_total_loss_and_gradients():
    cfg = small_cfg(balance_alpha=0.1)
    model = Transformer(cfg)
    x = torch.randint(0, cfg.vocab_size, (2, 16))
    out = model(x, targets=x)
    assert out.balance_loss.item() > 0
    torch.testing.assert_close(out.loss, out.lm_loss + out.mtp_loss + out.balance_loss)
    grad = torch.autograd.grad(out.balance_loss, model.layers[1].ffn.gate.weight)[0]
    assert grad.abs().sum() > 0


def test_bias_update_balances_a_skewed_router():
    cfg = small_cfg(n_expert_groups=1, n_limited_groups=1)
    moe = MoE(cfg)
    with torch.no_grad():
        moe.gate.weight.normal_(std=0.02)
        # three experts attract most tokens (inputs share a mean direction)
        moe.gate.weight[:3] += 0.05
    g = torch.Generator().manual_seed(1)
    vio = []
    for _step in range(300):
        x = torch.randn(16, 64, cfg.dim, generator=g) + 0.1
        with torch.no_grad():
            moe(x)
        vio.append(max_violation(moe.update_bias(0.003)).item())
    final = sum(vio[-20:]) / 20
    assert vio[0] > 2.0  # three experts take most of the load at first
    assert final < 0.25, vio[::20]  # sampling noise alone gives ~0.1 at 256 tokens per expert
    assert moe.load.sum() == 0  # counts reset after each update


def test_loads_are_counted_only_in_training_and_accumulate():
    cfg = small_cfg()
    model = Transformer(cfg)
    x = torch.randint(0, cfg.vocab_size, (2, 8))
    model(x)
    model(x)
    per_step = 2 * 8 * cfg.n_activated_experts
    main = [layer.ffn.load.sum().item() for layer in model.layers[cfg.n_dense_layers:]]
    assert main == [2 * per_step] * cfg.n_moe_layers
    assert model.mtp[0].block.ffn.load.sum() == 0  # MTP runs only with targets
    vio = model.update_expert_bias()
    assert vio.shape == (len(model.moe_layers()),) and model.expert_load().sum() == 0
    model.eval()
    model(x)
    assert model.expert_load().sum() == 0


def test_max_violation():
    assert max_violation(torch.tensor([4.0, 4.0, 4.0, 4.0])).item() == 0
    assert max_violation(torch.tensor([10.0, 2.0, 2.0, 2.0])).item() == pytest.approx(1.5)


@pytest.mark.parametrize("kw", [{}, dict(n_shared_experts=2, route_scale=2.5),
                                dict(score_func="softmax", n_expert_groups=1, n_limited_groups=1,
                                     n_shared_experts=0)])
def test_all_experts_equals_dispatch(kw):
    cfg = small_cfg(**kw)
    torch.manual_seed(0)
    moe = MoE(cfg).eval()
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(3, 2, cfg.dim)
    with torch.no_grad():
        assert moe.dense_decode(6)
        dense, _ = moe(x)
        flat = x.view(-1, cfg.dim)
        w, idx, _ = moe.gate(flat)
        ref = torch.stack([sum(w[t, j] * moe.experts[int(idx[t, j])](flat[t])
                               for j in range(idx.shape[1]))
                           + (moe.shared_experts(flat[t]) if moe.shared_experts is not None else 0)
                           for t in range(flat.shape[0])])
    torch.testing.assert_close(dense.view(-1, cfg.dim), ref, atol=1e-6, rtol=1e-5)


def test_dense_decode_only_for_few_tokens_at_inference(monkeypatch):
    moe = MoE(small_cfg())
    assert not moe.dense_decode(1)  # training: dispatch, which counts each expert's load
    moe.eval()
    assert moe.dense_decode(moe_module.DENSE_DECODE_MAX_TOKENS)
    assert not moe.dense_decode(moe_module.DENSE_DECODE_MAX_TOKENS + 1)
    # experts too big to read all of them
    monkeypatch.setattr(moe_module, "DENSE_DECODE_MAX_BYTES", 1024)
    assert not moe.dense_decode(1)
