"""Figures of the real-run lesson (notebooks/13_the_real_run.ipynb), drawn from ``minir1.plan``'s
numbers (nothing here recomputes them, except ``memory_bytes`` re-pricing the same parameter
counts at another training precision).

``render_bill(rows)`` draws V3 Table 1 (``plan.table1``): GPU-hours and dollars per stage, with the
MFU the paper's hours imply. ``render_memory(cfg, layouts)`` stacks the bytes one GPU holds under
each parallel layout (``plan.training_memory``: weights, gradients, master weights, AdamW moments,
activations; V3 §3.2, §3.3.3) against the GPU's memory; ``render_layout(n_gpus, pp, ep, ...)``
sets one layout of your choice beside V3's, for the widget. ``render_fit(models)`` is the "which
GPU runs which model" table (``plan.fit_table``) as a grid coloured by whether weights and KV cache
fit at a context. ``render_budget(traffics)`` sets the expert-parallel all-to-all time per token
and MoE layer (``plan.traffic``, at the H800 cluster's 50 GB/s InfiniBand and 160 GB/s NVLink,
V3 §3.2.2) beside the compute it has to hide behind (V3 §3.2.1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from minir1.config import ModelConfig
from minir1.plan.comm import Traffic
from minir1.plan.hardware import GIB, GPU, GPUS, H800
from minir1.plan.inference import CONTEXTS, PRECISIONS, ServedModel, fit_table
from minir1.plan.memory import V3_LAYOUT, Layout, training_memory


@dataclass(frozen=True)
class Recipe:
    """Bytes per value of what a GPU stores per parameter while training."""

    label: str
    weights: float  # the working copy the GEMMs read
    gradients: float
    master: float  # the optimizer's copy of the weights (0: the weights are it)
    moments: float  # AdamW's two moments together


# V3 §3.3.3: BF16 weights, FP32 gradients and master weights, BF16 AdamW moments (14 B/param
# before ZeRO-1 shards the last two). The others are what a first attempt would use instead.
RECIPES: dict[str, Recipe] = {
    "v3": Recipe("V3: BF16 weights, FP32 grads + master, BF16 moments (§3.3.3)", 2, 4, 4, 4),
    "bf16": Recipe("BF16 weights, FP32 grads + master, FP32 moments", 2, 4, 4, 8),
    "fp16-zero": Recipe("ZeRO paper: FP16 weights + grads, FP32 master + moments", 2, 2, 4, 8),
    "fp32": Recipe("FP32 weights, grads and moments, no master copy", 4, 4, 0, 8),
}
COMPONENTS = ("weights", "gradients", "master weights", "AdamW moments", "activations")
COMPONENT_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#72b7b2", "#e45756")
FIT_COLORS = ("#d9d9d9", "#f6c26b", "#7fbf7b")  # weights do not fit / a shorter context / fits


def _recipe(recipe: str) -> Recipe:
    if recipe not in RECIPES:
        raise ValueError(f"recipe={recipe!r}: must be one of {sorted(RECIPES)}")
    return RECIPES[recipe]


def memory_bytes(cfg: ModelConfig, layout: Layout, recipe: str = "v3") -> dict[str, float]:
    """Bytes per component on the fullest GPU of ``layout`` (``training_memory``), with the
    parameter states priced at ``recipe``'s bytes per value; "v3" returns the library's numbers
    as they are. Activations are V3's cache (FP8 SwiGLU inputs, recomputed norms) in every
    recipe."""
    r = _recipe(recipe)
    got = training_memory(cfg, layout).bytes
    params = got["weights (BF16)"] / 2  # on this GPU
    sharded = got["master weights (FP32)"] / 4  # the parameters whose state it keeps (ZeRO-1)
    if recipe == "v3":
        values = [got["weights (BF16)"], got["gradients (FP32)"], got["master weights (FP32)"],
                  got["AdamW moments (2 x BF16)"]]
    else:
        values = [r.weights * params, r.gradients * params, r.master * sharded,
                  r.moments * sharded]
    return dict(zip(COMPONENTS, [*values, got["activations"]], strict=True))


def render_memory(cfg: ModelConfig, layouts: Mapping[str, Layout], gpu: GPU = H800,
                  recipe: str = "v3", invalid: str = "raise") -> Figure:
    """One stacked bar per layout: what the fullest GPU holds, by component, in GiB, against
    ``gpu``'s memory (solid line) and what is left after the reserve (dashed). Bars taller than
    twice the memory are cut at the top and labelled with their total. ``invalid="show"`` draws
    a layout that breaks a rule of ``Layout.validate`` as an empty slot naming the rule (for the
    widget); ``"raise"`` raises its ValueError."""
    if not layouts:
        raise ValueError("layouts must hold at least one Layout")
    if invalid not in ("raise", "show"):
        raise ValueError(f"invalid={invalid!r}: must be 'raise' or 'show'")
    r = _recipe(recipe)
    bars: dict[str, dict[str, float] | str] = {}
    for name, layout in layouts.items():
        try:
            bars[name] = memory_bytes(cfg, layout, recipe)
        except ValueError as err:
            if invalid == "raise" or not str(err).startswith("Layout."):
                raise
            bars[name] = str(err)
    cap, usable = gpu.memory_gib, gpu.memory_gib - gpu.reserve_gib
    totals = {n: sum(b.values()) / GIB for n, b in bars.items() if isinstance(b, dict)}
    biggest = max(totals.values(), default=0.0)
    top = 2 * cap if biggest > 2 * cap else 1.15 * max(cap, biggest)
    fig = Figure(figsize=(max(6.0, 1.45 * len(bars) + 3.5), 4.6))
    ax = fig.subplots()
    xs = np.arange(len(bars))
    for k, comp in enumerate(COMPONENTS):
        heights = [b[comp] / GIB if isinstance(b, dict) else 0.0 for b in bars.values()]
        bottoms = [sum(b[c] for c in COMPONENTS[:k]) / GIB if isinstance(b, dict) else 0.0
                   for b in bars.values()]
        ax.bar(xs, heights, 0.62, bottom=bottoms, color=COMPONENT_COLORS[k], label=comp)
    for x, (name, b) in zip(xs, bars.items(), strict=True):
        if isinstance(b, str):
            ax.text(x, top / 2, "not a valid layout:\n" + _wrap(b, 24), ha="center", va="center",
                    fontsize=7, color="#c0392b")
            continue
        total = totals[name]
        verdict = "fits" if total <= usable else "does not fit"
        cut = total > top  # the label goes inside the bar's cut top, in white
        ax.text(x, top * 0.97 if cut else total, f"{total:,.1f} GiB\n{verdict}", ha="center",
                va="top" if cut else "bottom", fontsize=8, fontweight="bold" if cut else None,
                color="white" if cut else "black" if total <= usable else "#c0392b")
    ax.axhline(cap, color="black", lw=1.2, label=f"{gpu.name} memory, {cap:g} GiB")
    ax.axhline(usable, color="black", lw=1, ls="--", label=f"less the reserve, {usable:g} GiB")
    ax.set_xticks(list(xs), [_wrap(n, 16) for n in bars], fontsize=8)
    ax.set_ylim(0, top)
    ax.set_ylabel("GiB on the fullest GPU")
    ax.set_title(f"Training memory per GPU, {r.label}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def render_layout(n_gpus: int = 2048, pp: int = 16, ep: int = 64, recipe: str = "v3",
                  schedule: str = "DualPipe", zero1: bool = True,
                  micro_batch_tokens: int = 4096, cfg: ModelConfig | None = None,
                  gpu: GPU = H800) -> Figure:
    """The widget's figure: your layout of ``cfg`` (default V3) beside V3's own (PP16 x EP64,
    ZeRO-1, DualPipe on 2,048 H800s, V3 §3.2), both at ``recipe``. ``schedule`` is "DualPipe"
    (two parameter copies, PP + 1 micro-batches in flight) or "1F1B" (one copy, PP; ZB1P holds
    the same)."""
    if schedule not in ("DualPipe", "1F1B"):
        raise ValueError(f"schedule={schedule!r}: must be 'DualPipe' or '1F1B'")
    cfg = cfg or ModelConfig.preset("v3")
    yours = Layout(n_gpus=n_gpus, pp=pp, ep=ep, zero1=zero1, dualpipe=schedule == "DualPipe",
                   micro_batch_tokens=micro_batch_tokens)
    name = (f"yours: {n_gpus:,} GPUs, PP{pp} x EP{ep}, {schedule}"
            + ("" if zero1 else ", no ZeRO-1"))
    return render_memory(cfg, {"V3: 2,048 GPUs, PP16 x EP64, DualPipe": V3_LAYOUT, name: yours},
                         gpu, recipe, invalid="show")


def render_fit(models: Sequence[ServedModel], precision: str = "fp8", context: int = 32768,
               gpus: Mapping[str, GPU] | None = None, reserve_gib: float | None = None) -> Figure:
    """Which GPU runs which model (batch 1, ``fit_table``): a row per model, a column per GPU,
    each cell the longest context whose weights at ``precision`` and BF16 KV cache fit, coloured
    green when it reaches ``context``, orange when only a shorter one does, grey when the weights
    alone do not fit. ``reserve_gib`` replaces each GPU's reserve (CUDA context and slack)."""
    if not models:
        raise ValueError("models must hold at least one ServedModel")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: must be one of {sorted(PRECISIONS)}")
    if isinstance(context, bool) or not isinstance(context, int) or context < 1024:
        raise ValueError(f"context={context!r}: must be a whole number of tokens >= 1024")
    gpus = dict(GPUS if gpus is None else gpus)
    if reserve_gib is not None:
        least = min(g.memory_gib for g in gpus.values())
        if not 0 <= reserve_gib < least:
            raise ValueError(f"reserve_gib={reserve_gib!r}: must be >= 0 and below the "
                             f"smallest GPU's {least:g} GiB")
        gpus = {k: replace(g, reserve_gib=reserve_gib) for k, g in gpus.items()}
    rows = fit_table(list(models), gpus, (precision,), cap=max(context, CONTEXTS[-1]))
    ctx = np.array([[row["max_context"][k] for k in gpus] for row in rows])
    code = np.where(ctx == 0, 0, np.where(ctx >= context, 2, 1))
    fig = Figure(figsize=(1.35 * len(gpus) + 3.6, 0.36 * len(rows) + 2.0))
    ax = fig.subplots()
    ax.imshow(code, cmap=ListedColormap(FIT_COLORS), vmin=0, vmax=2, aspect="auto")
    for i in range(ctx.shape[0]):
        for j in range(ctx.shape[1]):
            ax.text(j, i, _ctx(int(ctx[i, j])), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(gpus)), [g.name for g in gpus.values()], fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{r['model']} ({r['weight_bytes'] / GIB:,.1f} GiB)"
                                     for r in rows], fontsize=8)
    ax.xaxis.tick_top()
    labels = ("the weights do not fit", f"fits, but under {_ctx(context)} tokens",
              f"{_ctx(context)} tokens fit")
    fig.legend(handles=[Patch(facecolor=c, label=t) for c, t in zip(FIT_COLORS, labels,
                                                                    strict=True)],
               loc="lower center", ncols=3, fontsize=8, frameon=False)
    reserve = next(iter(gpus.values())).reserve_gib
    ax.set_title(f"Which GPU runs which model: {precision} weights, BF16 KV cache, batch 1; "
                 f"{_ctx(context)} tokens asked (reserve {reserve:g} GiB per GPU)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.45 / fig.get_figheight(), 1, 1))  # room for the legend
    return fig


def render_budget(traffics: Sequence[Traffic], title: str = "") -> Figure:
    """Per token and MoE layer, forward: the all-to-all's dispatch and combine (stacked) beside
    the compute that must hide them, one pair of bars per routing, labelled with the
    compute:communication ratio (V3 §3.2.1 calls it about 1:1 for cross-node EP)."""
    if not traffics:
        raise ValueError("traffics must hold at least one Traffic")
    fig = Figure(figsize=(max(6.0, 2.2 * len(traffics) + 1.5), 4.1))
    ax = fig.subplots()
    xs = np.arange(len(traffics))
    ax.bar(xs - 0.18, [t.dispatch_us for t in traffics], 0.34, color="#4c78a8",
           label="dispatch (FP8)")
    ax.bar(xs - 0.18, [t.combine_us for t in traffics], 0.34,
           bottom=[t.dispatch_us for t in traffics], color="#72b7b2", label="combine (BF16)")
    ax.bar(xs + 0.18, [t.compute_us for t in traffics], 0.34, color="#f58518",
           label="compute (attention + MoE)")
    for x, t in zip(xs, traffics, strict=True):
        ax.text(x, max(t.compute_us, t.dispatch_us + t.combine_us) * 1.03,
                f"compute:comm {t.ratio:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [f"{t.routing}\n{t.ib_copies:.2f} IB copies" for t in traffics],
                  fontsize=8)
    ax.set_ylabel("µs per token and MoE layer")
    ax.set_ylim(0, 1.2 * max(max(t.compute_us, t.dispatch_us + t.combine_us) for t in traffics))
    ax.set_title(title or "The all-to-all against the compute it must hide behind", fontsize=9)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncols=3, fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.4 / fig.get_figheight(), 1, 1))  # room for the legend
    return fig


