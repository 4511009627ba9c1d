"""The advantage playground of the GRPO lesson (notebooks/08_grpo.ipynb).

``render_advantages`` takes one group's rewards as text (``"1, 0, 0, 1"``, as a student types them),
computes the group-relative advantages with the library's ``group_advantages`` (z-score,
DeepSeekMath §4.1.2, or mean-only, Dr. GRPO) and the weight that ``grpo_loss`` gives each token of
each response (sequence aggregation, DeepSeekMath Eq. 3, or token aggregation, DAPO). The per-token
weight is the gradient of the objective with respect to a token's log-probability on the first
update of a step (ratio 1, no KL):

    sequence: Â_i / (G |o_i|)        token: Â_i / Σ_j |o_j|

so the figure shows how much one token of each response is pushed up or down, and how much the whole
response is pushed (weight × length). Both numbers come from the library (``token_weights``
differentiates ``grpo_loss``), never from a copy of its formula.
"""

from __future__ import annotations

import math
import re

import torch
from matplotlib.figure import Figure

from minir1.rl.grpo import AGGREGATIONS, SCALES, group_advantages, grpo_loss

# tokens per response when no lengths are given: the two aggregations then agree
DEFAULT_LENGTH = 10
_SEPARATORS = re.compile(r"[,;\s]+")
_UP, _DOWN, _ZERO = "#2ca02c", "#d62728", "#9e9e9e"


def parse_numbers(text: str, name: str) -> list[float]:
    """``"1, 0, 0.5 1"`` -> ``[1.0, 0.0, 0.5, 1.0]`` (commas, semicolons or spaces between numbers).

    Raises ``ValueError`` naming ``name`` when the text is empty or holds anything but finite
    numbers.
    """
    if not isinstance(text, str):
        raise ValueError(f"{name}={text!r}: must be a string of numbers such as '1, 0, 0, 1'")
    parts = [p for p in _SEPARATORS.split(text.strip()) if p]
    if not parts:
        raise ValueError(f"{name}={text!r}: no numbers; type them separated by commas, "
                         "e.g. '1, 0, 0, 1'")
    values = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise ValueError(f"{name}={text!r}: {p!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{name}={text!r}: {p!r} is not a finite number")
        values.append(v)
    return values


def parse_lengths(text: str | None, n: int) -> list[int]:
    """Response lengths in tokens: ``n`` positive integers, or ``DEFAULT_LENGTH`` each when ``text``
    is None."""
    if text is None:
        return [DEFAULT_LENGTH] * n
    values = parse_numbers(text, "lengths")
    if len(values) != n:
        raise ValueError(f"lengths={text!r}: {len(values)} lengths for {n} rewards; "
                         "give one per response")
    if any(v < 1 or v != int(v) for v in values):
        raise ValueError(f"lengths={text!r}: every length must be a whole number of tokens >= 1")
    return [int(v) for v in values]


def token_weights(advantages: torch.Tensor, lengths: list[int] | torch.Tensor,
                  aggregation: str = "sequence") -> torch.Tensor:
    """(B,) dJ/d log π of each token of each response, from ``grpo_loss`` by autograd.

    Evaluated where the first update of a step starts: π_θ = π_θold (ratio 1) and no KL term, so the
    weight is the same for every token of a response: its advantage times the aggregation's
    normaliser.
    """
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.numel() != advantages.numel() or (lengths < 1).any():
        raise ValueError(f"lengths {lengths.tolist()}: need one length >= 1 per advantage "
                         f"({advantages.numel()})")
    mask = (torch.arange(int(lengths.max()))[None] < lengths[:, None]).double()
    logprobs = torch.zeros(mask.shape, dtype=torch.float64, requires_grad=True)
    # Dr. GRPO's constant: the longest response stands in for the generation budget
    max_tokens = int(lengths.max()) if aggregation == "constant" else None
    loss = grpo_loss(logprobs, logprobs.detach(), None, advantages.double(), mask, kl_beta=0.0,
                     aggregation=aggregation, max_tokens=max_tokens)
    (grad,) = torch.autograd.grad(loss, logprobs)
    return -grad[:, 0]  # the loss is -J


