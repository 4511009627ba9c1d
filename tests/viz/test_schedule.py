"""The schedule Gantt charts render headless from simulated timelines and draw what they hold."""

import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle

from minir1.plan.schedule import ChunkTimes, simulate
from minir1.viz.schedule import COLORS, render_bubbles, render_schedule, render_schedules

T = ChunkTimes(F=1, B=2, W=1, FB=2.5)


def boxes(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_one_box_per_chunk_and_a_border_per_overlapped_pair():
    tl = simulate("DualPipe", 4, 8, T)
    fig = render_schedule(tl)
    ax = fig.axes[0]
    filled = [b for b in boxes(ax) if b.get_fill()]
    borders = [b for b in boxes(ax) if not b.get_fill()]
    assert len(filled) == len(tl.events)
    assert len(borders) == sum(e.overlapped and e.kind == "F" for e in tl.events) > 0
    # the reverse direction is drawn in the lighter shades
    assert {to_hex(b.get_facecolor()) for b in filled} >= {COLORS["F"][0], COLORS["F"][1]}
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"rank {r}" for r in range(4)]
    assert ax.get_xlim() == (0, tl.makespan)
    title = ax.get_title(loc="left")
    assert title.startswith("DualPipe: 4 stages on 4 ranks, 8 micro-batches")
    assert "bubble 1.5 (Table 2: 1.5)" in title and "peak activations 5" in title
    assert "parameters 2x" in title
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "F&B (overlapped)" in labels and "F, reverse direction" in labels
    plt.close(fig)


def test_schedules_share_one_time_axis():
    runs = [simulate(s, 4, 8, T) for s in ("1F1B", "ZB1P", "DualPipeV")]
    fig = render_schedules(runs, labels=False)
    assert len(fig.axes) == 3
    assert {ax.get_xlim() for ax in fig.axes} == {(0, max(r.makespan for r in runs))}
    assert all(not ax.texts for ax in fig.axes)  # no micro-batch numbers when asked
    assert fig.axes[2].get_title(loc="left").startswith("DualPipeV: 4 stages on 2 ranks")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "F, reverse direction" not in labels  # one direction only
    plt.close(fig)
    # a schedule outside Table 2's conditions says so rather than show a wrong formula as exact
    fig = render_schedule(simulate("DualPipe", 4, 8, ChunkTimes(F=1, B=1, W=0.25, FB=1.5)))
    assert "(its conditions unmet)" in fig.axes[0].get_title(loc="left")
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one"):
        render_schedules([])


def test_bubbles_bars_are_the_timelines_and_dots_the_formulas():
    runs = [simulate(s, 8, 16, T) for s in ("1F1B", "ZB1P", "DualPipe", "DualPipeV")]
    fig = render_bubbles(runs)
    bubble, acts = fig.axes
    assert [p.get_height() for p in bubble.patches] == [21, 7, 4.5, 4.5]
    assert list(bubble.lines[0].get_ydata()) == [21, 7, 4.5, 4.5]  # (PP-1)(F+B), ... Table 2
    assert [p.get_height() for p in acts.patches] == [8, 8, 9, 9]
    assert bubble.get_xticklabels()[3].get_text() == "DualPipeV\n8 stages\n4 ranks"
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one"):
        render_bubbles([])
