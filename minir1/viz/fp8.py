"""Pictures for lesson 06: the FP8 value grids, and the explorer of scaling granularity under
outliers."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from minir1.fp8.formats import all_values, encode, get_format
from minir1.fp8.quant import dequantize, quantize

BLOCKS = {"no scaling": "raw", "per tensor": None, "1x128 tiles": (1, 128),
          "128x128 blocks": (128, 128)}


def render_grids(fmts: tuple[str, ...] = ("e4m3", "e5m2")) -> Figure:
    """Every positive value of each format on a log axis: even spacing inside a binade, doubling
    across."""
    fig = Figure(figsize=(10, 1.2 + 1.1 * len(fmts)), layout="constrained")
    ax = fig.subplots()
    for i, name in enumerate(fmts):
        f = get_format(name)
        v = all_values(f)[1:]
        normal = v >= f.min_normal
        ax.vlines(v[normal], i - 0.35, i + 0.35, lw=0.6, color="C0")
        ax.vlines(v[~normal], i - 0.35, i + 0.35, lw=0.6, color="C1")
        ax.text(v[-1] * 1.3, i, f"max {f.max:g}", va="center", fontsize=8)
    ax.vlines([], 0, 0, color="C0", label="normal")
    ax.vlines([], 0, 0, color="C1", label="subnormal")
    ax.set(xscale="log", yticks=range(len(fmts)),
           yticklabels=[get_format(n).name.upper() for n in fmts],
           xlabel="value", ylim=(-0.6, len(fmts) - 0.4), xlim=(1e-6, 5e5),
           title="every positive FP8 value: 8 (E4M3) or 4 (E5M2) per binade, subnormals below "
                 "2^(1-bias)")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def bits_of(value: float, fmt: str = "e4m3") -> str:
    """The FP8 code of ``value`` (after rounding) as ``sign|exponent|mantissa`` bits."""
    f = get_format(fmt)
    code = int(encode(np.float32([value]), f)[0])
    b = f"{code:08b}"
    return f"{b[0]}|{b[1:1 + f.exp_bits]}|{b[1 + f.exp_bits:]}"


def outlier_activations(outlier: float, rows: int = 256, cols: int = 1024,
                        seed: int = 0) -> torch.Tensor:
    """Standard-normal activations with two outlier channels of magnitude ~``outlier`` (as LLMs
    develop)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=g)
    x[:, [7, 600]] *= outlier
    return x


def quantization_stats(x: torch.Tensor, fmt: str, block: str) -> dict[str, float | np.ndarray]:
    """Relative errors of the ordinary (non-outlier) values, and counts of overflowed and flushed
    values."""
    f = get_format(fmt)
    mode = BLOCKS[block]
    if mode == "raw":  # cast without any scale: what FP8 without scaling would do
        y = x.to(f.dtype).float()
    else:
        y = dequantize(*quantize(x, f, mode), block=mode)
    ordinary = torch.ones_like(x, dtype=torch.bool)
    ordinary[:, [7, 600]] = False
    rel = ((y - x).abs() / x.abs().clamp_min(1e-30))[ordinary].numpy()
    return {"rel_error": rel, "overflow": int((x.abs() > f.max).sum()) if mode == "raw" else 0,
            "flushed": int(((y == 0) & (x != 0)).sum()),
            "median_rel": float(np.median(rel)), "ordinary": int(ordinary.sum())}


def render_explorer(fmt: str = "e4m3", block: str = "1x128 tiles",
                    outlier: float = 1000.0) -> Figure:
    """Histogram of the relative quantisation error of the ordinary values, for one format, scaling
    and outlier magnitude; the title counts overflowed (cast without a scale) and flushed-to-zero
    values."""
    if block not in BLOCKS:
        raise ValueError(f"block={block!r}: choose from {list(BLOCKS)}")
    stats = quantization_stats(outlier_activations(outlier), fmt, block)
    rel = np.clip(stats["rel_error"], 1e-6, 1.0)
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.hist(rel, bins=np.logspace(-6, 0, 61), color="C0")
    ax.axvline(2.0 ** -(get_format(fmt).man_bits + 1), color="k", ls="--", lw=1,
               label=f"half an ulp: 2^-{get_format(fmt).man_bits + 1}")
    ax.set(xscale="log", xlabel="relative error of the ordinary values (clipped to [1e-6, 1])",
           ylabel="count",
           title=f"{fmt.upper()}, {block}, outliers x{outlier:g}: median error "
                 f"{stats['median_rel']:.2%}, "
                 f"{stats['flushed']:,} flushed to 0, {stats['overflow']:,} overflowed")
    ax.legend(fontsize=8)
    return fig


__all__ = ["BLOCKS", "bits_of", "outlier_activations", "quantization_stats", "render_explorer",
           "render_grids"]
