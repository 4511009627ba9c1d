"""A live training plot without wandb: pass ``LivePlot(...).update`` as the trainer's ``on_log``.

In a notebook the figure redraws in place as metric rows arrive (at most every ``every`` seconds);
elsewhere, and in the ``ci`` profile, nothing is drawn until ``close()`` shows the final figure
once. The drawing itself is the pure function ``render_curves(history, keys)``, which tests call
headless.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from matplotlib.figure import Figure

from minir1 import profile
from minir1.viz import in_notebook, show


def render_curves(history: Sequence[dict[str, float]], keys: Sequence[str] = ("loss",),
                  x: str = "step", title: str = "training") -> Figure:
    """One panel per key, the metric against ``x``; rows without a key are skipped."""
    fig = Figure(figsize=(4.2 * len(keys), 3.2), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys, strict=True):
        pts = [(r[x], r[key]) for r in history if key in r and x in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="." if len(pts) < 30 else None)
        ax.set(title=key, xlabel=x)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


class LivePlot:
    def __init__(self, keys: Sequence[str] = ("loss",), title: str = "training",
                 every: float = 2.0) -> None:
        self.keys, self.title, self.every = tuple(keys), title, every
        self.history: list[dict[str, float]] = []
        self._handle = None
        self._last = 0.0
        self._live = profile.current() != "ci" and in_notebook()

    def update(self, row: dict[str, float]) -> None:
        self.history.append(row)
        if self._live and time.perf_counter() - self._last >= self.every:
            self._draw()

    def _draw(self) -> None:
        from IPython.display import display

        fig = render_curves(self.history, self.keys, title=self.title)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        self._last = time.perf_counter()

    def close(self) -> None:
        """Draw the final figure (in place of the live one, or once if nothing was drawn)."""
        if self._handle is not None:
            self._draw()
            return
        show(render_curves(self.history, self.keys, title=self.title))
