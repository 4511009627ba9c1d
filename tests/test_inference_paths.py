"""Inference shortcuts are the same functions: folded MLA weights, every-expert MoE decoding, cached derived
weights that follow every weight update, complex-number RoPE."""

import copy

import pytest
import torch

from minir1 import LatentCache, ModelConfig, Transformer
from minir1.infer.generate import generate, sample
from minir1.model import MLA, MoE
from minir1.model import moe as moe_module
from minir1.model.derived import derived_weight, frozen_weights
from minir1.model.rope import apply_rope, rope_cos_sin, rope_real


def small_cfg(**kw):
    base = dict(n_layers=3, n_dense_layers=1, max_seq_len=64, original_seq_len=64)
    return ModelConfig.preset("tiny", **{**base, **kw})


# ---------------------------------------------------------------- derived weights
def test_derived_weight_is_cached_and_follows_every_change():
    lin = torch.nn.Linear(4, 4)
    builds = []

    def get():
        return derived_weight(lin, "double", lambda: builds.append(1) or lin.weight * 2, lambda: [lin.weight])

    with torch.no_grad():
        a = get()
        assert get() is a and len(builds) == 1  # cached
        lin.weight.add_(1.0)  # an optimizer step is an in-place update: the version counter moves
        torch.testing.assert_close(get(), lin.weight * 2)
        assert len(builds) == 2
        lin.to(torch.float64)  # new storage
        assert get().dtype == torch.float64 and len(builds) == 3
    g = get()  # gradients on: built every call, and differentiable
    assert g.requires_grad and len(builds) == 4
    g.sum().backward()
    torch.testing.assert_close(lin.weight.grad, torch.full((4, 4), 2.0, dtype=torch.float64))
    assert "double" not in lin.state_dict() and set(lin.state_dict()) == {"weight", "bias"}


def test_frozen_weights_checks_sources_once_per_block():
    lin = torch.nn.Linear(4, 4)
    looked = []

    def get():
        return derived_weight(lin, "w", lambda: lin.weight.clone(), lambda: looked.append(1) or [lin.weight])

    with torch.no_grad():
        get()
        with frozen_weights():
            for _ in range(5):
                get()
            with frozen_weights():  # nested blocks share the outer one's promise
                get()
        assert len(looked) == 2  # once before the block, once on entering it
        lin.weight.add_(1.0)
        with frozen_weights():
            torch.testing.assert_close(get(), lin.weight)  # a new block sees the change


# ---------------------------------------------------------------- MLA: folded weights
@pytest.mark.parametrize("q_lora_rank", [0, 64])
def test_folded_and_unfolded_absorbed_attention_agree(monkeypatch, q_lora_rank):
    cfg = small_cfg(q_lora_rank=q_lora_rank)
    model = Transformer(cfg).eval()
    assert model.layers[0].attn._foldable
    x = torch.randint(0, cfg.vocab_size, (2, 20))

    def decode():  # left padding on one row, a prefill of 12, then token by token through the cache
        cache = LatentCache(cfg, 2, 23)
        cache.pad = torch.zeros(2, 23, dtype=torch.bool)
        cache.pad[1, :3] = True
        xp = torch.cat([torch.zeros(2, 3, dtype=torch.long), x], 1)
        steps = [model(xp[:, :15], cache=cache).logits[:, -1:]]
        steps += [model(xp[:, t:t + 1], cache=cache).logits for t in range(15, 23)]
        return torch.cat(steps, 1)

    with torch.no_grad():
        naive = model(x, attn_impl="naive").logits
        folded, folded_cached = model(x, attn_impl="absorbed").logits, decode()
        monkeypatch.setattr(MLA, "_foldable", property(lambda self: False))  # what an Fp8Linear forces
        unfolded, unfolded_cached = model(x, attn_impl="absorbed").logits, decode()
        row0 = model(torch.cat([torch.zeros(1, 3, dtype=torch.long), x[:1]], 1)).logits  # zeros are tokens here
    torch.testing.assert_close(folded, naive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unfolded, naive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded_cached, unfolded_cached, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded_cached[0], row0[0, 14:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded_cached[1], naive[1, 11:], atol=1e-5, rtol=1e-5)  # padding hidden


def test_folding_only_where_it_saves_work():
    assert MLA(small_cfg()).fold_saves_work  # d_c = d_h
    with torch.device("meta"):
        assert not MLA(ModelConfig.preset("v3")).fold_saves_work  # d_c = 4 d_h: 2-4x the multiply-adds


def test_a_new_softmax_scale_refolds():
    cfg = small_cfg()
    model = Transformer(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (1, 10))
    with torch.no_grad():
        model(x, attn_impl="absorbed")
        for layer in model.layers:
            layer.attn.softmax_scale *= 0.5
        torch.testing.assert_close(model(x, attn_impl="absorbed").logits, model(x, attn_impl="naive").logits,
                                   atol=1e-5, rtol=1e-5)


def test_fp8_projections_are_not_folded():
    from minir1.fp8 import convert_to_fp8

    model = convert_to_fp8(Transformer(small_cfg()).eval())
    assert not model.layers[0].attn._foldable  # quantised GEMMs stay calls
    assert not any(m._stackable for m in model.moe_layers())
    assert Transformer(small_cfg()).layers[0].attn._foldable


def test_gradients_through_folded_weights_equal_naive_gradients():
    cfg = small_cfg()
    torch.manual_seed(0)
    model = Transformer(cfg)
    x = torch.randint(0, cfg.vocab_size, (2, 16))
    grads = {}
    for impl in ("naive", "absorbed"):
        model.zero_grad()
        model(x, x, attn_impl=impl).loss.backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters() if ".attn." in n}
    assert grads["naive"].keys() == grads["absorbed"].keys()
    for name, g in grads["naive"].items():
        torch.testing.assert_close(grads["absorbed"][name], g, atol=1e-6, rtol=1e-4, msg=name)


