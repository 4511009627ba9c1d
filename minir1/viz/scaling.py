"""Figures of the scaling-up lesson (notebooks/12_scaling_up.ipynb), from the JSON that
``minir1.dist.inspect`` writes (or hand-made rows of the same shape).

``render_mesh(layout, n_experts)`` draws the ``("edp", "ep")`` grid of a launch: each rank's rows of
the batch and routed experts, the expert-parallel groups the all-to-alls run in, the replicas
each expert's gradient is summed over, and the simulated nodes.
``render_traffic(matrix, ranks_per_node)`` draws one dispatch all-to-all as a rank x rank heatmap
(row = source, column = destination) with the simulated nodes outlined: the diagonal stays on
its rank, a block on the diagonal rides NVLink, the rest crosses nodes over InfiniBand.
``render_placement(placement)`` shows where a sharded model's parameters live: which rank holds
which routed expert, how FSDP2 slices one parameter, and the elements each rank holds against
one process. ``render_link_cost(scenarios)`` turns bytes into time at the H800 cluster's
bandwidths, NVLink 160 GB/s inside a node and InfiniBand 50 GB/s across (V3 §3.2.2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from minir1.dist.mesh import ParallelLayout
from minir1.viz.diagrams import BOX_BLUE, BOX_ORANGE, draw_box

NVLINK_GBPS = 160.0  # GB/s inside a node (H800, V3 §3.2.2)
IB_GBPS = 50.0  # GB/s across nodes (InfiniBand, V3 §3.2.2)
_EXPERT = re.compile(r"^(?P<moe>.+)\.experts\.(?P<e>\d+)\.")
_RANK_COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6",
                "#9d755d"]


def render_mesh(layout: ParallelLayout, n_experts: int, batch: int | None = None,
                ranks_per_node: int | None = None) -> Figure:
    """The ranks of ``layout`` as its ``("edp", "ep")`` mesh: a row per expert-parallel group
    (``ep`` consecutive ranks, between which the tokens travel), a column per expert-data group
    (the ``edp`` replicas of the same experts, whose gradients are summed). Each box names the
    rank, its experts and (with ``batch``) its rows of the global batch; dashed outlines group
    ``ranks_per_node`` ranks into a simulated node."""
    if n_experts % layout.ep:
        raise ValueError(f"ep={layout.ep} must divide n_experts={n_experts}")
    if batch is not None and batch % layout.world:
        raise ValueError(f"batch={batch} must be divisible by world={layout.world}")
    fig = Figure(figsize=(2.3 * layout.ep + 2.2, 1.25 * layout.edp + 1.6))
    ax = fig.add_axes((0, 0, 1, 0.88))
    ax.set(xlim=(-1.4, layout.ep - 0.4), ylim=(layout.edp + 0.05, -0.85))
    ax.set_axis_off()
    per = None if batch is None else batch // layout.world
    for rank in range(layout.world):
        group, pos = divmod(rank, layout.ep)
        experts = layout.local_experts(rank, n_experts)
        note = (f"experts {experts.start}-{experts.stop - 1}" if layout.ep > 1
                else "every expert" if layout.dp == "zero1" else "a shard of every expert")
        if per is not None:
            note += f"\nbatch rows {rank * per}-{(rank + 1) * per - 1}"
        draw_box(ax, (pos, group), (0.84, 0.66), f"rank {rank}", note, title_dy=-0.16,
                 note_dy=0.12, facecolor=BOX_ORANGE if group % 2 else BOX_BLUE)
    for group in range(layout.edp):
        ax.text(-0.55, group, f"EP group {group}\n(all-to-all)", ha="right", va="center",
                fontsize=9)
    for pos in range(layout.ep):
        if layout.edp > 1:
            ax.text(pos, -0.6, "same experts: their\ngradients summed (edp)", ha="center",
                    va="center", fontsize=8, color="#555555")
    rest = (f"ZeRO-1: every other parameter whole on every rank, its AdamW state split over all "
            f"{layout.world}" if layout.dp == "zero1" else
            f"FSDP2: every other parameter is split over all {layout.world} ranks")
    ax.text((layout.ep - 1) / 2, layout.edp - 0.2, rest, ha="center", va="center", fontsize=8,
            color="#555555")
    if ranks_per_node and ranks_per_node < layout.ep:
        for group in range(layout.edp):
            for first in range(0, layout.ep, ranks_per_node):
                draw_box(ax, (first + (ranks_per_node - 1) / 2, group),
                         (ranks_per_node - 0.06, 0.84), facecolor="none", linestyle="--",
                         edgecolor="#c0392b", zorder=0)
    fig.suptitle(f"{layout.world} ranks as the (edp={layout.edp}) x (ep={layout.ep}) mesh"
                 + (f", nodes of {ranks_per_node} (dashed)" if ranks_per_node
                    and ranks_per_node < layout.ep else ""), fontsize=10)
    return fig


def _node_lines(ax: Any, n: int, ranks_per_node: int) -> None:
    for k in range(ranks_per_node, n, ranks_per_node):
        ax.axhline(k - 0.5, color="black", lw=2.5)
        ax.axvline(k - 0.5, color="black", lw=2.5)


def render_traffic(matrix: Sequence[Sequence[float]], ranks_per_node: int = 1, title: str = "",
                   unit: str = "token copies") -> Figure:
    """One all-to-all as a heatmap: ``matrix[src][dst]`` rows sent from rank ``src`` to rank
    ``dst``; thick lines separate nodes of ``ranks_per_node`` consecutive ranks. Each cell is
    labelled with its count, each row with its total and the share that crosses nodes."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix must be square (ranks x ranks), got shape {m.shape}")
    if ranks_per_node < 1:
        raise ValueError(f"ranks_per_node={ranks_per_node} must be >= 1")
    n = m.shape[0]
    fig = Figure(figsize=(1.3 * n + 2.6, 1.05 * n + 1.4))
    ax = fig.subplots()
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=max(float(m.max()), 1.0))
    for src in range(n):
        for dst in range(n):
            value = m[src, dst]
            dark = value > 0.6 * m.max()
            ax.text(dst, src, f"{value:g}", ha="center", va="center", fontsize=9,
                    color="white" if dark else "black")
    _node_lines(ax, n, ranks_per_node)
    node = np.arange(n) // ranks_per_node
    cross = [(m[src, node != node[src]].sum() / m[src].sum()) if m[src].sum() else 0.0
             for src in range(n)]
    ax.set_yticks(range(n), [f"rank {r}\n{m[r].sum():g} sent, {c:.0%} across"
                             for r, c in enumerate(cross)], fontsize=8)
    ax.set_xticks(range(n), [f"rank {r}" for r in range(n)], fontsize=8)
    ax.set(xlabel="destination rank (holds the experts)", ylabel="source rank (holds the tokens)",
           title=title or f"dispatch all-to-all: {unit} per rank pair")
    fig.colorbar(im, ax=ax, label=unit, shrink=0.8)
    fig.tight_layout()
    return fig


