"""Held-out metrics: accuracy with and without a self-check."""

from minir1.data.tasks import make_problem
from minir1.eval.greedy import EvalResult
from minir1.eval.heldout import heldout_metrics
from minir1.rl.r1zero import format_summary
from tests.conftest import TOK


def result(completion: str, correct: bool, reasoned: bool = True) -> EvalResult:
    import random

    return EvalResult(make_problem("add", 1, random.Random(0)), "free", completion, correct, True,
                      reasoned)


def test_heldout_metrics_split_checked_from_unchecked():
    results = [result("<think>a,check b</think><answer>1</answer>", True),
               result("<think>a,check b</think><answer>2</answer>", False),
               result("<think>a</think><answer>1</answer>", True),
               result("<think></think><answer>5</answer>", False, reasoned=False)]
    m = heldout_metrics(results, TOK)
    assert m["heldout_accuracy"] == 0.5 and m["heldout_reasoning"] == 0.75
    assert m["heldout_check_rate"] == 0.5
    assert m["heldout_checked_accuracy"] == 0.5 and m["heldout_unchecked_accuracy"] == 1.0
    none = heldout_metrics(results[2:], TOK)
    assert none["heldout_checked_accuracy"] is None and "—" in format_summary(
        {"before": none, "after": m, "heldout_problems": 2, "eval_tasks": ("add",),
         "eval_levels": (1,), "steps": 1, "rl_seconds": 1.0, "wall_seconds": 2.0})
