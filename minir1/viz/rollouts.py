"""Figures of the R1-Zero lesson (notebooks/09_r1_zero.ipynb): the training curves R1 plotted, and a
rollout browser that colours each generated token by its log-probability or by the advantage GRPO
gave it.

``render_r1_zero_curves(history)`` draws, per GRPO step, the training accuracy and held-out accuracy
(R1 Fig. 2) and the mean response length (R1 Fig. 3). ``render_rollout(record, tok, color_by)``
draws one sampled completion (a record of ``GRPOTrainer.rollouts``) token by token: by log-prob,
confident tokens are pale and surprising ones dark; by advantage, every token of the response
carries the response's advantage (green pushed up, red pushed down), which is exactly how GRPO
credits it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
from matplotlib.figure import Figure

from minir1.data.tokenizer import Tokenizer

COLOR_BY = ("logprob", "advantage")


def render_r1_zero_curves(history: Sequence[dict[str, float]]) -> Figure:
    """Accuracy (training samples and held-out greedy) and mean response length against the GRPO
    step."""
    train = [r for r in history if "accuracy" in r]
    held = [r for r in history if "heldout_accuracy" in r]
    fig = Figure(figsize=(11, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot([r["step"] for r in train], [r["accuracy"] for r in train], alpha=0.6,
             label="training samples (T=1)")
    ax1.plot([r["step"] for r in held], [r["heldout_accuracy"] for r in held], "o-",
             label="held-out, greedy")
    ax1.set(xlabel="GRPO step", ylabel="accuracy", ylim=(-0.02, 1.02),
            title="accuracy (cf. R1 Fig. 2)")
    ax1.legend(loc="lower right")
    ax2.plot([r["step"] for r in train], [r["length"] for r in train], alpha=0.6,
             label="training samples")
    if held and "heldout_length" in held[0]:
        ax2.plot([r["step"] for r in held], [r["heldout_length"] for r in held], "o-",
                 label="held-out, greedy")
    ax2.set(xlabel="GRPO step", ylabel="tokens per response",
            title="response length (cf. R1 Fig. 3)")
    ax2.legend(loc="lower right")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _token_colors(record: dict, color_by: str) -> list[tuple[float, float, float, float]]:
    if color_by == "logprob":  # probability 1 -> white, probability 1e-3 or less -> darkest
        cmap = matplotlib.colormaps["Blues"]
        return [cmap(min(1.0, -lp / math.log(1e3))) for lp in record["logprobs"]]
    adv = record["advantage"]
    cmap = matplotlib.colormaps["RdYlGn"]
    return [cmap(0.5 + max(-0.5, min(0.5, adv / 4)))] * len(record["tokens"])


def render_rollout(record: dict, tok: Tokenizer, color_by: str = "logprob",
                   width: int = 100) -> Figure:
    """One sampled completion, a box per token coloured by ``color_by`` ("logprob" or
    "advantage")."""
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by={color_by!r}: must be one of {COLOR_BY}")
    if len(record["logprobs"]) != len(record["tokens"]):
        raise ValueError(f"record has {len(record['tokens'])} tokens but "
                         f"{len(record['logprobs'])} log-probs")
    pieces = [tok.decode([t], skip_control=False) for t in record["tokens"]]
    colors = _token_colors(record, color_by)
    rows, row, used = [], [], 0
    for piece, color, lp in zip(pieces, colors, record["logprobs"], strict=True):
        if row and used + len(piece) > width:
            rows.append(row)
            row, used = [], 0
        row.append((piece, color, lp))
        used += len(piece)
    rows.append(row)
    fig = Figure(figsize=(11, 0.5 + 0.3 * (len(rows) + 1.5)))
    ax = fig.add_axes((0.01, 0.0, 0.98, 1.0))
    ax.set_axis_off()
    ax.set(xlim=(0, width), ylim=(len(rows) - 0.4, -1.6))
    size = 0.9 * (11 * 0.98 / width) * 72 / 0.602  # one data unit = one monospace character
    ax.text(0, -0.9, f"{record['question']} = {record['answer']}   reward {record['reward']:g}   "
            f"advantage {record['advantage']:+.2f}   ({len(pieces)} tokens, coloured by "
            f"{color_by})", fontsize=size, family="monospace", va="center")
    for y, row in enumerate(rows):
        x = 0.0
        for piece, color, lp in row:
            dark = color_by == "logprob" and -lp / math.log(1e3) > 0.6
            ax.text(x, y, piece.replace(" ", "\u2423"), family="monospace", fontsize=size,
                    va="center", color="white" if dark else "black",
                    bbox={"boxstyle": "square,pad=0.15", "facecolor": color, "edgecolor": "none"})
            x += len(piece)
    return fig


__all__ = ["COLOR_BY", "render_r1_zero_curves", "render_rollout"]
