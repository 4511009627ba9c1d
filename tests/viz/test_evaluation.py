import pytest

from minir1.data.tasks import Problem
from minir1.eval.greedy import EvalResult
from minir1.viz.evaluation import render_accuracy


def _result(task, level, mode, correct):
    p = Problem(task=task, level=level, question="1+1", answer=2, steps=(), check="")
    return EvalResult(p, mode, "", correct, True, mode == "reason")


def test_render_accuracy_bars_are_the_accuracies():
    by_mode = {
        "direct": [_result("add", 1, "direct", c) for c in (True, False, False, False)]
        + [_result("add", 2, "direct", False)],
        "reason": [_result("add", 1, "reason", c) for c in (True, True, True, False)]
        + [_result("add", 2, "reason", True)],
    }
    fig = render_accuracy(by_mode)
    (ax,) = fig.axes
    heights = [round(p.get_height(), 3) for p in ax.patches]
    assert heights == [0.25, 0.0, 0.75, 1.0]  # direct L1, L2, then reason L1, L2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["L1", "L2"]


def test_render_accuracy_rejects_empty_results():
    with pytest.raises(ValueError, match="no results"):
        render_accuracy({"direct": []})


def test_one_task_has_one_title():
    by_mode = {"direct": [_result("add", 1, "direct", True), _result("mul", 1, "direct", False)]}
    one = render_accuracy(by_mode, tasks=["add"], title="add: held-out accuracy")
    assert one._suptitle is None and one.axes[0].get_title() == "add: held-out accuracy"
    assert render_accuracy(by_mode, tasks=["mul"]).axes[0].get_title() == \
        "mul: held-out accuracy (greedy)"
    two = render_accuracy(by_mode)
    assert two._suptitle.get_text() == "held-out accuracy (greedy)"
    assert [ax.get_title() for ax in two.axes] == ["add", "mul"]