def _expert_owners(placement: Sequence[Sequence[Mapping[str, Any]]],
                   ) -> tuple[str | None, np.ndarray]:
    """(the first MoE's name, its (ranks, experts) bool matrix of who holds which expert)."""
    first = None
    held: dict[int, set[int]] = {}
    for rank, rows in enumerate(placement):
        for row in rows:
            match = _EXPERT.match(row["name"])
            if match is None:
                continue
            first = first or match["moe"]
            if match["moe"] == first:
                held.setdefault(int(match["e"]), set()).add(rank)
    grid = np.zeros((len(placement), (max(held) + 1) if held else 0), dtype=bool)
    for e, ranks in held.items():
        grid[sorted(ranks), e] = True
    return first, grid


def _span(held: np.ndarray) -> str:
    """'experts 0-7' for a rank's row of the owner grid (ranges joined by commas)."""
    idx = np.flatnonzero(held).tolist()
    if not idx:
        return "no experts"
    parts, start = [], idx[0]
    for a, b in zip(idx, [*idx[1:], None], strict=True):
        if b != a + 1:
            parts.append(f"{start}-{a}" if a > start else f"{start}")
            start = b
    return "experts " + ", ".join(parts)


def render_placement(placement: Sequence[Sequence[Mapping[str, Any]]],
                     example: str | None = None) -> Figure:
    """Where a sharded model's parameters live, from ``placement[rank]`` rows (``name``,
    ``global_shape``, ``local_shape``, ``numel``, ``kind``: ``"fsdp shard"`` or ``"expert (this
    rank's)"``), as ``minir1.dist.inspect`` reports them. Three panels: the routed experts of the
    first MoE each rank holds; how FSDP2 slices ``example`` (default: the largest shard) along
    dim 0; and the elements each rank holds, by kind, against one process holding everything."""
    world = len(placement)
    if world == 0:
        raise ValueError("placement is empty: one list of rows per rank")
    fig = Figure(figsize=(15, 0.6 * world + 2.8))
    ax_e, ax_s, ax_n = fig.subplots(1, 3, width_ratios=[2.2, 1.2, 1.6])

    moe, grid = _expert_owners(placement)
    colors = ListedColormap(["#eeeeee", "#f58518"])
    if grid.size:
        ax_e.imshow(grid, cmap=colors, vmin=0, vmax=1, aspect="auto")
        ax_e.set_xticks(range(grid.shape[1]))
        ax_e.set(xlabel=f"routed expert of {moe}",
                 title="routed experts: whole, on one rank of each EP group")
    else:
        ax_e.text(0.5, 0.5, "no expert parallelism: every rank\nholds FSDP shards of every "
                  "expert", ha="center", va="center", transform=ax_e.transAxes)
        ax_e.set(title="routed experts")
    ax_e.set_yticks(range(world), [f"rank {r}" + (f"\n{_span(grid[r])}" if grid.size else "")
                                   for r in range(world)])

    shards = {row["name"]: row for row in placement[0] if row["kind"] == "fsdp shard"}
    if example is None and shards:
        example = max(shards, key=lambda n: (shards[n]["global_shape"][0], shards[n]["numel"]))
    if example is not None:
        rows0 = int(next(r for r in placement[0] if r["name"] == example)["global_shape"][0])
        start = 0
        for rank, rows in enumerate(placement):
            mine = next(r for r in rows if r["name"] == example)
            n = int(mine["local_shape"][0]) if mine["local_shape"] else 0
            ax_s.add_patch(Rectangle((0, start), 1, n, color=_RANK_COLORS[rank % 8], ec="white"))
            if n:
                ax_s.text(0.5, start + n / 2, f"rank {rank}\nrows {start}-{start + n - 1}",
                          ha="center", va="center", fontsize=8, color="white")
            start += n
        ax_s.set(xlim=(0, 1), ylim=(rows0, 0), xticks=[], ylabel="dim 0 (row)",
                 title=f"FSDP2 slices dim 0:\n{example} {tuple(mine['global_shape'])}")

    kinds = ("fsdp shard", "expert (this rank's)")
    held = np.array([[sum(r["numel"] for r in rows if r["kind"] == k) for k in kinds]
                     for rows in placement], dtype=np.float64)
    left = np.zeros(world)
    for i, (kind, color) in enumerate(zip(kinds, ("#4c78a8", "#f58518"), strict=True)):
        ax_n.barh(range(world), held[:, i], left=left, color=color, label=kind)
        left += held[:, i]
    total = _one_process_total(placement)
    ax_n.axvline(total, color="black", ls="--", label=f"one process: {total:,.0f}")
    for r in range(world):
        ax_n.text(left[r], r, f" {left[r] / total:.0%}", va="center", fontsize=8)
    ax_n.set_yticks(range(world), [f"rank {r}" for r in range(world)])
    ax_n.invert_yaxis()
    ax_n.set(xlabel="parameter elements held", xlim=(0, total * 1.12),
             title="what each rank holds")
    ax_n.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _one_process_total(placement: Sequence[Sequence[Mapping[str, Any]]]) -> float:
    """Elements of the whole model: every parameter once, at its global shape."""
    shapes = {row["name"]: row["global_shape"] for rows in placement for row in rows}
    return float(sum(int(np.prod(s)) if s else 1 for s in shapes.values()))


