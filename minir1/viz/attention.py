"""KV-cache arithmetic and pictures for lesson 03: MHA -> GQA -> MQA -> MLA (V3 §2.1.1).

What one token leaves behind in a decoder's cache, per layer, with the per-head shapes of V3's
attention (keys d_h + d_h^R wide, values d_h wide, as MLA's naive mode caches them):

* MHA: every head caches its own key and value: ``n_h (2 d_h + d_h^R)``  (V3: 40,960)
* GQA: heads share keys and values in ``g`` groups: ``g (2 d_h + d_h^R)``  (V3 shapes, g = 8: 2,560)
* MQA: one key/value head shared by all heads: ``2 d_h + d_h^R``  (320)
* MLA: the latent c^KV and the one rotary key k^R: ``d_c + d_h^R``  (V3: 576)

``kv_cache_table`` is the pure arithmetic (tested against
``minir1.model.kv_cache_bytes_per_token``); ``render_kv_cache`` and ``render_cache_squares`` draw
it.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

SCHEMES = ("MHA", "GQA", "MQA", "MLA")
COLORS = {"MHA": "tab:red", "GQA": "tab:orange", "MQA": "tab:olive", "MLA": "tab:blue"}
GB = 1e9


@dataclass(frozen=True)
class CacheRow:
    scheme: str  # "MHA", "GQA", "MQA" or "MLA"
    label: str  # e.g. "GQA (8 groups)"
    values_per_layer: int  # numbers cached per token per layer
    bytes_per_token: int  # over all layers
    total_bytes: int  # bytes_per_token * context * batch

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GB


def kv_cache_table(n_layers: int = 61, n_heads: int = 128, head_dim: int = 128, n_groups: int = 8,
                   kv_lora_rank: int = 512, rope_dim: int = 64, context: int = 4096, batch: int = 1,
                   bytes_per_value: float = 2, v_head_dim: int | None = None) -> list[CacheRow]:
    """Cache size of MHA, GQA (``n_groups`` key/value heads), MQA and MLA with the same per-head
    shapes.

    ``head_dim`` is d_h (the key part without RoPE; also the value width unless ``v_head_dim`` is
    given), ``rope_dim`` is d_h^R. Defaults are DeepSeek-V3's shapes in bf16.
    """
    for name, value in (("n_layers", n_layers), ("n_heads", n_heads), ("head_dim", head_dim),
                        ("kv_lora_rank", kv_lora_rank), ("context", context), ("batch", batch)):
        if value < 1:
            raise ValueError(f"{name}={value}: must be >= 1")
    if rope_dim < 0:
        raise ValueError(f"rope_dim={rope_dim}: must be >= 0")
    if bytes_per_value <= 0:
        raise ValueError(f"bytes_per_value={bytes_per_value}: must be > 0")
    if not 1 <= n_groups <= n_heads or n_heads % n_groups:
        raise ValueError(f"n_groups={n_groups}: must divide n_heads={n_heads}")
    v_head_dim = head_dim if v_head_dim is None else v_head_dim
    kv_head = head_dim + rope_dim + v_head_dim  # one key (nope + rope) and one value
    per_layer = {
        "MHA": (f"MHA ({n_heads} heads)", n_heads * kv_head),
        "GQA": (f"GQA ({n_groups} groups)", n_groups * kv_head),
        "MQA": ("MQA (1 group)", kv_head),
        "MLA": (f"MLA (d_c={kv_lora_rank})", kv_lora_rank + rope_dim),
    }
    rows = []
    for scheme in SCHEMES:
        label, values = per_layer[scheme]
        per_token = round(values * n_layers * bytes_per_value)
        rows.append(CacheRow(scheme, label, values, per_token, per_token * context * batch))
    return rows


def format_cache_table(rows: list[CacheRow]) -> str:
    """A plain-text table: values per token per layer, bytes per token (all layers), total, ratio to
    MLA."""
    mla = next(r for r in rows if r.scheme == "MLA")
    width = max(len(r.label) for r in rows)
    lines = [f"{'scheme':<{width}}  {'values/layer':>12}  {'bytes/token':>12}  {'KiB/token':>10}  "
             f"{'total GB':>9}  {'x MLA':>6}"]
    for r in rows:
        lines.append(f"{r.label:<{width}}  {r.values_per_layer:>12,}  {r.bytes_per_token:>12,}  "
                     f"{r.bytes_per_token / 1024:>10,.1f}  {r.total_gb:>9,.2f}  "
                     f"{r.bytes_per_token / mla.bytes_per_token:>6.2f}")
    return "\n".join(lines)


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, max(at_most, 1)) + 1) if n % d == 0)


def render_kv_cache(n_layers: int = 61, n_heads: int = 128, head_dim: int = 128,
                    n_groups: int = 8, kv_lora_rank: int = 512, rope_dim: int = 64,
                    context: int = 131072, batch: int = 1, bytes_per_value: float = 2,
                    gpu_gb: float = 80.0) -> Figure:
    """Left: cache GB of each scheme at ``context`` x ``batch``; right: how it grows with the
    context.

    ``n_groups`` is rounded down to a divisor of ``n_heads`` (GQA needs equal groups), so any slider
    value works.
    """
    n_groups = _largest_divisor(n_heads, n_groups)
    args = dict(n_layers=n_layers, n_heads=n_heads, head_dim=head_dim, n_groups=n_groups,
                kv_lora_rank=kv_lora_rank, rope_dim=rope_dim, batch=batch,
                bytes_per_value=bytes_per_value)
    rows = kv_cache_table(context=context, **args)
    mla = rows[-1]

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    bars = ax.bar([r.label for r in rows], [r.total_gb for r in rows],
                  color=[COLORS[r.scheme] for r in rows])
    for bar, r in zip(bars, rows, strict=True):
        ax.annotate(f"{r.total_gb:,.3g} GB\n{r.bytes_per_token / mla.bytes_per_token:.3g}x MLA",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8)
    ax.axhline(gpu_gb, color="gray", ls="--", lw=1)
    ax.text(len(rows) - 0.5, gpu_gb * 1.1, f"{gpu_gb:g} GB (one GPU)", color="gray", fontsize=8,
            ha="right")
    ax.set_yscale("log")
    top = max(max(r.total_gb for r in rows), gpu_gb)
    ax.set_ylim(min(r.total_gb for r in rows) / 3, top * 8)
    ax.set_ylabel("KV cache (GB, log scale)")
    ax.set_title(f"cache for {batch} x {context:,} tokens, {n_layers} layers, "
                 f"{bytes_per_value:g} B/value", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)

    contexts = [2**k for k in range(10, 21)]
    if context not in contexts:
        contexts = sorted([*contexts, context])
    for scheme_index, scheme in enumerate(SCHEMES):
        sizes = [kv_cache_table(context=c, **args)[scheme_index].total_gb for c in contexts]
        ax2.plot(contexts, sizes, marker=".", color=COLORS[scheme], label=rows[scheme_index].label)
    ax2.axhline(gpu_gb, color="gray", ls="--", lw=1, label=f"{gpu_gb:g} GB")
    ax2.axvline(context, color="black", ls=":", lw=1)
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("context length (tokens)")
    ax2.set_ylabel("KV cache (GB)")
    ax2.set_title("cache grows linearly with the context", fontsize=10)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


# what one token caches in one layer, as (part, number of values) per scheme
_PART_COLORS = {"key (no RoPE)": "tab:red", "key (RoPE part)": "tab:orange", "value": "tab:green",
                "latent c^KV": "tab:blue", "shared RoPE key k^R": "tab:cyan"}


def _parts(scheme: str, n_heads: int, head_dim: int, rope_dim: int, n_groups: int,
           kv_lora_rank: int) -> list[tuple[str, int]]:
    if scheme == "MLA":
        return [("latent c^KV", kv_lora_rank), ("shared RoPE key k^R", rope_dim)]
    heads = {"MHA": n_heads, "GQA": n_groups, "MQA": 1}[scheme]
    return [("key (no RoPE)", head_dim), ("key (RoPE part)", rope_dim), ("value", head_dim)] * heads


def render_cache_squares(n_heads: int = 128, head_dim: int = 128, rope_dim: int = 64,
                         n_groups: int = 8, kv_lora_rank: int = 512, unit: int = 64,
                         columns: int = 40) -> Figure:
    """What one token caches in one layer, drawn to scale: each square is ``unit`` numbers.

    Defaults are V3's shapes: MHA 640 squares (40,960 numbers), GQA-8 40, MQA 5, MLA 9 (576
    numbers).
    """
    layout = []  # (scheme, [colors of its squares])
    for scheme in SCHEMES:
        squares = []
        for part, n in _parts(scheme, n_heads, head_dim, rope_dim, n_groups, kv_lora_rank):
            # ceil: a partial square still costs memory
            squares += [_PART_COLORS[part]] * -(-n // unit)
        layout.append((scheme, squares))
    rows_of = [-(-len(sq) // columns) for _, sq in layout]
    height = sum(rows_of) + 1.2 * len(layout) + 0.5  # in squares
    inch = 10 / (columns + 9.5)  # one square
    fig, ax = plt.subplots(figsize=(10, height * inch + 0.9))
    y = 0.0
    for (scheme, squares), n_rows in zip(layout, rows_of, strict=True):
        for i, color in enumerate(squares):
            r, c = divmod(i, columns)
            ax.add_patch(Rectangle((c, -(y + r) - 1), 0.9, 0.9, color=color))
        label = {"GQA": f"GQA ({n_groups} groups)",
                 "MHA": f"MHA ({n_heads} heads)"}.get(scheme, scheme)
        ax.text(-0.5, -y - 0.5, f"{label}\n{len(squares) * unit:,}", ha="right", va="center",
                fontsize=9)
        y += n_rows + 1.2
    ax.set_xlim(-9, columns + 0.5)
    ax.set_ylim(-y, 0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.legend(handles=[Patch(color=c, label=p) for p, c in _PART_COLORS.items()], loc="lower right",
              fontsize=8, ncol=2, frameon=False)
    ax.set_title(f"What one token caches in one layer (each square = {unit} numbers)", fontsize=11)
    fig.tight_layout()
    return fig


__all__ = ["SCHEMES", "CacheRow", "format_cache_table", "kv_cache_table", "render_cache_squares",
           "render_kv_cache"]
