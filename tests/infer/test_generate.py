"""Batched sampling: sequences that stop early leave the batch without changing anyone's tokens."""

import copy
import sys

import pytest
import torch

from minir1 import Transformer
from minir1.infer.generate import generate, inverse_cdf, sample
from tests.conftest import TOK, model_and_prompts, small_cfg, small_model


@pytest.mark.parametrize("temperature, top_p", [(0.0, 1.0), (1.0, 1.0), (0.8, 0.9)])
def test_finished_sequences_leave_the_batch_without_changing_the_others(temperature, top_p):
    model, prompts = model_and_prompts()
    common = set(TOK.encode("0123456789"))  # frequent under a random model: several rows stop early
    stops = sorted(common)[:4]
    out = sample(model, prompts, 40, temperature=temperature, top_p=top_p, stop_ids=stops,
                 pad_id=TOK.pad_id, generator=torch.Generator().manual_seed(1))
    assert len(set(out.lengths.tolist())) > 1  # rows did stop at different steps
    for i, p in enumerate(prompts):
        row = out.tokens[i, : out.lengths[i]]
        assert row[:-1].tolist() == [t for t in row[:-1].tolist() if t not in stops]
        assert (out.tokens[i, out.lengths[i]:] == TOK.pad_id).all()
        assert (out.logprobs[i, out.lengths[i]:] == 0).all()
        if temperature == 0:  # greedy: the same tokens as decoding the prompt alone
            alone = sample(model, [p], 40, temperature=0.0, stop_ids=stops, pad_id=TOK.pad_id)
            assert alone.completions()[0] == out.completions()[i]
            torch.testing.assert_close(alone.logprobs[0, : out.lengths[i]],
                                       out.logprobs[i, : out.lengths[i]], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_stopping_changes_no_draw(temperature):
    """Without stop tokens nothing leaves the batch; with them, every row is that run cut at its
    first stop."""
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


def test_inverse_cdf_draws_each_token_in_proportion_to_its_probability():
    # the second row is unnormalised
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3], [0.0, 2.0, 0.0, 2.0]])
    n = 1000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # an even grid of uniform numbers
    draws = inverse_cdf(probs.repeat_interleave(n, 0), u.repeat(2)).view(2, n)
    counts = torch.stack([torch.bincount(row, minlength=4) for row in draws])
    assert counts.tolist() == [[100, 0, 600, 300], [0, 500, 0, 500]]
    edge = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 2.0, 0.0, 2.0]])
    u = torch.tensor([1 - 2**-53, 0.0], dtype=torch.float64)
    # never a zero-probability token, at either end of [0, 1)
    assert inverse_cdf(edge, u).tolist() == [1, 1]
    # u * total rounds up to the total: still the last real token
    tail = torch.tensor([[0.7, 0.3 - 1e-9, 0.0]])
    assert inverse_cdf(tail, torch.tensor([1.0], dtype=torch.float64)).tolist() == [1]
    with pytest.raises(ValueError, match="finite, positive"):
        inverse_cdf(torch.tensor([[0.5, float("nan")], [0.0, 0.0]]),
                    torch.zeros(2, dtype=torch.float64))


def test_batched_sampling_matches_one_by_one():
    model = small_model().eval()
    prompts = [[1, 5, 9, 12], [1, 7], [1, 3, 3, 3, 3, 8, 2]]
    stops = [TOK.token_id("</answer>")]
    batched = sample(model, prompts, 12, temperature=0.0, stop_ids=stops)
    for i, p in enumerate(prompts):
        alone = sample(model, [p], 12, temperature=0.0, stop_ids=stops)
        n = int(alone.lengths[0])
        assert batched.completions()[i] == alone.completions()[0]
        torch.testing.assert_close(batched.logprobs[i, :n], alone.logprobs[0, :n],
                                   atol=1e-5, rtol=1e-5)


