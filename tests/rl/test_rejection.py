"""Rejection sampling: the filters, and traces on disk."""

import random

from minir1.data.datasets import CorpusConfig, corpus_documents
from minir1.data.tasks import make_problem
from minir1.data.templates import direct_completion, worked_completion
from minir1.data.tokenizer import Tokenizer
from minir1.rl import rejection
from minir1.rl.rejection import load_traces, rejection_sample, save_traces
from minir1.train.sft import sft_steps_for


def test_rejection_sampling_keeps_correct_readable_distinct_traces(monkeypatch):
    rng = random.Random(1)
    a, b = make_problem("add", 3, rng), make_problem("mul", 3, rng)
    good_a, good_b = worked_completion(a), worked_completion(b)
    wrong_b = good_b.replace(f"<answer>{b.answer}<", f"<answer>{b.answer + 1}<")
    scripted = [good_a, good_a, direct_completion(a),  # a: 4 samples
                worked_completion(a, with_check=True),
                wrong_b, wrong_b, wrong_b,  # b: nothing kept
                good_b.replace("<think>", "<think>oops,")]
    monkeypatch.setattr(rejection, "complete", lambda *args, **kw: scripted)
    rs = rejection_sample(None, Tokenizer(), [a, b], k=4, keep=2)
    assert rs.sampled == 8 and rs.correct == 5 and rs.prompts_kept == 1 and rs.prompts == 2
    assert rs.dropped == {"duplicate": 1, "no reasoning": 1, "unreadable step": 1}
    assert [d.completion for d in rs.docs] == [good_a, worked_completion(a, with_check=True)]
    assert all(d.prompt == f"User: {a.question}\nAssistant: " for d in rs.docs)

    monkeypatch.setattr(rejection, "complete", lambda *args, **kw: [good_a] * 4 + [good_b] * 4)
    rs = rejection_sample(None, Tokenizer(), [a, b], k=4, keep=1)
    # a duplicate is dropped before the cap counts
    assert len(rs.docs) == 2 and rs.dropped == {"duplicate": 6}


def test_traces_round_trip_and_sft_steps(tmp_path):
    docs = corpus_documents(CorpusConfig(template="chat", worked_fraction=1.0), 20, seed=0)
    back = load_traces(save_traces(tmp_path / "t.jsonl", docs))
    assert [(d.prompt, d.completion, d.problem.answer) for d in back] == [
        (d.prompt, d.completion, d.problem.answer) for d in docs]
    tok = Tokenizer()
    one = sft_steps_for(docs, tok, 1.0, batch_size=2)
    assert one >= 1
    assert sft_steps_for(docs, tok, 2.0, batch_size=2) in (2 * one - 1, 2 * one, 2 * one + 1)
    assert sft_steps_for(docs, tok, 1.0, batch_size=4) < one
