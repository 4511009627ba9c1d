"""The routed experts in grouped GEMMs (``minir1.model.grouped``) against the per-expert loop:
the same outputs and gradients, idle experts left alone by the optimiser, the choice logged once."""

import copy
import logging

import pytest
import torch

from minir1 import Transformer
from minir1.model import MoE, grouped
from minir1.model.moe import set_expert_impl
from tests.conftest import small_cfg, stream


def _moe_pair(seed=0, idle=(0, 1, 2, 3, 8)):
    """Two copies of one MoE, the loop and the grouped GEMMs; ``idle`` experts get no token."""
    cfg = small_cfg()
    torch.manual_seed(seed)
    loop = MoE(cfg)
    for p in loop.parameters():
        torch.nn.init.normal_(p, std=0.1)
    loop.gate.bias[list(idle)] = -100.0
    both = copy.deepcopy(loop)
    loop.experts.impl, both.experts.impl = "loop", "grouped"
    return cfg, loop, both


def test_grouped_experts_equal_the_loop_outputs_and_gradients():
    cfg, loop, grp = _moe_pair()
    x = torch.randn(3, 11, cfg.dim)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, _ = loop(xa)
    yb, _ = grp(xb)
    assert torch.equal(ya, yb)  # fp32 on a CPU: the same products, bit for bit
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert torch.equal(xa.grad, xb.grad)
    idle = []
    for (name, p), q in zip(loop.named_parameters(), grp.parameters(), strict=True):
        if p.grad is None:  # the loop never ran this expert
            idle.append(name)
            assert q.grad is not None and not q.grad.any(), name  # grouped: zeros
        else:
            assert torch.equal(p.grad, q.grad), name
    assert len(idle) == 5 * 3 and torch.equal(loop.load, grp.load)
    assert grouped.drop_idle_gradients([grp]) == 5
    assert [n for n, q in grp.named_parameters() if q.grad is None] == idle


def test_a_broadcast_gradient_reaches_the_grouped_kernel():
    cfg, loop, grp = _moe_pair(idle=())
    x = torch.randn(2, 5, cfg.dim)
    from minir1.model.moe import permute

    x_sorted, _, counts = permute(x.view(-1, cfg.dim), grp.gate(x.view(-1, cfg.dim))[1],
                                  cfg.n_routed_experts)
    grp.experts(x_sorted, counts).sum().backward()  # d/dy of a sum has stride 0
    loop.experts(x_sorted, counts).sum().backward()
    for p, q in zip(loop.experts.parameters(), grp.experts.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad if p.grad is not None else torch.zeros_like(p))


def test_the_whole_model_trains_alike_and_idle_experts_stay_untouched():
    """Two optimiser steps of the trainer, loop vs grouped: bit-equal weights. An idle expert keeps
    its weights exactly (no weight decay): the trainer drops the zero gradients the grouped GEMM
    gave it, as the loop never made them."""
    from minir1.train.loop import TrainConfig, Trainer

    cfg = small_cfg(bias_update_speed=0.0)
    torch.manual_seed(0)
    model = Transformer(cfg)
    for moe in model.moe_layers():
        moe.gate.bias[:4] = -100.0  # experts 0-3 (one group) never chosen
    runs = {}
    for impl in ("loop", "grouped"):
        m = copy.deepcopy(model)
        set_expert_impl(m, impl)
        tc = TrainConfig(steps=2, batch_size=4, seq_len=48, warmup_steps=0, lr=1e-2)
        history = Trainer(m, stream(), tc, progress=False).fit()
        runs[impl] = (m, history)
    (a, ha), (b, hb) = runs["loop"], runs["grouped"]
    assert [r["loss"] for r in ha] == [r["loss"] for r in hb]
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    before = model.layers[1].ffn.experts[0].w1.weight
    assert torch.equal(b.layers[1].ffn.experts[0].w1.weight, before)
    assert not torch.equal(b.layers[1].ffn.experts[5].w1.weight,
                           model.layers[1].ffn.experts[5].w1.weight)


def test_bf16_grouped_experts_match_the_loop():
    cfg, loop, grp = _moe_pair(idle=())
    loop, grp = loop.to(torch.bfloat16), grp.to(torch.bfloat16)
    x = torch.randn(2, 9, cfg.dim, dtype=torch.bfloat16)
    torch.testing.assert_close(grp(x)[0], loop(x)[0], rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("change, why", [
    (lambda m: m.double(), "not a grouped-GEMM dtype"),
    (lambda m: setattr(m.experts[0], "w1", torch.nn.Identity()), "not stacked nn.Linear"),
])
def test_forcing_grouped_where_it_cannot_run_says_why(change, why):
    _, _, grp = _moe_pair(idle=())
    change(grp)
    with pytest.raises(RuntimeError, match=why):
        grp(torch.randn(1, 4, grp.gate.weight.shape[1], dtype=grp.gate.weight.dtype))


def test_alignment_rule():
    assert grouped.grouped_support(torch.device("cpu"), torch.float32, (128, 64)) is None
    assert "multiples of 4" in grouped.grouped_support(torch.device("cpu"), torch.float32,
                                                       (128, 62))
    assert "multiples of 8" in grouped.grouped_support(torch.device("cpu"), torch.bfloat16,
                                                       (128, 60))
    assert "host sync" in grouped.grouped_support(torch.device("mps"), torch.float32, (128, 64))


def test_auto_keeps_the_loop_on_a_cpu_and_says_so_once(caplog, monkeypatch):
    monkeypatch.setattr(grouped, "_logged", set())
    cfg, loop, _ = _moe_pair(idle=())
    loop.experts.impl = "auto"
    calls = []
    loop.experts[5].register_forward_hook(lambda *a: calls.append(1))  # the loop calls experts
    with caplog.at_level(logging.INFO, logger="minir1.model.grouped"):
        for _ in range(3):
            loop(torch.randn(2, 8, cfg.dim))
    assert calls
    records = [r for r in caplog.records if r.name == "minir1.model.grouped"]
    assert len(records) == 1 and "a loop over the experts" in records[0].getMessage()
    monkeypatch.setattr(grouped, "CPU_DEFAULT", "grouped")
    calls.clear()
    with caplog.at_level(logging.INFO, logger="minir1.model.grouped"):
        loop(torch.randn(2, 8, cfg.dim))
    assert not calls and "one grouped GEMM" in caplog.records[-1].getMessage()
    with pytest.raises(ValueError, match="impl"):
        set_expert_impl(loop, "fast")


# ---------------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
def test_grouped_experts_on_cuda_match_the_cpu_loop():
    """Under bf16 autocast on CUDA (SM90+: the grouped kernel; older GPUs: the loop, logged),
    outputs and gradients match the fp32 loop on the CPU to bf16 precision; idle experts get no
    gradient once ``drop_idle_gradients`` ran."""
    cfg, loop, grp = _moe_pair()
    grp = grp.cuda()
    grp.experts.impl = "auto"
    x = torch.randn(4, 64, cfg.dim)
    ya, _ = loop(x)
    ya.square().sum().backward()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        yb, _ = grp(x.cuda())
    yb.float().square().sum().backward()
    torch.testing.assert_close(yb.float().cpu(), ya, rtol=3e-2, atol=3e-2)
    grouped.drop_idle_gradients([grp])
    for (name, p), q in zip(loop.named_parameters(), grp.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            rel = ((q.grad.cpu() - p.grad).norm() / p.grad.norm().clamp_min(1e-12)).item()
            assert rel < 5e-2, (name, rel)
