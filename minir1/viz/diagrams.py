"""Box-and-arrow drawing for the lessons' diagrams, in the data coordinates of one axes.

``draw_box`` adds a rounded box centred on a point, with a title and an optional note under it;
``draw_arrow`` adds an arrow between two points, optionally curved, dashed or labelled. The MTP
causal chain (``viz.mtp.render_mtp_chain``), the R1 pipeline (``viz.pipeline.render_pipeline``) and
the two ways to train a student (``viz.distill.render_paths``) are all drawn with these two, so the
diagrams share one look and one place to change it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# the diagrams' two box fills: orange for where the data come from (a teacher, R1-Zero's own
# samples), blue for the models trained on them
BOX_ORANGE, BOX_BLUE = "#fde2c8", "#d6e6f5"


def draw_box(ax: Axes, center: tuple[float, float], size: tuple[float, float], title: str = "",
             note: str = "", *, facecolor: str = "white", edgecolor: str = "#444444",
             linewidth: float = 1.0, linestyle: str = "-", alpha: float | None = None,
             rounding: float | None = None, title_dy: float = 0.0, note_dy: float = 0.0,
             title_size: float = 9, note_size: float = 8, bold: bool = True, ink: str = "black",
             zorder: float = 1) -> FancyBboxPatch:
    """A rounded box of ``size`` (width, height) centred on ``center``; ``title`` is written
    ``title_dy`` above the centre and ``note`` at ``note_dy`` (data units), one z-level above it.

    ``rounding`` is the corner radius in data units (None: matplotlib's default, which scales with
    the font size). No title and ``facecolor="none"`` give a bare outline, e.g. a ring around a box.
    """
    (x, y), (w, h) = center, size
    if w <= 0 or h <= 0:
        raise ValueError(f"box size {size}: width and height must be > 0")
    style = "round,pad=0.02" if rounding is None else f"round,pad=0.02,rounding_size={rounding}"
    box = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=style, facecolor=facecolor,
                         edgecolor=edgecolor, linewidth=linewidth, linestyle=linestyle, alpha=alpha,
                         zorder=zorder)
    ax.add_patch(box)
    if title:
        ax.text(x, y + title_dy, title, ha="center", va="center", fontsize=title_size,
                weight="bold" if bold else "normal", color=ink, zorder=zorder + 1)
    if note:
        ax.text(x, y + note_dy, note, ha="center", va="center", fontsize=note_size, color=ink,
                zorder=zorder + 1)
    return box


def draw_arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], *,
               color: str = "#333333", linewidth: float = 1.0, linestyle: str = "-",
               rad: float = 0.0, head: float = 10, shrink: float = 2.0, label: str = "",
               label_dy: float = 0.07, label_size: float = 8, zorder: float = 3) -> FancyArrowPatch:
    """An arrow from ``start`` to ``end`` with a filled head ``head`` points long.

    ``rad`` bends it into an arc (matplotlib's ``arc3``: the control point sits ``rad`` times the
    length off the straight line, to the right of the direction of travel for rad > 0, so below a
    left-to-right arrow); ``shrink`` stops it that many points short of both ends (the default is
    that of ``ax.annotate``'s arrows).
    ``label`` is written in the arrow's colour, centred ``label_dy`` above the straight midpoint.
    """
    arrow = FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=head, color=color,
                            linewidth=linewidth, linestyle=linestyle,
                            connectionstyle=f"arc3,rad={rad}", shrinkA=shrink, shrinkB=shrink,
                            zorder=zorder)
    ax.add_patch(arrow)
    if label:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + label_dy, label, ha="center",
                fontsize=label_size, color=color, zorder=zorder)
    return arrow


def box_diagram(boxes: Mapping[str, tuple[float, float, str, str]], size: tuple[float, float],
                figsize: tuple[float, float], xlim: tuple[float, float],
                ylim: tuple[float, float], orange: Collection[str] = (), title_dy: float = 0.0,
                note_dy: float = 0.0) -> tuple[Figure, Axes]:
    """A figure with one box per entry of ``boxes`` (key: (x, y, title, note)), all of ``size``;
    the keys in ``orange`` are filled orange (where the data come from), the rest blue. Returns the
    figure and its axes, for the caller's arrows."""
    fig = Figure(figsize=figsize)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set(xlim=xlim, ylim=ylim)
    ax.set_axis_off()
    for key, (x, y, title, note) in boxes.items():
        draw_box(ax, (x, y), size, title, note, title_dy=title_dy, note_dy=note_dy,
                 facecolor=BOX_ORANGE if key in orange else BOX_BLUE)
    return fig, ax


__all__ = ["BOX_BLUE", "BOX_ORANGE", "box_diagram", "draw_arrow", "draw_box"]
