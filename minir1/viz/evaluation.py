"""Held-out accuracy of a model, per task and difficulty level, in each answering mode.

``render_accuracy`` draws what ``minir1 eval`` prints: for every level of a task, one bar per mode
(``direct``, ``reason``, ``free``). The space between the ``direct`` and ``reason`` bars on the hard
levels is the gap reinforcement learning later closes; ``free`` shows which of the two the model
does on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from minir1.eval.greedy import EvalResult, accuracy_by_level

MODE_COLORS = {"direct": "#9e9e9e", "reason": "#2e7d32", "free": "#1565c0"}


_TITLE = "held-out accuracy (greedy)"


def render_accuracy(by_mode: dict[str, list[EvalResult]], tasks: Sequence[str] | None = None,
                    title: str | None = None) -> Figure:
    """One panel per task: accuracy against level, a bar per mode; the value is written above each
    bar. Several tasks share ``title`` above their panels; one task's panel has it as its only
    title (default: the task's name and "held-out accuracy (greedy)")."""
    tables = {mode: accuracy_by_level(res) for mode, res in by_mode.items()}
    keys = sorted({k for t in tables.values() for k in t})
    tasks = list(tasks) if tasks is not None else sorted({task for task, _ in keys})
    if not tasks:
        raise ValueError("render_accuracy: no results to draw")
    fig = Figure(figsize=(3.6 * len(tasks), 3.2), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False, sharey=True)[0]
    width = 0.8 / max(1, len(tables))
    for ax, task in zip(axes, tasks, strict=True):
        levels = sorted(lv for t, lv in keys if t == task)
        x = np.arange(len(levels))
        for i, (mode, table) in enumerate(tables.items()):
            acc = [table.get((task, lv), np.nan) for lv in levels]
            bars = ax.bar(x + (i - (len(tables) - 1) / 2) * width, acc, width, label=mode,
                          color=MODE_COLORS.get(mode))
            ax.bar_label(bars, labels=[f"{a:.0%}" if a == a else "" for a in acc], fontsize=6,
                         padding=1)
        panel = task if len(tasks) > 1 else title or f"{task}: {_TITLE}"
        ax.set(title=panel, xticks=x, xticklabels=[f"L{lv}" for lv in levels], ylim=(0, 1.12),
               xlabel="level")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[-1].legend(fontsize=7, loc="upper right")
    if len(tasks) > 1:
        fig.suptitle(title or _TITLE)
    return fig


__all__ = ["MODE_COLORS", "render_accuracy"]
