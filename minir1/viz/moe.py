"""Expert-load heatmaps for the mixture-of-experts lesson (notebooks/04_mixture_of_experts.ipynb).

``render_expert_load`` draws, for one or more training runs side by side, the layer x expert load
at a chosen training step, relative to the perfectly balanced load (1.0 = every expert gets
N * K_r / N_r tokens). Each row is labelled with its MaxVio (Wang et al. 2024, Eq. 4):
(max load - mean load) / mean load, the number the aux-loss-free paper reports (0.72 with an
auxiliary loss vs 0.04 without one, 1B model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure


def _as_runs(loads: Any) -> dict[str, np.ndarray]:
    """Accept one (steps, layers, experts) array or a mapping name -> such an array."""
    items = loads.items() if isinstance(loads, Mapping) else [("run", loads)]
    runs = {}
    for name, value in items:
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu()
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 2:  # a single step: (layers, experts)
            arr = arr[None]
        if arr.ndim != 3:
            raise ValueError(f"loads[{name!r}] must have shape (steps, layers, experts), "
                             f"got {arr.shape}")
        runs[str(name)] = arr
    if not runs:
        raise ValueError("loads is empty: pass at least one run")
    return runs


def relative_load(loads: np.ndarray, step: int, window: int = 1) -> np.ndarray:
    """(layers, experts) load / mean load, summed over steps ``step - window + 1 .. step``."""
    lo = max(0, step - window + 1)
    total = loads[lo:step + 1].sum(axis=0)
    mean = total.mean(axis=-1, keepdims=True)
    return total / np.maximum(mean, 1e-12)


def render_expert_load(loads: Any, step: int = -1, *, window: int = 1,
                       runs: Sequence[str] | None = None, vmax: float | None = None,
                       title: str | None = None) -> Figure:
    """Heatmap of layer x expert load at training ``step`` for each run, side by side.

    loads: ``{run name: (steps, layers, experts)}`` token counts per step (tensors or arrays),
        or a single such array.
    step: which optimizer step to show (negative counts from the end, like Python indexing).
    window: average the counts over this many steps ending at ``step`` (one batch is noisy).
    runs: the run names to show, in order (default: all).
    vmax: top of the colour scale in units of the balanced load (default: the largest value
        shown, at least 2).
    Colours: blue = under-loaded, white = balanced, red = overloaded.
    """
    all_runs = _as_runs(loads)
    names = list(all_runs) if runs is None else list(runs)
    unknown = [n for n in names if n not in all_runs]
    if unknown or not names:
        raise ValueError(f"runs={names!r}: choose from {list(all_runs)}")
    n_steps = min(all_runs[n].shape[0] for n in names)
    if not -n_steps <= step < n_steps:
        raise ValueError(f"step={step} is out of range for {n_steps} recorded steps")
    step = step % n_steps
    if window < 1:
        raise ValueError(f"window={window} must be >= 1")

    rel = {n: relative_load(all_runs[n], step, window) for n in names}
    top = max(2.0, max(float(r.max()) for r in rel.values())) if vmax is None else float(vmax)
    norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=max(top, 1.0 + 1e-6))

    n_layers = max(r.shape[0] for r in rel.values())
    fig = Figure(figsize=(4.2 * len(names) + 1.2, 1.5 + 0.55 * n_layers), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    image = None
    for ax, name in zip(axes, names, strict=True):
        r = rel[name]
        image = ax.imshow(r, cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest")
        vio = r.max(axis=-1) - 1.0  # MaxVio per layer = max relative load - 1
        ax.set_yticks(range(r.shape[0]), [f"MoE {i}  ({v:.2f})" for i, v in enumerate(vio)])
        ax.set_xticks(range(0, r.shape[1], max(1, r.shape[1] // 8)))
        ax.set_xlabel("expert")
        ax.set_title(f"{name}\nMaxVio (mean over layers) = {vio.mean():.2f}", fontsize=10)
    axes[0].set_ylabel("layer  (MaxVio)")
    fig.colorbar(image, ax=list(axes), label="load / balanced load", shrink=0.9)
    span = f"steps {max(0, step - window + 1)}-{step}" if window > 1 else f"step {step}"
    fig.suptitle(title or f"Tokens per expert at training {span}", fontsize=11)
    return fig


__all__ = ["relative_load", "render_expert_load"]
