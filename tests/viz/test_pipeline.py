"""The pipeline lesson's figures render headless from plain rows."""

import pytest
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from minir1.viz.pipeline import (
    render_pipeline,
    render_rl_curves,
    render_stages,
    render_trace,
    wrap_trace,
)


def test_pipeline_draws_every_stage_and_the_restart():
    ax = render_pipeline().axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(boxes) == 6 and len(arrows) == 6  # base, R1-Zero, Dev1-3, R1; 4 hand-ons, 2 more
    texts = [t.get_text() for t in ax.texts]
    for title in ("base model", "R1-Zero", "Dev1: cold start", "Dev2: reasoning RL",
                  "Dev3: rejection\nsampling + SFT", "R1: final RL"):
        assert title in texts
    # R1-Zero is the only box of the other route, and the restart of Dev3 is the one dashed arc
    zero = next(b for b in boxes if b.get_x() < 2 < b.get_x() + b.get_width() and b.get_y() > 0.5)
    assert len({tuple(b.get_facecolor()) for b in boxes}) == 2
    assert sum(tuple(b.get_facecolor()) == tuple(zero.get_facecolor()) for b in boxes) == 1
    dashed = [a for a in arrows if a.get_linestyle() == "--"]
    assert len(dashed) == 1 and any("restarts from the base" in t for t in texts)


def test_rl_curves_one_line_per_run_and_panel_per_metric():
    curves = {"R1-Zero": [{"step": 0, "heldout_accuracy": 0.1, "heldout_length": 9.0},
                          {"step": 1, "loss": 0.3},
                          {"step": 2, "heldout_accuracy": 0.5, "heldout_length": 30.0}],
              "cold start + RL": [{"step": 0, "heldout_accuracy": 0.6, "heldout_length": 40.0}]}
    fig = render_rl_curves(curves)
    acc, length = fig.axes
    # rows without the metric are skipped
    assert [len(line.get_xdata()) for line in acc.lines] == [2, 1]
    assert list(length.lines[0].get_ydata()) == [9.0, 30.0]


def test_stages_bars_carry_the_values():
    rows = {"base": {"pass1": 0.25, "majk": 0.5, "k": 8},
            "r1": {"pass1": 0.75, "majk": 1.0, "k": 8}}
    ax = render_stages(rows).axes[0]
    assert [round(p.get_height(), 2) for p in ax.patches] == [0.25, 0.75, 0.5, 1.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pass@1", "maj@8"]


@pytest.mark.parametrize("correct, why, verdict", [(True, None, "kept"),
                                                   (True, "rambling", "dropped: rambling"),
                                                   (False, None, "rejected: wrong answer")])
def test_trace_verdicts(correct, why, verdict):
    record = {"question": "3+4", "answer": 7,
              "completion": "<think>3+4=7</think><answer>7</answer>", "correct": correct,
              "why": why}
    texts = [t.get_text() for t in render_trace(record).axes[0].texts]
    assert texts[0].endswith(verdict) and texts[1] == record["completion"]


def test_wrap_trace_never_cuts_a_tag_and_keeps_every_character():
    text = "<think>7+9=16,4+8+1=13,3+5+1=9,check 936-579=357</think><answer>936</answer>" * 3
    for width in (16, 20, 40, 95):
        lines = wrap_trace(text, width)
        assert "".join(lines) == text
        assert all(len(line) <= width for line in lines)
        for tag in ("<think>", "</think>", "<answer>", "</answer>"):
            # every tag in the text is whole on some line
            assert sum(line.count(tag) for line in lines) == text.count(tag), (width, tag)
    assert wrap_trace("<think>1+2=3</think>", 40) == ["<think>1+2=3</think>"]
    with pytest.raises(ValueError, match="width=4"):
        wrap_trace(text, 4)


def test_render_trace_draws_the_wrapped_lines():
    record = {"question": "3+4", "answer": 7, "correct": True, "why": None,
              "completion": "<think>" + "3+4=7," * 30 + "</think><answer>7</answer>"}
    texts = [t.get_text() for t in render_trace(record, width=40).axes[0].texts]
    assert texts[1:] == wrap_trace(record["completion"], 40)