def render_bill(rows: Sequence[Mapping], title: str = "") -> Figure:
    """V3 Table 1 (``plan.table1`` rows, the total last): H800 GPU-hours per stage as bars,
    labelled with their dollars and the BF16 MFU the hours imply."""
    stages = [r for r in rows if r["stage"] != "total"]
    if not stages:
        raise ValueError("rows must hold at least one Table 1 stage")
    total = next((r for r in rows if r["stage"] == "total"), None)
    fig = Figure(figsize=(8.5, 0.55 * len(stages) + 1.7))
    ax = fig.subplots()
    ys = np.arange(len(stages))
    hours = [r["gpu_hours"] / 1e3 for r in stages]
    ax.barh(ys, hours, 0.6, color="#4c78a8")
    for y, r in zip(ys, stages, strict=True):
        mfu = "" if r.get("mfu_bf16") is None else f", MFU {r['mfu_bf16']:.1%} of BF16"
        ax.text(r["gpu_hours"] / 1e3, y, f" {r['gpu_hours'] / 1e3:,.0f}K h = "
                f"${r['usd'] / 1e6:.3f}M{mfu}", va="center", fontsize=8)
    ax.set_yticks(list(ys), [r["stage"] for r in stages], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.6 * max(hours))
    ax.set_xlabel("H800 GPU-hours (thousands)")
    head = (f"V3 Table 1: {total['gpu_hours'] / 1e3:,.0f}K H800 GPU-hours = "
            f"${total['usd'] / 1e6:.3f}M" if total else "V3 Table 1")
    ax.set_title(title or head, fontsize=10)
    fig.tight_layout()
    return fig


def _ctx(n: int) -> str:
    return "-" if n == 0 else f"{n // 1024}K"


def _wrap(text: str, width: int) -> str:
    """Break ``text`` into lines of about ``width`` characters at spaces."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


__all__ = ["COMPONENTS", "RECIPES", "Recipe", "memory_bytes", "render_bill", "render_budget",
           "render_fit", "render_layout", "render_memory"]
