"""The pipeline lessons' figures render headless from plain rows."""

import pytest

from minir1.viz.pipeline import render_rl_curves, render_stages, render_trace


def test_rl_curves_one_line_per_run_and_panel_per_metric():
    curves = {"R1-Zero": [{"step": 0, "heldout_accuracy": 0.1, "heldout_length": 9.0}, {"step": 1, "loss": 0.3},
                          {"step": 2, "heldout_accuracy": 0.5, "heldout_length": 30.0}],
              "cold start + RL": [{"step": 0, "heldout_accuracy": 0.6, "heldout_length": 40.0}]}
    fig = render_rl_curves(curves)
    acc, length = fig.axes
    assert [len(line.get_xdata()) for line in acc.lines] == [2, 1]  # rows without the metric are skipped
    assert list(length.lines[0].get_ydata()) == [9.0, 30.0]


def test_stages_bars_carry_the_values():
    rows = {"base": {"pass1": 0.25, "majk": 0.5, "k": 8}, "r1": {"pass1": 0.75, "majk": 1.0, "k": 8}}
    ax = render_stages(rows).axes[0]
    assert [round(p.get_height(), 2) for p in ax.patches] == [0.25, 0.75, 0.5, 1.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pass@1", "maj@8"]


@pytest.mark.parametrize("correct, why, verdict", [(True, None, "kept"), (True, "rambling", "dropped: rambling"),
                                                   (False, None, "rejected: wrong answer")])
def test_trace_verdicts(correct, why, verdict):
    record = {"question": "3+4", "answer": 7, "completion": "<think>3+4=7</think><answer>7</answer>",
              "correct": correct, "why": why}
    texts = [t.get_text() for t in render_trace(record).axes[0].texts]
    assert texts[0].endswith(verdict) and texts[1] == record["completion"]
