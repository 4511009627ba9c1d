"""Multi-token prediction: shifted targets, inputs, dropping the modules, the MTP cache."""

import pytest
import torch

from minir1 import LatentCache, Transformer
from tests.conftest import small_cfg, tiny_model


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


def test_mtp_with_a_cache_is_refused():
    cfg = small_cfg()
    model = Transformer(cfg).eval()
    with pytest.raises(ValueError, match="mtp=True with a cache"):
        model(torch.zeros(1, 4, dtype=torch.long), cache=LatentCache(cfg, 1, 8), mtp=True)


def test_mtp_cache_decodes_like_the_whole_sequence():
    model = tiny_model(5, max_seq_len=32, original_seq_len=32)
    mtp, T = model.mtp[0], 20
    h, emb = torch.randn(1, T, model.cfg.dim), torch.randn(1, T, model.cfg.dim)
    cos, sin = model.rope_tables(h.device)
    with torch.no_grad():
        full, _ = mtp(h, emb, cos[:T], sin[:T])
        cache = LatentCache(model.cfg, 1, T, n_layers=1, first_layer=mtp.block.layer_id)
        parts = []
        for a, b in [(0, 7), (7, 9), (9, 10), (10, 20)]:
            parts.append(mtp(h[:, a:b], emb[:, a:b], cos[a:b], sin[a:b], cache=cache)[0])
    assert cache.length == T and cache.kv.shape[0] == 1
    # naive vs absorbed rounding
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-4, rtol=1e-4)
