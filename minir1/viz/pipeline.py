"""Figures of the R1 pipeline lesson (notebooks/10_r1_pipeline.ipynb).

``render_pipeline()`` draws the stages as boxes: R1-Zero from the base on top, R1's four stages
below (R1 §2.3, Nature Fig. 2). ``render_rl_curves(curves)`` overlays the held-out greedy accuracy
and response length of several GRPO runs against the step (R1-Zero from the base vs reasoning RL
after the cold start: does the cold start speed RL up?). ``render_stages(rows)`` draws the results
table as bars: pass@1 and maj@k per model, the paper's two columns. ``render_trace(record)`` shows
one rejection-sampling verdict (kept, wrong, or the readability reason) for the trace browser.
The distillation lesson's own figures are in ``minir1.viz.distill``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from minir1.data.tags import SPECIALS
from minir1.viz.diagrams import box_diagram, draw_arrow


def render_pipeline() -> Figure:
    """The stages as boxes: R1-Zero on top, the four R1 stages below (R1 §2.3, Nature Fig. 2).

    Each arrow hands on the weights, except Dev2 -> Dev3: Dev3 takes only Dev2's rejection-sampled
    traces and restarts its SFT from the base model (the dashed arc), as R1 restarted from
    DeepSeek-V3-Base.
    """
    boxes = {  # key: (x, y, title, what it does)
        "base": (0, 0, "base model", "pre-trained\n(lesson 07)"),
        "zero": (2, 1, "R1-Zero", "GRPO from the base,\nR1-Zero template"),
        "dev1": (1, 0, "Dev1: cold start", "SFT on a small set\nof clean traces"),
        "dev2": (2, 0, "Dev2: reasoning RL", "GRPO from Dev1,\nchat format"),
        "dev3": (3, 0, "Dev3: rejection\nsampling + SFT", "correct, readable\nDev2 samples"),
        "r1": (4, 0, "R1: final RL", "GRPO from Dev3"),
    }
    w, h = 0.8, 0.56
    fig, ax = box_diagram(boxes, (w, h), (11, 3.6), (-0.5, 4.5), (-0.8, 1.35), orange=("zero",),
                          title_dy=0.1, note_dy=-0.15)
    for a, b in (("dev1", "dev2"), ("dev2", "dev3"), ("dev3", "r1"), ("base", "dev1")):
        draw_arrow(ax, (boxes[a][0] + w / 2, 0), (boxes[b][0] - w / 2, 0))
    draw_arrow(ax, (0, h / 2), (2 - w / 2, 1))  # base -> R1-Zero
    draw_arrow(ax, (0, -h / 2), (3, -h / 2), linestyle="--", color="#c0392b", rad=0.22,
               label="Dev3 takes only the samples from Dev2: its SFT restarts from the base",
               label_dy=-0.5 + h / 2)  # the label sits at y = -0.5, inside the arc
    return fig


def render_rl_curves(curves: Mapping[str, Sequence[dict[str, float]]],
                     metrics: Sequence[str] = ("heldout_accuracy", "heldout_length")) -> Figure:
    """One panel per metric of the held-out checks (``heldout_metrics`` keys), one line per run."""
    labels = {"heldout_accuracy": "held-out accuracy (greedy)",
              "heldout_length": "mean response length (tokens)",
              "heldout_format": "well-formed rate", "heldout_reasoning": "reasons first"}
    fig = Figure(figsize=(5.5 * len(metrics), 3.4))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for name, history in curves.items():
            rows = [r for r in history if metric in r]
            ax.plot([r["step"] for r in rows], [r[metric] for r in rows], "o-", label=name)
        ax.set(xlabel="GRPO step", title=labels.get(metric, metric))
        if metric != "heldout_length":
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def render_stages(rows: Mapping[str, dict[str, Any]], title: str = "") -> Figure:
    """pass@1 and maj@k bars per model (the results table of ``format_results``)."""
    names = list(rows)
    k = next(iter(rows.values()))["k"]
    fig = Figure(figsize=(max(6.0, 1.25 * len(names)), 3.6))
    ax = fig.subplots()
    xs = range(len(names))
    width = 0.38
    for offset, key, label in ((-width / 2, "pass1", "pass@1"), (width / 2, "majk", f"maj@{k}")):
        values = [rows[n][key] for n in names]
        bars = ax.bar([x + offset for x in xs], values, width, label=label)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8, padding=1)
    ax.set_xticks(list(xs), [n.replace(" ", "\n").replace("-", "-\n", 1) for n in names],
                  fontsize=8)
    ax.set(ylim=(0, 1.1), ylabel="held-out accuracy", title=title)
    ax.legend(loc="upper left", ncols=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def render_trace(record: dict[str, Any], width: int = 95) -> Figure:
    """One sampled trace and its rejection-sampling verdict: ``record`` has ``question``,
    ``answer``, ``completion``, ``correct`` and ``why`` (None when kept, else why it was
    dropped). The completion is wrapped at ``width`` characters by ``wrap_trace``."""
    if not record["correct"]:
        verdict = "rejected: wrong answer"
    else:
        verdict = "kept" if record["why"] is None else f"dropped: {record['why']}"
    color = "#2a9d4b" if verdict == "kept" else "#c0392b"
    lines = wrap_trace(record["completion"], width)
    fig = Figure(figsize=(11, 0.7 + 0.28 * len(lines)))
    ax = fig.add_axes((0.01, 0.0, 0.98, 1.0))
    ax.set_axis_off()
    ax.set(xlim=(0, 1), ylim=(len(lines) + 0.2, -1.4))
    ax.text(0, -0.7, f"{record['question']} = {record['answer']}    {verdict}", color=color,
            fontsize=10, family="monospace", weight="bold", va="center")
    for y, line in enumerate(lines):
        ax.text(0, y + 0.3, line, fontsize=9, family="monospace", va="center")
    return fig


# a tag is one unit; a line may break after a step's separator or around a tag
_ATOM = re.compile("|".join(re.escape(t) for t in SPECIALS if t.startswith("<")) + r"|[\s\S]")
_BREAK_AFTER = (",", " ", ";", "\n")


def wrap_trace(text: str, width: int = 95) -> list[str]:
    """``text`` in lines of at most ``width`` characters that never cut a tag (``<answer>`` stays
    whole): each line breaks at its last step separator (a comma or space) or tag boundary, and
    mid-step only where a step is longer than half a line. A newline in ``text`` ends a line."""
    if width < max(len(t) for t in SPECIALS):
        raise ValueError(f"width={width}: must be at least the longest tag's length")
    lines: list[str] = []
    line: list[str] = []  # the current line's atoms
    size = 0  # characters in ``line``
    soft = 0  # atoms in ``line`` up to its last good break
    soft_size = 0  # characters in those atoms
    for atom in _ATOM.findall(text):
        if atom == "\n":
            lines.append("".join(line))
            line, size, soft, soft_size = [], 0, 0, 0
            continue
        if size + len(atom) > width:
            cut, cut_size = (soft, soft_size) if 2 * soft_size >= width else (len(line), size)
            lines.append("".join(line[:cut]))
            line, size = line[cut:], size - cut_size
            soft, soft_size = 0, 0
        if len(atom) > 1 and line:  # a break before a tag
            soft, soft_size = len(line), size
        line.append(atom)
        size += len(atom)
        if len(atom) > 1 or atom in _BREAK_AFTER:
            soft, soft_size = len(line), size
    if line or not lines:
        lines.append("".join(line))
    return lines


__all__ = ["render_pipeline", "render_rl_curves", "render_stages", "render_trace", "wrap_trace"]
