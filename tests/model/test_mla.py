"""MLA and its latent cache: naive and absorbed paths, folded weights, padding, masks, cache
rows."""

import pytest
import torch

from minir1 import LatentCache, ModelConfig, Transformer
from minir1.model import MLA
from tests.conftest import model_and_prompts, prompt, small_cfg, tiny_model


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
        chunks = [model(x[:, a:b], cache=cache2, attn_impl=attn_impl).logits
                  for a, b in [(0, 10), (10, 11), (11, 24)]]
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
        # what an Fp8Linear forces
        monkeypatch.setattr(MLA, "_foldable", property(lambda self: False))
        unfolded, unfolded_cached = model(x, attn_impl="absorbed").logits, decode()
        # zeros are tokens here
        row0 = model(torch.cat([torch.zeros(1, 3, dtype=torch.long), x[:1]], 1)).logits
    torch.testing.assert_close(folded, naive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unfolded, naive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded_cached, unfolded_cached, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded_cached[0], row0[0, 14:], atol=1e-5, rtol=1e-5)
    # padding hidden
    torch.testing.assert_close(folded_cached[1], naive[1, 11:], atol=1e-5, rtol=1e-5)


def test_folding_only_where_it_saves_work():
    assert MLA(small_cfg()).fold_saves_work  # d_c = d_h
    with torch.device("meta"):
        # d_c = 4 d_h: 2-4x the multiply-adds
        assert not MLA(ModelConfig.preset("v3")).fold_saves_work


def test_a_new_softmax_scale_refolds():
    cfg = small_cfg()
    model = Transformer(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (1, 10))
    with torch.no_grad():
        model(x, attn_impl="absorbed")
        for layer in model.layers:
            layer.attn.softmax_scale *= 0.5
        torch.testing.assert_close(model(x, attn_impl="absorbed").logits,
                                   model(x, attn_impl="naive").logits, atol=1e-5, rtol=1e-5)


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


def test_keep_rows_selects_cache_rows_and_padding():
    model, _ = model_and_prompts()
    cache = LatentCache(model.cfg, 3, 10)
    cache.kv.normal_()
    cache.pe.normal_()
    cache.pad = torch.tensor([[True] * 10, [False] * 10, [True, False] + [False] * 8])
    kv, pe, pad = cache.kv.clone(), cache.pe.clone(), cache.pad.clone()
    cache.keep_rows(torch.tensor([2, 0]))
    assert torch.equal(cache.kv, kv[:, [2, 0]]) and torch.equal(cache.pe, pe[:, [2, 0]])
    assert torch.equal(cache.pad, pad[[2, 0]])


def test_truncate_forgets_the_dropped_slot():
    model = tiny_model(6)
    ids = prompt(6, 10)
    with torch.no_grad():
        ref = model(torch.tensor([ids[:-1]]), cache=LatentCache(model.cfg, 1, 16)).logits[0, -1]
        cache = LatentCache(model.cfg, 1, 16)
        model(torch.tensor([ids[:-2]]), cache=cache)
        model(torch.tensor([ids[-2:]]), cache=cache)  # one token too many: a rejected draft
        cache.truncate(cache.length - 1)
        stale = model(torch.tensor([[ids[-1]]]), cache=LatentCache(model.cfg, 1, 16)).logits[0, -1]
        cache.truncate(cache.length - 1)  # drop ids[-2] as well and feed it again
        again = model(torch.tensor([[ids[-2]]]), cache=cache).logits[0, -1]
    torch.testing.assert_close(again, ref, atol=1e-5, rtol=1e-5)
    # the context matters: the check above can fail
    assert not torch.allclose(again, stale, atol=1e-3)
    with pytest.raises(ValueError, match="truncate"):
        cache.truncate(cache.length + 1)
