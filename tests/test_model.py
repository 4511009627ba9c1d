import math

import pytest
import torch

from minir1 import LatentCache, ModelConfig, Transformer
from minir1.model import MLA, Gate, MoE, max_violation, sequence_balance
from minir1.model.rope import apply_rope, rope_cos_sin, rope_frequencies, yarn_correction_range


def small_cfg(**kw):
    base = dict(n_layers=3, n_dense_layers=1, max_seq_len=64, original_seq_len=64)
    return ModelConfig.preset("tiny", **{**base, **kw})


# ---------------------------------------------------------------- RoPE / YaRN
def test_rope_rotates_interleaved_pairs_like_complex_multiplication():
    cfg = small_cfg()
    cos, sin = rope_cos_sin(cfg)
    x = torch.randn(2, 10, 3, cfg.qk_rope_head_dim)
    ref = torch.view_as_complex(x.unflatten(-1, (-1, 2)).contiguous())
    rot = torch.polar(torch.ones_like(cos[:10]), torch.atan2(sin[:10], cos[:10]))
    ref = torch.view_as_real(ref * rot[None, :, None])
    torch.testing.assert_close(apply_rope(x, cos[:10], sin[:10]), ref.flatten(-2))


def test_rope_scores_depend_only_on_relative_position():
    cfg = small_cfg()
    cos, sin = rope_cos_sin(cfg)
    q, k = torch.randn(cfg.qk_rope_head_dim), torch.randn(cfg.qk_rope_head_dim)
    def score(m, n):
        qm = apply_rope(q.view(1, 1, -1), cos[m:m + 1], sin[m:m + 1])
        kn = apply_rope(k.view(1, 1, -1), cos[n:n + 1], sin[n:n + 1])
        return (qm * kn).sum()
    torch.testing.assert_close(score(7, 3), score(30, 26), atol=1e-5, rtol=1e-5)


def test_yarn_v3_correction_range_and_blend():
    cfg = ModelConfig.preset("v3")
    assert yarn_correction_range(32, 1, 64, 10000.0, 4096) == (10, 23)  # as the official precompute_freqs_cis gives for V3
    base = 1.0 / (10000.0 ** (torch.arange(0, 64, 2, dtype=torch.float32) / 64))
    f = rope_frequencies(cfg)
    torch.testing.assert_close(f[:10], base[:10])  # high frequencies kept
    torch.testing.assert_close(f[24:], base[24:] / 40)  # low frequencies interpolated by s = 40
    assert torch.all(f[10:24] <= base[10:24]) and torch.all(f[10:24] >= base[10:24] / 40)
    no_yarn = ModelConfig.preset("v3", max_seq_len=4096)
    torch.testing.assert_close(rope_frequencies(no_yarn), base)
    assert no_yarn.softmax_scale == pytest.approx(192**-0.5)


# ---------------------------------------------------------------- MLA
@pytest.mark.parametrize("q_lora_rank", [0, 64])
@pytest.mark.parametrize("yarn", [False, True])
def test_naive_equals_absorbed(q_lora_rank, yarn):
    cfg = small_cfg(q_lora_rank=q_lora_rank, max_seq_len=128 if yarn else 64, rope_factor=4.0)
    model = Transformer(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (2, 40))
    with torch.no_grad():
        a = model(x, attn_impl="naive").logits
        b = model(x, attn_impl="absorbed").logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    if q_lora_rank == 0:
        assert hasattr(model.layers[0].attn, "wq") and not hasattr(model.layers[0].attn, "wq_a")


@pytest.mark.parametrize("attn_impl", ["naive", "absorbed"])
def test_full_forward_equals_token_by_token_decode(attn_impl):
    cfg = small_cfg()
    model = Transformer(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (3, 24))
    with torch.no_grad():
        full = model(x).logits
        cache = LatentCache(cfg, batch_size=3, max_len=24)
        steps = [model(x[:, t:t + 1], cache=cache, attn_impl=attn_impl).logits for t in range(24)]
        # prefill a chunk, then continue in chunks of unequal size
        cache2 = LatentCache(cfg, batch_size=3, max_len=24)
        chunks = [model(x[:, a:b], cache=cache2, attn_impl=attn_impl).logits for a, b in [(0, 10), (10, 11), (11, 24)]]
    assert (full - torch.cat(steps, 1)).abs().max() <= 1e-5
    assert (full - torch.cat(chunks, 1)).abs().max() <= 1e-5
    assert cache.length == 24


