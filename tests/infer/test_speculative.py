"""MTP speculative decoding (minir1.infer.speculative): exactly greedy decoding, in fewer
main-model passes."""

import pytest
import torch

from minir1 import Transformer
from minir1.data.templates import REASON_PREFIX, prompt_for
from minir1.data.testsets import evaluation_problems
from minir1.infer import SpeculativeResult, generate, speculative_generate
from minir1.infer.generate import sample
from minir1.train.runs import load_rl_base
from tests.conftest import prompt, tiny_model


def greedy(model: Transformer, ids: list[int], n: int, **kw) -> list[int]:
    return sample(model, [ids], n, temperature=0.0, **kw).completions()[0]


def check_counts(r: SpeculativeResult, stops: list[int] = ()) -> None:
    assert r.proposed == len(r.verdicts) and r.accepted == sum(r.verdicts) <= r.proposed
    # the prefill pass, one pass per draft, and one draft-less pass when a single token was left
    # to make
    assert r.passes - 1 - r.proposed in (0, 1)
    # every pass yields its own token plus the draft when accepted; an accepted draft that is a
    # stop token ends the generation without the pass's own token
    n = r.passes + r.accepted
    assert len(r.tokens) == n or (len(r.tokens) == n - 1 and r.verdicts[-1]
                                  and r.tokens[-1] in stops)
    assert r.acceptance_rate == (r.accepted / r.proposed if r.proposed else 0.0)
    assert r.tokens_per_pass == len(r.tokens) / r.passes


def replay_drafts(model: Transformer, ids: list[int], r: SpeculativeResult) -> None:
    """Each cached draft equals the MTP module run over the whole greedy sequence (the training
    path, no cache).

    The first draft sits at the prompt's last position; it predicts the token two places on, and
    the next draft sits two positions further on after an acceptance, one after a rejection.
    """
    seq = torch.tensor([ids + r.tokens])
    with torch.no_grad():
        out = model(seq, mtp=True)
    drafts, picks = out.mtp_logits[0][0].argmax(-1), out.logits[0].argmax(-1)
    i = len(ids) - 1
    for ok in r.verdicts:
        assert bool(drafts[i] == seq[0, i + 2]) == ok  # accepted iff the draft is the greedy token
        assert seq[0, i + 2] == picks[i + 1]
        i += 2 if ok else 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_greedy_on_a_random_model_whose_drafts_get_rejected(seed):
    model = tiny_model(seed)
    ids = prompt(seed, 5 + 4 * seed)
    r = speculative_generate(model, ids, 40)
    assert r.tokens == greedy(model, ids, 40)
    assert r.tokens == generate(model, torch.tensor([ids]), 40)[0, len(ids):].tolist()
    # an untrained drafter: mostly rejected, each rolled back
    assert r.proposed > 30 and r.accepted < r.proposed
    check_counts(r)
    replay_drafts(model, ids, r)


@pytest.mark.parametrize("n_new", [1, 2, 3, 4])
def test_shortest_generations(n_new):
    model = tiny_model()
    ids = prompt(3, 6)
    r = speculative_generate(model, torch.tensor([ids]), n_new)  # a (1, T) tensor works too
    assert r.tokens == greedy(model, ids, n_new)
    if n_new <= 2:  # the prefill gives the first token and a draft could not save the second pass
        assert r.passes == n_new and r.proposed == 0
    check_counts(r)


def test_stops_where_greedy_stops():
    model = tiny_model(4)
    ids = prompt(4, 8)
    full = greedy(model, ids, 40)
    for stop in (full[0], full[1], full[len(full) // 2], full[-1]):
        r = speculative_generate(model, ids, 40, stop_ids=[stop])
        assert r.tokens == full[: full.index(stop) + 1] == greedy(model, ids, 40, stop_ids=[stop])
        check_counts(r, [stop])


def test_shipped_base_model_drafts_are_mostly_accepted():
    model, tok, _ = load_rl_base("ci", progress=False)
    stops, banned = [tok.token_id("</answer>"), tok.eos_id], [tok.token_id("</think>")]
    problems = evaluation_problems(1)[::3]  # one problem per (task, level) pair, every third pair
    results = []
    for p in problems:
        ids = tok.encode(prompt_for(p.question, "r1_zero") + REASON_PREFIX, bos=True)
        r = speculative_generate(model, ids, 160, stop_ids=stops, banned_first=banned)
        assert r.tokens == greedy(model, ids, 160, stop_ids=stops, banned_first=banned)
        assert r.tokens[-1] in stops
        check_counts(r, stops)
        replay_drafts(model, ids, r)
        results.append(r)
    accepted, proposed = sum(r.accepted for r in results), sum(r.proposed for r in results)
    tokens, passes = sum(len(r.tokens) for r in results), sum(r.passes for r in results)
    # a trained drafter, unlike the random model's
    assert accepted / proposed > 0.8 and tokens / passes > 1.6
    # a stop token came as a draft
    assert any(len(r.tokens) == r.passes + r.accepted - 1 for r in results)


def test_refuses_a_model_without_mtp_and_bad_inputs():
    with pytest.raises(ValueError, match="n_mtp_modules=0"):
        speculative_generate(tiny_model(n_mtp_modules=0), [1, 2, 3], 4)
    with pytest.raises(ValueError, match="n_mtp_modules"):
        speculative_generate(tiny_model().drop_mtp(), [1, 2, 3], 4)
    model = tiny_model()
    with pytest.raises(ValueError, match="batch size 1"):
        speculative_generate(model, torch.zeros(2, 3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="max_seq_len"):
        speculative_generate(model, [1] * 60, 5)
    model.train()
    speculative_generate(model, [1, 2, 3], 3)
    assert model.training  # left in the mode it came in