def link_seconds(nvlink_bytes: float, ib_bytes: float, nvlink_gbps: float = NVLINK_GBPS,
                 ib_gbps: float = IB_GBPS) -> tuple[float, float]:
    """Seconds the bytes take on each link: (NVLink inside a node, InfiniBand across nodes)."""
    if nvlink_gbps <= 0 or ib_gbps <= 0:
        raise ValueError(f"bandwidths must be positive, got nvlink_gbps={nvlink_gbps}, "
                         f"ib_gbps={ib_gbps}")
    return nvlink_bytes / (nvlink_gbps * 1e9), ib_bytes / (ib_gbps * 1e9)


def render_link_cost(scenarios: Mapping[str, tuple[float, float]],
                     nvlink_gbps: float = NVLINK_GBPS, ib_gbps: float = IB_GBPS,
                     title: str = "") -> Figure:
    """Time on the wire per scenario: ``scenarios[label] = (nvlink_bytes, ib_bytes)``, drawn as
    stacked bars of the NVLink part and the InfiniBand part (the links one after the other, a
    simple upper bound; V3 overlaps them and hides both behind computation, §3.2.1)."""
    if not scenarios:
        raise ValueError("scenarios is empty: pass label -> (nvlink_bytes, ib_bytes)")
    labels = list(scenarios)
    times = np.array([link_seconds(*scenarios[k], nvlink_gbps, ib_gbps) for k in labels]) * 1e6
    fig = Figure(figsize=(9.5, 0.65 * len(labels) + 1.8))
    ax = fig.subplots()
    y = np.arange(len(labels))
    ax.barh(y, times[:, 0], color="#54a24b", label=f"NVLink, {nvlink_gbps:g} GB/s (in a node)")
    ax.barh(y, times[:, 1], left=times[:, 0], color="#e45756",
            label=f"InfiniBand, {ib_gbps:g} GB/s (across nodes)")
    for i, (k, t) in enumerate(zip(labels, times.sum(1), strict=True)):
        nv, ib = scenarios[k]
        ax.text(t, i, f" {t:.3g} µs ({(nv + ib) / 1e6:.3g} MB)", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=9)
    ax.invert_yaxis()
    ax.set(xlabel="time on the wire (µs)", xlim=(0, times.sum(1).max() * 1.35),
           title=title or "the same bytes, inside a node vs across nodes")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=2, fontsize=8,
              frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


__all__ = ["IB_GBPS", "NVLINK_GBPS", "link_seconds", "render_link_cost", "render_mesh",
           "render_placement", "render_traffic"]