def test_sampling_stops_and_bans():
    model = small_model().eval()
    greedy = sample(model, [[1, 4, 4]], 5, temperature=0.0)
    first = greedy.tokens[0, 0].item()
    banned = sample(model, [[1, 4, 4]], 5, temperature=0.0, banned_first=[first])
    assert banned.tokens[0, 0].item() != first
    stopped = sample(model, [[1, 4, 4]], 5, temperature=0.0, stop_ids=[first])
    assert stopped.lengths.tolist() == [1] and stopped.tokens.shape[1] == 1
    g = torch.Generator().manual_seed(0)
    hot = sample(model, [[1, 4, 4]] * 8, 6, temperature=1.0, top_p=0.9, generator=g)
    assert (hot.logprobs <= 0).all() and hot.tokens.shape == (8, 6)


def test_generate_samples_reproducibly_from_a_cpu_generator():
    cfg = small_cfg(vocab_size=40)
    model = Transformer(cfg)
    prompt = torch.randint(0, 40, (3, 5))
    runs = [generate(model, prompt, 10, temperature=1.0, generator=torch.Generator().manual_seed(s))
            for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert torch.equal(runs[0][:, :5], prompt)


@pytest.mark.parametrize("every", [3, 8])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("n_stops", [4, 10])
def test_stop_checks_every_few_steps_change_no_output(monkeypatch, every, temperature, n_stops):
    """An accelerator reads the stop flags every few steps (no host sync in between): the rows
    that stopped decode on, masked, and every token and length is that of checking at every step.
    The log-probabilities agree to float32 rounding: a row's logits come from a matmul over the
    rows still in the cache, and some CPUs round it differently for another row count (an AVX2
    one differed by 4.8e-7 at one token of one case, an AVX-512 one not at all)."""
    gen = sys.modules["minir1.infer.generate"]  # the package's ``generate`` is the function
    model, prompts = model_and_prompts()
    stops = sorted(set(TOK.encode("0123456789")))[:n_stops]

    def run():
        return sample(model, prompts, 30, temperature=temperature, stop_ids=stops,
                      pad_id=TOK.pad_id, generator=torch.Generator().manual_seed(3))

    each = run()
    assert len(set(each.lengths.tolist())) > 1  # rows stop at different steps
    monkeypatch.setattr(gen, "stop_check_every", lambda device: every)
    batched = run()
    assert torch.equal(batched.tokens, each.tokens) and torch.equal(batched.lengths, each.lengths)
    torch.testing.assert_close(batched.logprobs, each.logprobs, rtol=1e-6, atol=1e-6)


def test_non_finite_probabilities_raise_between_stop_checks(monkeypatch):
    gen = sys.modules["minir1.infer.generate"]
    model, prompts = model_and_prompts()
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    monkeypatch.setattr(gen, "stop_check_every", lambda device: 4)
    with pytest.raises(ValueError, match="finite, positive"):
        sample(model, prompts, 10, temperature=1.0, generator=torch.Generator().manual_seed(0))


@pytest.mark.gpu
def test_sampling_on_cuda_matches_the_cpu():
    """The latent-cache sampler on CUDA (stop flags read every few steps) against the CPU: greedy
    completions identical, log-probabilities within fp32 noise; sampled rollouts from the same
    seed take the same draws (the uniforms come from the CPU generator either way)."""
    model, prompts = model_and_prompts()
    stops = sorted(set(TOK.encode("0123456789")))[:4]
    gpu = copy.deepcopy(model).cuda()
    for temperature in (0.0, 1.0):
        kw = dict(temperature=temperature, stop_ids=stops, pad_id=TOK.pad_id)
        ref = sample(model, prompts, 40, generator=torch.Generator().manual_seed(2), **kw)
        out = sample(gpu, prompts, 40, generator=torch.Generator().manual_seed(2), **kw)
        same = sum(a == b for a, b in zip(out.completions(), ref.completions(), strict=True))
        assert same == len(prompts) if temperature == 0 else same >= len(prompts) - 1
        if temperature == 0:
            torch.testing.assert_close(out.logprobs, ref.logprobs, rtol=1e-4, atol=1e-4)
