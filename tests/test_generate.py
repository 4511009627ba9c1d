"""Batched sampling: sequences that stop early leave the batch without changing anyone's tokens."""

import pytest
import torch

from minir1 import ModelConfig, Transformer
from minir1.data.tokenizer import Tokenizer
from minir1.infer.generate import inverse_cdf, sample
from minir1.model.mla import LatentCache

TOK = Tokenizer()


def model_and_prompts():
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", vocab_size=TOK.vocab_size, dim=64, n_layers=2, inter_dim=128,
                             moe_inter_dim=32, max_seq_len=96, original_seq_len=96)
    prompts = [TOK.encode(f"User: {q}\nAssistant: ", bos=True) for q in ("1+2", "12+345", "7*8", "99-1", "3")]
    return Transformer(cfg), prompts


@pytest.mark.parametrize("temperature, top_p", [(0.0, 1.0), (1.0, 1.0), (0.8, 0.9)])
def test_finished_sequences_leave_the_batch_without_changing_the_others(temperature, top_p):
    model, prompts = model_and_prompts()
    common = set(TOK.encode("0123456789"))  # frequent under a random model: several rows stop early
    stops = sorted(common)[:4]
    out = sample(model, prompts, 40, temperature=temperature, top_p=top_p, stop_ids=stops, pad_id=TOK.pad_id,
                 generator=torch.Generator().manual_seed(1))
    assert len(set(out.lengths.tolist())) > 1  # rows did stop at different steps
    for i, p in enumerate(prompts):
        row = out.tokens[i, : out.lengths[i]]
        assert row[:-1].tolist() == [t for t in row[:-1].tolist() if t not in stops]
        assert (out.tokens[i, out.lengths[i]:] == TOK.pad_id).all() and (out.logprobs[i, out.lengths[i]:] == 0).all()
        if temperature == 0:  # greedy: the same tokens as decoding the prompt alone
            alone = sample(model, [p], 40, temperature=0.0, stop_ids=stops, pad_id=TOK.pad_id)
            assert alone.completions()[0] == out.completions()[i]
            torch.testing.assert_close(alone.logprobs[0, : out.lengths[i]], out.logprobs[i, : out.lengths[i]],
                                       rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_stopping_changes_no_draw(temperature):
    """Without stop tokens nothing leaves the batch; with them, every row is that run cut at its first stop."""
    model, prompts = model_and_prompts()
    stops = sorted(set(TOK.encode("0123456789")))[:4]
    full = sample(model, prompts, 30, temperature=temperature, pad_id=TOK.pad_id,
                  generator=torch.Generator().manual_seed(5))
    cut = sample(model, prompts, 30, temperature=temperature, stop_ids=stops, pad_id=TOK.pad_id,
                 generator=torch.Generator().manual_seed(5))
    assert len(set(cut.lengths.tolist())) > 1
    for i, row in enumerate(full.tokens.tolist()):
        first = next((j for j, t in enumerate(row) if t in stops), len(row) - 1)
        assert cut.completions()[i] == row[: first + 1]


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


def test_inverse_cdf_draws_each_token_in_proportion_to_its_probability():
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3], [0.0, 2.0, 0.0, 2.0]])  # the second row is unnormalised
    n = 1000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # an even grid of uniform numbers
    draws = inverse_cdf(probs.repeat_interleave(n, 0), u.repeat(2)).view(2, n)
    counts = torch.stack([torch.bincount(row, minlength=4) for row in draws])
    assert counts.tolist() == [[100, 0, 600, 300], [0, 500, 0, 500]]
    edge = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 2.0, 0.0, 2.0]])
    u = torch.tensor([1 - 2**-53, 0.0], dtype=torch.float64)
    assert inverse_cdf(edge, u).tolist() == [1, 1]  # never a zero-probability token, at either end of [0, 1)
    tail = torch.tensor([[0.7, 0.3 - 1e-9, 0.0]])  # u * total rounds up to the total: still the last real token
    assert inverse_cdf(tail, torch.tensor([1.0], dtype=torch.float64)).tolist() == [1]
    with pytest.raises(ValueError, match="finite, positive"):
        inverse_cdf(torch.tensor([[0.5, float("nan")], [0.0, 0.0]]), torch.zeros(2, dtype=torch.float64))