# ---------------------------------------------------------------- MoE: every expert on every token
@pytest.mark.parametrize("kw", [{}, dict(n_shared_experts=2, route_scale=2.5),
                                dict(score_func="softmax", n_expert_groups=1, n_limited_groups=1, n_shared_experts=0)])
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
        ref = torch.stack([sum(w[t, j] * moe.experts[int(idx[t, j])](flat[t]) for j in range(idx.shape[1]))
                           + (moe.shared_experts(flat[t]) if moe.shared_experts is not None else 0)
                           for t in range(flat.shape[0])])
    torch.testing.assert_close(dense.view(-1, cfg.dim), ref, atol=1e-6, rtol=1e-5)


def test_dense_decode_only_for_few_tokens_at_inference(monkeypatch):
    moe = MoE(small_cfg())
    assert not moe.dense_decode(1)  # training: dispatch, which counts each expert's load
    moe.eval()
    assert moe.dense_decode(moe_module.DENSE_DECODE_MAX_TOKENS)
    assert not moe.dense_decode(moe_module.DENSE_DECODE_MAX_TOKENS + 1)
    monkeypatch.setattr(moe_module, "DENSE_DECODE_MAX_BYTES", 1024)  # experts too big to read all of them
    assert not moe.dense_decode(1)


# ---------------------------------------------------------------- sampling sees every update
def test_sampling_after_a_training_step_uses_the_new_weights():
    cfg = small_cfg(vocab_size=40)
    torch.manual_seed(0)
    model = Transformer(cfg)
    prompts = [[1, 5, 7], [1, 9]]
    kw = dict(temperature=1.0, generator=None)
    before = sample(model, prompts, 12, **{**kw, "generator": torch.Generator().manual_seed(3)})
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    x = torch.randint(0, cfg.vocab_size, (4, 16))
    model(x, x).loss.backward()
    opt.step()  # in-place updates: the cached folded and stacked weights are now stale
    after = sample(model, prompts, 12, **{**kw, "generator": torch.Generator().manual_seed(3)})
    fresh = sample(copy.deepcopy(model), prompts, 12, **{**kw, "generator": torch.Generator().manual_seed(3)})
    torch.testing.assert_close(after.logprobs, fresh.logprobs)
    assert torch.equal(after.tokens, fresh.tokens)
    assert not torch.allclose(after.logprobs, before.logprobs)


def test_generate_samples_reproducibly_from_a_cpu_generator():
    cfg = small_cfg(vocab_size=40)
    model = Transformer(cfg)
    prompt = torch.randint(0, 40, (3, 5))
    runs = [generate(model, prompt, 10, temperature=1.0, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert torch.equal(runs[0][:, :5], prompt)


def test_decode_mask_is_built_once_per_step():
    cfg = small_cfg()
    model = Transformer(cfg).eval()
    cache = LatentCache(cfg, 2, 20)
    cache.pad = torch.zeros(2, 20, dtype=torch.bool)
    cache.pad[0, :3] = True
    with torch.no_grad():
        model(torch.randint(0, cfg.vocab_size, (2, 6)), cache=cache)
    mask = cache.mask(1, 2)
    assert mask is cache.mask(1, 2)  # every layer of the step gets the same tensor
    assert mask.shape == (2, 1, 1, 7) and mask[0, 0, 0].tolist() == [False] * 3 + [True] * 4
    cache.keep_rows(torch.tensor([1]))
    assert cache.mask(1, 1).shape == (1, 1, 1, 7) and cache.mask(1, 1).all()


# ---------------------------------------------------------------- RoPE: complex and real forms
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_complex_rope_equals_real_rope(dtype):
    cos, sin = rope_cos_sin(small_cfg())
    wide = torch.randn(2, 9, 3, 1 + 16 + 16).to(dtype)
    for x in (wide[..., 1:17], wide[..., 17:], wide[:, :, 0, 17:]):  # odd offset: the pairs must be copied
        torch.testing.assert_close(apply_rope(x, cos[:9], sin[:9]), rope_real(x, cos[:9], sin[:9]))
        assert apply_rope(x, cos[:9], sin[:9]).dtype == dtype
