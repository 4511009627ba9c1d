"""benchmarks/time_to_reason.py: the check's thresholds, the stop at the first pass, the clock that
leaves the checks out, and the table."""

from dataclasses import replace

import pytest

from tests.conftest import benchmark_module

TINY = dict(steps=40, batch_size=4, seq_len=64, n_docs=400, eval_n=0)


@pytest.fixture(scope="module")
def ttr():
    with benchmark_module("time_to_reason") as module:
        yield module


def test_the_check_needs_all_three_conditions(ttr):
    good = {"easy_reason": 0.9, "hard_gap": 0.5, "free_reasoning": 0.1}
    assert ttr.passes(good)
    for key, bad in (("easy_reason", 0.89), ("hard_gap", 0.49), ("free_reasoning", 0.11)):
        assert not ttr.passes({**good, key: bad}), key


def test_a_recipe_stops_at_its_first_pass(ttr, monkeypatch):
    calls = []

    def fake_check(model, tok, n):
        calls.append(n)
        ok = len(calls) >= 2  # the second check passes
        return {"easy_reason": 1.0 if ok else 0.0, "hard_gap": 0.6, "free_reasoning": 0.0}

    monkeypatch.setattr(ttr, "reasoning_check", fake_check)
    recipe = replace(ttr.RECIPES["ci"], **TINY)
    result = ttr.time_to_reason(recipe, n=3, every=10, max_minutes=60)
    assert calls == [3, 3]  # no check after the pass: training stopped there
    assert result["pass_step"] == 20 and result["pass_tokens"] == 20 * 4 * 64
    assert 0 < result["pass_seconds"] == result["trained_seconds"]
    assert result["steps"] == 40 and result["easy_reason"] == 1.0


def test_a_recipe_that_never_passes_runs_to_its_end_and_says_never(ttr):
    recipe = replace(ttr.RECIPES["ci"], **TINY)
    result = ttr.time_to_reason(recipe, n=1, every=20, max_minutes=60)  # 40 steps learn nothing
    assert result["pass_step"] is None and result["pass_seconds"] is None
    assert result["trained_seconds"] > 0 and 0 <= result["free_reasoning"] <= 1
    text = ttr.table({"tiny": result, "same": result})
    assert "never" in text and text.splitlines()[0].split() == ["tiny", "same"]
