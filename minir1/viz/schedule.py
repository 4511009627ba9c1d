"""Pipeline schedules as Gantt charts for the real-run lesson (13), from the timelines of
``minir1.plan.schedule.simulate``.

``render_schedule(timeline)`` draws one simulated schedule: a row per rank, a box per chunk (F, B,
W) labelled with its micro-batch, the reverse direction of DualPipe in lighter shades, an F&B
pair as one box with a black border around its two halves, as in V3 Figure 5 and the DualPipe
README's figures; the title gives the bubble, the peak activations and the parameter copies
measured on the timeline next to V3 Table 2's. ``render_schedules(timelines)`` stacks several on
one time axis, so their lengths compare; ``render_bubbles(timelines)`` sets their bubbles and peak
activations beside the table's formulas.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from minir1.plan.schedule import Timeline, table2, table2_conditions

# (direction 0, direction 1) fills per kind: the reverse half of DualPipe is lighter
COLORS = {"F": ("#4c78a8", "#a8c6e5"), "B": ("#54a24b", "#a9d9a2"), "W": ("#b279a2", "#e2bfd8")}
ROW = 0.8  # height of a rank's row


def _label(t: Timeline) -> str:
    ref = table2(t.schedule, t.pp, t.times)
    exact = "" if not table2_conditions(t.schedule, t.times) else " (its conditions unmet)"
    return (f"{t.schedule}: {t.pp} stages on {t.ranks} ranks, {t.micro_batches} micro-batches - "
            f"bubble {t.bubble:g} (Table 2: {ref['bubble']:g}{exact}), peak activations "
            f"{t.peak_activations}, parameters {t.param_copies}x")


def draw_schedule(ax: Axes, t: Timeline, labels: bool = True) -> None:
    """The chunks of ``t`` on ``ax``: rank r's row at y = r, time along x."""
    for e in t.events:
        y = e.rank - ROW / 2
        h = ROW / 2 if e.overlapped else ROW  # an F&B's F on top, its B below
        if e.overlapped and e.kind == "B":
            y += ROW / 2
        color = COLORS[e.kind][e.direction]
        ax.add_patch(Rectangle((e.start, y), e.end - e.start, h, facecolor=color,
                               edgecolor="white", linewidth=0.6,
                               hatch="//" if e.split else None))
        if labels:
            ax.text((e.start + e.end) / 2, y + h / 2, str(e.mb), ha="center", va="center",
                    fontsize=6 if e.overlapped else 7)
        if e.overlapped and e.kind == "F":  # the shared border of a mutually overlapped pair
            ax.add_patch(Rectangle((e.start, e.rank - ROW / 2), e.end - e.start, ROW,
                                   fill=False, edgecolor="black", linewidth=1.0,
                                   zorder=3))
    ax.set_yticks(range(t.ranks), [f"rank {r}" for r in range(t.ranks)], fontsize=8)
    ax.set(xlim=(0, t.makespan), ylim=(t.ranks - 0.5, -0.5))
    ax.set_title(_label(t), fontsize=9, loc="left")


def _legend(fig: Figure, timelines: Sequence[Timeline]) -> None:
    two_way = any(e.direction for t in timelines for e in t.events)
    names = {"F": "F (forward)", "B": "B (backward)", "W": "W (backward for weights)"}
    handles = [Patch(facecolor=COLORS[k][0], label=names[k]) for k in names]
    if two_way:
        handles += [Patch(facecolor=COLORS[k][1], label=f"{k}, reverse direction")
                    for k in names]
    handles += [Patch(facecolor="white", edgecolor="black", label="F&B (overlapped)"),
                Patch(facecolor="white", edgecolor="grey", hatch="//", label="B with W split")]
    fig.legend(handles=handles, loc="lower center", ncols=min(len(handles), 5), fontsize=8,
               frameon=False)


def render_schedules(timelines: Sequence[Timeline], labels: bool = True) -> Figure:
    """Several simulated schedules, one panel each, on one time axis (V3 Table 2 side by side)."""
    if not timelines:
        raise ValueError("timelines must hold at least one simulated schedule")
    heights = [t.ranks + 0.8 for t in timelines]
    fig = Figure(figsize=(12, 0.42 * sum(heights) + 1.3))
    axes = fig.subplots(len(timelines), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, t in zip(axes, timelines, strict=True):
        draw_schedule(ax, t, labels)
    axes[0].set_xlim(0, max(t.makespan for t in timelines))
    axes[-1].set_xlabel("time (units of the chunk times)")
    fig.tight_layout(rect=(0, 0.6 / fig.get_figheight(), 1, 1))  # room for the legend
    _legend(fig, timelines)
    return fig


def render_bubbles(timelines: Sequence[Timeline]) -> Figure:
    """The bubble and the peak activations measured on each timeline, as bars, beside V3 Table
    2's formulas (dots): one group per schedule."""
    if not timelines:
        raise ValueError("timelines must hold at least one simulated schedule")
    fig = Figure(figsize=(max(7.0, 2.2 * len(timelines)), 3.6))
    axes = fig.subplots(1, 2)
    xs = range(len(timelines))
    names = [f"{t.schedule}\n{t.pp} stages\n{t.ranks} ranks" for t in timelines]
    for ax, key, title in ((axes[0], "bubble", "bubble (idle time of the idlest rank)"),
                           (axes[1], "peak_activations", "peak activations (chunks per rank)")):
        got = [getattr(t, key) for t in timelines]
        ref = [table2(t.schedule, t.pp, t.times)[key] for t in timelines]
        bars = ax.bar(xs, got, 0.6, color="#4c78a8", label="simulated")
        ax.bar_label(bars, labels=[f"{v:g}" for v in got], fontsize=8, padding=1)
        ax.plot(xs, ref, "o", color="#e45756", label="V3 Table 2")
        ax.set_xticks(list(xs), names, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def render_schedule(timeline: Timeline, labels: bool = True) -> Figure:
    """One simulated schedule as a Gantt chart."""
    return render_schedules([timeline], labels)


__all__ = ["COLORS", "draw_schedule", "render_bubbles", "render_schedule", "render_schedules"]