def test_cache_stores_only_latent_and_rope_key():
    cfg = small_cfg()
    cache = LatentCache(cfg, batch_size=1, max_len=10, dtype=torch.bfloat16)
    per_token_per_layer = cfg.kv_lora_rank + cfg.qk_rope_head_dim
    assert cache.nbytes() == 10 * cfg.n_layers * per_token_per_layer * 2
    model = Transformer(cfg).eval()
    with torch.no_grad():
        model(torch.randint(0, cfg.vocab_size, (1, 4)), cache=cache)
    # the cached latent is the *normalised* c^KV: RMS of each vector ~ kv_norm weight (= 1 at init)
    rms = cache.kv[0, 0, :4].float().pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones(4), atol=1e-2, rtol=1e-2)
    assert cache.kv[0, 0, 4:].abs().sum() == 0


def test_left_padding_with_pad_mask_matches_unpadded():
    cfg = small_cfg()
    model = Transformer(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (1, 12))
    with torch.no_grad():
        ref = model(x, cache=LatentCache(cfg, 1, 12)).logits[:, -1]
        cache = LatentCache(cfg, 1, 17)
        cache.pad = torch.zeros(1, 17, dtype=torch.bool)
        cache.pad[:, :5] = True
        padded = torch.cat([torch.zeros(1, 5, dtype=torch.long), x], 1)
        out = model(padded, cache=cache).logits[:, -1]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_mla_rejects_unknown_impl_and_overflow():
    cfg = small_cfg()
    model = Transformer(cfg)
    with pytest.raises(ValueError, match="attn_impl"):
        model(torch.zeros(1, 4, dtype=torch.long), attn_impl="flash")
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 65, dtype=torch.long))
    cache = LatentCache(cfg, 1, 4)
    with pytest.raises(ValueError, match="full"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


def test_mla_shares_one_rope_key_across_heads():
    cfg = small_cfg()
    attn = MLA(cfg)
    assert attn.wkv_a.out_features == cfg.kv_lora_rank + cfg.qk_rope_head_dim  # not n_heads * rope
    assert attn.wkv_b.out_features == cfg.n_heads * (cfg.qk_nope_head_dim + cfg.v_head_dim)


# ---------------------------------------------------------------- MoE routing
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
    ref = torch.stack([sum(w[t, j] * moe.experts[int(idx[t, j])](flat[t]) for j in range(idx.shape[1]))
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
    idx = torch.stack([torch.tensor([(2 * t) % E, (2 * t + 1) % E]) for t in range(T)]).expand(B, T, K)
    assert sequence_balance(scores, idx).item() == pytest.approx(1.0)
    cfg = small_cfg(balance_alpha=0.003)
    moe = MoE(cfg)
    torch.nn.init.zeros_(moe.gate.weight)  # all affinities equal...
    moe.gate.bias.copy_(torch.arange(cfg.n_routed_experts) * 1e-3)  # ...ties broken deterministically
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
        moe.gate.weight[:3] += 0.05  # three experts attract most tokens (inputs share a mean direction)
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


# ---------------------------------------------------------------- MTP
def test_mtp_predicts_the_right_shifted_tokens():
    cfg = small_cfg(n_mtp_modules=2, mtp_loss_weight=0.3)
    model = Transformer(cfg).eval()
    seq = torch.randint(0, cfg.vocab_size, (2, 21))
    tokens, targets = seq[:, :-1], seq[:, 1:]
    T = tokens.shape[1]
    with torch.no_grad():
        out = model(tokens, targets=targets)
    for k, logits in enumerate(out.mtp_logits, start=1):
        assert logits.shape[:2] == (2, T - k)
        # depth k at position i predicts t_{i+k+1}
        ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), seq[:, k + 1:].flatten())
        torch.testing.assert_close(out.mtp_losses[k - 1], ce)
    torch.testing.assert_close(out.mtp_loss, 0.3 / 2 * sum(out.mtp_losses))


def test_mtp_input_is_the_embedding_of_t_i_plus_k():
    cfg = small_cfg(n_mtp_modules=1)
    model = Transformer(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (1, 16))
    y = x.clone()
    j = 9
    y[0, j] = (x[0, j] + 1) % cfg.vocab_size
    with torch.no_grad():
        a = model(x, mtp=True).mtp_logits[0]
        b = model(y, mtp=True).mtp_logits[0]
    diff = (a - b).abs().amax(-1)[0]
    assert diff[: j - 1].max() < 1e-6  # position i sees tokens <= i+1 only
    assert diff[j - 1] > 0  # position j-1 embeds t_j itself


def test_mtp_can_be_dropped():
    cfg = small_cfg()
    model = Transformer(cfg)
    x = torch.randint(0, cfg.vocab_size, (1, 8))
    before = model(x).logits
    model.drop_mtp()
    assert len(model.mtp) == 0
    out = model(x, targets=x)
    torch.testing.assert_close(out.logits, before)
    assert out.mtp_loss.item() == 0


# ---------------------------------------------------------------- model
def test_parameter_names_follow_the_official_layout():
    cfg = small_cfg()
    names = set(Transformer(cfg).state_dict())
    for n in ["embed.weight", "norm.weight", "head.weight", "layers.0.attn_norm.weight", "layers.0.attn.wq_a.weight",
              "layers.0.attn.q_norm.weight", "layers.0.attn.wq_b.weight", "layers.0.attn.wkv_a.weight",
              "layers.0.attn.kv_norm.weight", "layers.0.attn.wkv_b.weight", "layers.0.attn.wo.weight",
              "layers.0.ffn_norm.weight", "layers.0.ffn.w1.weight", "layers.0.ffn.w2.weight", "layers.0.ffn.w3.weight",
              "layers.1.ffn.gate.weight", "layers.1.ffn.gate.bias", "layers.1.ffn.experts.15.w1.weight",
              "layers.1.ffn.shared_experts.w3.weight"]:
        assert n in names, n
    assert not any(n.endswith(".bias") and ".gate." not in n for n in names)  # no biases in linears


def test_init_std_and_untied_head():
    cfg = small_cfg(dim=256)
    model = Transformer(cfg)
    assert model.head.weight.data_ptr() != model.embed.weight.data_ptr()
    assert model.layers[0].attn.wq_a.weight.std().item() == pytest.approx(0.006, rel=0.05)
    assert model.embed.weight.std().item() == pytest.approx(0.006, rel=0.05)
    assert torch.all(model.norm.weight == 1)


def test_loss_ignores_masked_targets_and_trains():
    cfg = small_cfg()
    model = Transformer(cfg)
    x = torch.randint(0, cfg.vocab_size, (4, 16))
    t = x.roll(-1, 1)
    t[:, :5] = -100
    out = model(x, targets=t)
    assert out.lm_loss.item() == pytest.approx(math.log(cfg.vocab_size), rel=0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = model(x, targets=t).loss
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.update_expert_bias()
    assert loss.item() < 0.5 * first


def test_bf16_forward_runs_and_stays_close():
    cfg = small_cfg()
    model = Transformer(cfg)
    x = torch.randint(0, cfg.vocab_size, (2, 16))
    ref = model(x).logits
    out = model.to(torch.bfloat16)(x).logits
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3
    assert model.rope_tables(torch.device("cpu"))[0].dtype == torch.float32


def test_same_seed_same_main_weights_with_or_without_mtp():
    torch.manual_seed(3)
    plain = Transformer(small_cfg(n_mtp_modules=0)).state_dict()
    torch.manual_seed(3)
    deep = Transformer(small_cfg(n_mtp_modules=2)).state_dict()
    assert all(torch.equal(v, deep[k]) for k, v in plain.items())


def test_mtp_with_a_cache_is_refused():
    cfg = small_cfg()
    model = Transformer(cfg).eval()
    with pytest.raises(ValueError, match="mtp=True with a cache"):
        model(torch.zeros(1, 4, dtype=torch.long), cache=LatentCache(cfg, 1, 8), mtp=True)


def test_hidden_state_is_returned():
    cfg = small_cfg()
    model = Transformer(cfg).eval()
    out = model(torch.zeros(2, 5, dtype=torch.long))
    torch.testing.assert_close(model.head(model.norm(out.hidden)), out.logits)


def test_show_source_looks_through_decorators(capsys):
    import minir1

    minir1.show_source(MoE.update_bias)
    printed = capsys.readouterr().out
    assert printed.startswith("# minir1.model.moe.MoE.update_bias")
    assert "def update_bias" in printed and "/" not in printed.splitlines()[0]


@pytest.mark.parametrize("attn_impl", ["naive", "absorbed"])
def test_sample_masking_isolates_packed_samples(attn_impl):
    cfg = small_cfg()
    model = Transformer(cfg).eval()
    a = torch.randint(0, cfg.vocab_size, (1, 7))
    b = torch.randint(0, cfg.vocab_size, (1, 9))
    packed = torch.cat([a, b], 1)
    doc_ids = torch.tensor([[0] * 7 + [1] * 9])
    with torch.no_grad():
        out = model(packed, doc_ids=doc_ids, attn_impl=attn_impl).logits
        alone = model(b, attn_impl=attn_impl).logits
        # RoPE is relative, so sample b sees exactly what it would see on its own
        torch.testing.assert_close(out[:, 7:], alone, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[:, :7], model(a).logits, atol=1e-5, rtol=1e-5)
        leaky = model(packed, attn_impl=attn_impl).logits  # without the mask, b attends to a
    assert (leaky[:, 7:] - alone).abs().max() > 1e-3