def _bars(ax, values: list[float], colors: list[str], fmt: str) -> None:
    x = list(range(1, len(values) + 1))
    ax.bar(x, values, color=colors, edgecolor="#444444", linewidth=0.6)
    ax.axhline(0, color="#444444", linewidth=0.8)
    top = max((abs(v) for v in values), default=0.0) or 1.0
    for xi, v in zip(x, values, strict=True):
        ax.text(xi, v + (0.03 * top if v >= 0 else -0.03 * top), format(v, fmt), ha="center",
                va="bottom" if v >= 0 else "top", fontsize=7)
    ax.set_xticks(x)
    ax.set_xlabel("response i")
    ax.set_ylim(min(min(values), 0) - 0.2 * top, max(max(values), 0) + 0.2 * top)


def render_advantages(rewards: str, scale: str = "std", aggregation: str = "sequence",
                      lengths: str | None = None) -> Figure:
    """One group's rewards -> its advantages, and the per-token and per-response weights in the GRPO
    loss.

    rewards: the G rewards of one question's G sampled responses, as text:
        ``"1, 0, 0, 1, 1, 0, 0, 0"``.
    scale: ``"std"`` (z-score, GRPO) or ``"none"`` (mean-only, Dr. GRPO), passed to
        ``group_advantages``.
    aggregation: ``"sequence"`` (mean over each response, then over responses) or ``"token"``
        (mean over all tokens), passed to ``grpo_loss``.
    lengths: the responses' lengths in tokens, as text (default: all ``DEFAULT_LENGTH`` tokens
        long).
    Four panels: rewards with the group mean (the baseline), advantages, weight per token, weight
    per response (per-token weight × length). Raises ``ValueError`` naming the argument on bad
    input.
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}: must be one of {SCALES}")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation={aggregation!r}: must be one of {AGGREGATIONS}")
    r = parse_numbers(rewards, "rewards")
    G = len(r)
    lens = parse_lengths(lengths, G)
    r_t = torch.tensor(r, dtype=torch.float64)
    adv = group_advantages(r_t, G, scale=scale)
    w = token_weights(adv, lens, aggregation)
    per_response = w * torch.tensor(lens, dtype=torch.float64)

    mean, std = r_t.mean().item(), r_t.std(unbiased=False).item()
    colors = [_UP if a > 0 else _DOWN if a < 0 else _ZERO for a in adv.tolist()]
    fig = Figure(figsize=(11, 6.4), layout="constrained")
    (ax_r, ax_a), (ax_t, ax_s) = fig.subplots(2, 2)
    _bars(ax_r, r, colors, ".3g")
    ax_r.axhline(mean, color="#1f77b4", linestyle="--", linewidth=1.2,
                 label=f"group mean {mean:.3g}")
    ax_r.legend(fontsize=8, loc="best")
    ax_r.set(title="rewards $r_i$ (dashed: the baseline)", ylabel="reward")
    _bars(ax_a, adv.tolist(), colors, ".3f")
    how = ("$(r_i - \\mathrm{mean})/(\\mathrm{std} + \\epsilon)$" if scale == "std"
           else "$r_i - \\mathrm{mean}$")
    ax_a.set(title=f"advantages $\\hat A_i$ = {how}", ylabel="advantage")
    _bars(ax_t, w.tolist(), colors, ".3g")
    norm = {"sequence": "$\\hat A_i / (G\\,|o_i|)$", "token": "$\\hat A_i / \\Sigma_j |o_j|$",
            "constant": "$\\hat A_i / (G\\,\\max_j |o_j|)$"}[aggregation]
    ax_t.set(title=f"weight of each token, {aggregation} aggregation: {norm}",
             ylabel="dJ / d log π(token)")
    _bars(ax_s, per_response.tolist(), colors, ".3g")
    ax_s.set(title="weight of the whole response: per-token weight × $|o_i|$",
             ylabel="summed weight")
    for ax in (ax_t, ax_s):
        ax.set_xticks(range(1, G + 1), [f"{i + 1}\n{n} tok" for i, n in enumerate(lens)],
                      fontsize=8)
        ax.set_xlabel("response i and its length |o_i|")
    if std == 0:
        verdict = "all rewards equal: every advantage is 0 and this group teaches nothing"
    else:
        verdict = f"std {std:.3g}"
    fig.suptitle(f"One group of G = {G} responses: mean {mean:.3g}, {verdict}", fontsize=10)
    return fig


__all__ = ["DEFAULT_LENGTH", "parse_lengths", "parse_numbers", "render_advantages",
           "token_weights"]
