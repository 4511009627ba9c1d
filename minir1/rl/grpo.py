"""Group Relative Policy Optimization: the objective DeepSeekMath introduced and R1 trained with.

For a question q, G outputs o_1..o_G are sampled from the old policy and scored; each output's
advantage is its reward standardised within its group (DeepSeekMath §4.1.2), so no value network
is needed:

    Â_i = (r_i - mean(r)) / (std(r) + eps),   the same for every token of o_i.

The token-level objective (DeepSeekMath Eq. 3), maximised:

    J = 1/G Σ_i 1/|o_i| Σ_t [ min(ρ_{i,t} Â_i, clip(ρ_{i,t}, 1-ε, 1+ε) Â_i) - β D_KL,t ],
    ρ_{i,t} = π_θ(o_{i,t}|·) / π_θold(o_{i,t}|·),
    D_KL,t = π_ref/π_θ - log(π_ref/π_θ) - 1   (Eq. 4, Schulman's "k3": >= 0, zero when they agree).

The KL sits in the loss, not in the reward, so the advantages stay pure. ``grpo_loss`` returns -J.

Variants that later work proposed are explicit options, never silent defaults:

- ``aggregation="token"``: one mean over every response token of the batch (DAPO, Yu et al. 2025,
  "token-level policy gradient loss"), so a long response weighs more than a short one.
- ``scale="none"`` + ``aggregation="constant"``: Dr. GRPO (Liu et al. 2025, "Understanding
  R1-Zero-Like Training: A Critical Perspective"). It removes both of Eq. 3's biases: the division
  by the group std (question difficulty) and the per-response 1/|o_i| (length: a wrong answer's
  per-token penalty shrinks as it grows longer). The sum of token terms is divided by one constant,
  ``max_tokens`` (the generation budget) times the number of responses.
- ``kl_beta=0`` removes the KL term; ``kl_clamp`` bounds k3 (off by default, see ``kl_k3``).

Edge cases, decided here rather than left to chance:

- An empty response (mask all zero) has no |o_i| and no term in Eq. 3: the default
  ``aggregation="sequence"`` leaves it out of the mean over responses instead of letting it count as
  a zero that shrinks the loss; if no response has a token the loss is 0 with zero gradients.
  ``"token"`` needs no rule (it contributes no tokens). ``"constant"`` divides by the number of rows
  B whatever their lengths, because a normaliser that depends on the lengths is what Dr. GRPO
  removes; an empty response simply adds nothing to the sum.
- k3 is exactly Eq. 4 by default, with no guard: e^(log π_ref/π_θ) overflows float32 only past a
  log-ratio of ~88, where the policy has left the reference by a factor e^88 and the run is already
  broken; an inf loss says so loudly, where a clamp that is on by default would hide it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

AGGREGATIONS = ("sequence", "token", "constant")
SCALES = ("std", "none")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "std",
                     eps: float = 1e-4) -> torch.Tensor:
    """``(r - group mean) / (group std + eps)`` for consecutive groups of ``group_size`` rewards.

    ``rewards``: (G * n_groups,) with each group's samples adjacent. The std is the population std
    (ddof 0) of the group (DeepSeekMath §4.1.2). ``scale="none"``: mean-centred only, Dr. GRPO's
    advantage (Liu et al. 2025, "GRPO Done Right"); pair it with
    ``grpo_loss(aggregation="constant", max_tokens=...)`` for the whole of Dr. GRPO. A group whose
    rewards are all equal gets zero advantages: it teaches nothing, which is why the trainer logs
    the fraction of such groups.
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}: must be one of {SCALES}")
    if group_size < 1 or rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"group_advantages: rewards of shape {tuple(rewards.shape)} do not split "
                         f"into groups of group_size={group_size}")
    r = rewards.float().view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale == "std":
        centred = centred / (r.std(dim=1, unbiased=False, keepdim=True) + eps)
    return centred.flatten()


def _check_kl_clamp(kl_clamp: float | None) -> None:
    if kl_clamp is not None and (isinstance(kl_clamp, bool) or not isinstance(kl_clamp, int | float)
                                 or not math.isfinite(kl_clamp) or kl_clamp <= 0):
        raise ValueError(f"kl_clamp={kl_clamp!r}: must be a finite number > 0, or None for the "
                         "exact k3 of DeepSeekMath Eq. 4")


@functools.lru_cache(maxsize=64)
def _k3_bounds(kl_clamp: float) -> tuple[float, float]:
    """The log-ratios d_lo < 0 < d_hi at which k3(d) = e^d - d - 1 equals ``kl_clamp``.

    k3 is convex with its minimum 0 at d = 0, so {d : k3(d) <= c} is exactly [d_lo, d_hi]: clamping
    d there bounds k3 by c and leaves every value under the bound as it was. Bisection in float64,
    on brackets that always hold the root: k3(-(c + 1)) = e^-(c+1) + c > c, and
    k3(log(1 + c) + 1) = e (1 + c) - log(1 + c) - 2 > c.
    """
    def k3(d: float) -> float:
        return math.expm1(d) - d

    def root(inside: float, outside: float) -> float:
        for _ in range(200):  # halves the bracket until float64 cannot split it
            mid = (inside + outside) / 2
            if mid in (inside, outside):
                break
            inside, outside = (mid, outside) if k3(mid) <= kl_clamp else (inside, mid)
        return inside

    return root(0.0, -(kl_clamp + 1.0)), root(0.0, math.log1p(kl_clamp) + 1.0)


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, *,
          kl_clamp: float | None = None) -> torch.Tensor:
    """Per-token k3 estimate of KL(π_θ || π_ref): ``exp(ref - lp) - (ref - lp) - 1`` (DeepSeekMath
    Eq. 4; Schulman 2020, "Approximating KL Divergence").

    ``kl_clamp=None`` (default): exactly Eq. 4, unbounded: at log(π_ref/π_θ) = 25 it is ~7e10, and
    past ~88 it is inf in float32. ``kl_clamp=c``: the log-ratio is clamped to the interval where
    k3 <= c (see ``_k3_bounds``), so k3 <= c, a token beyond the bound gets a finite (zero) gradient
    rather than an overflowing one, and every token with k3 <= c keeps its exact value (up to
    rounding at the bound itself). verl bounds
    it in two steps instead (log-ratio to ±20, then k3 to 10); one value bound is all the k3 term
    needs, because k3 is monotone on either side of 0.
    """
    _check_kl_clamp(kl_clamp)
    d = ref_logprobs - logprobs
    if kl_clamp is None:
        return torch.exp(d) - d - 1
    lo, hi = _k3_bounds(float(kl_clamp))
    # clamping d (not only the result) is what keeps the gradient finite: clamp's zero gradient
    # times an overflowing exp'(d) = inf would be NaN. The final clamp_max only absorbs the
    # rounding of the bound to the tensor's dtype, so that k3 <= c holds exactly.
    d = d.clamp(lo, hi)
    return (torch.exp(d) - d - 1).clamp_max(kl_clamp)


@dataclass
class GRPOStats:
    loss: torch.Tensor
    kl: float  # mean k3 over the response tokens, as the loss used it (after any kl_clamp)
    clip_fraction: float  # fraction of tokens whose ratio was clipped in the direction that matters
    ratio_mean: float
    kl_clamp_fraction: float = 0.0  # fraction of response tokens whose k3 the kl_clamp bounded


def _check_max_tokens(max_tokens: int | None, aggregation: str, mask: torch.Tensor) -> None:
    if aggregation != "constant":
        if max_tokens is not None:  # it would be silently ignored: the run would not be Dr. GRPO
            raise ValueError(f"max_tokens={max_tokens!r}: only aggregation='constant' uses it, got "
                             f"aggregation={aggregation!r}")
        return
    if max_tokens is None:
        raise ValueError("aggregation='constant' needs max_tokens: the generation budget in tokens "
                         "per response, Dr. GRPO's constant normaliser")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens!r}: must be an int >= 1 (the generation budget)")
    longest = int((mask != 0).sum(1).max()) if mask.numel() else 0
    if longest > max_tokens:
        raise ValueError(f"max_tokens={max_tokens}: must be >= the longest response ({longest} "
                         "tokens), since it is the budget every response was generated within")


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2,
              kl_beta: float = 0.04, aggregation: str = "sequence", return_stats: bool = False, *,
              max_tokens: int | None = None,
              kl_clamp: float | None = None) -> torch.Tensor | GRPOStats:
    """-J of DeepSeekMath Eq. 3 for a batch of B responses.

    ``logprobs`` / ``old_logprobs`` / ``ref_logprobs``: (B, T) log-probabilities of the sampled
    tokens under the current, sampling and reference policies; ``advantages``: (B,) one per
    response; ``mask``: (B, T) 1 on response tokens. With s_i = Σ_t mask_{i,t} (surrogate - β k3):

    - ``aggregation="sequence"`` (default, Eq. 3): mean over responses of s_i / |o_i|, over the
      responses with |o_i| >= 1 only; 0 (zero gradient) when none has a token. Without empty
      responses the result is bit-identical to a plain ``.mean()`` over the B responses.
    - ``"token"`` (DAPO, Yu et al. 2025, token-level policy gradient loss): Σ_i s_i / Σ_i |o_i|.
    - ``"constant"`` (Dr. GRPO, Liu et al. 2025, "GRPO Done Right"): Σ_i s_i / (max_tokens · B), no
      length in the normaliser, so every token's term has the same weight 1 / (L B).
      ``max_tokens`` (required here, refused elsewhere): the generation budget L, >= every
      response's length. Use with ``group_advantages(scale="none")`` for Dr. GRPO.

    ``kl_clamp``: passed to ``kl_k3``; ``None`` (default) is Eq. 4 exactly.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation={aggregation!r}: must be one of {AGGREGATIONS}")
    if clip_eps <= 0 or kl_beta < 0:
        raise ValueError(f"grpo_loss: clip_eps={clip_eps} must be > 0 and kl_beta={kl_beta} >= 0")
    if kl_beta > 0 and (ref_logprobs is None or ref_logprobs.shape != logprobs.shape):
        raise ValueError(f"grpo_loss: kl_beta={kl_beta} needs ref_logprobs of shape "
                         f"{tuple(logprobs.shape)}, got "
                         f"{None if ref_logprobs is None else tuple(ref_logprobs.shape)} "
                         "(pass kl_beta=0 for no KL)")
    if (logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape
            or advantages.shape != logprobs.shape[:1]):
        raise ValueError(f"grpo_loss: logprobs {tuple(logprobs.shape)}, old_logprobs "
                         f"{tuple(old_logprobs.shape)}, mask {tuple(mask.shape)} must match and "
                         f"advantages must be (B,), got {tuple(advantages.shape)}")
    _check_kl_clamp(kl_clamp)  # even when kl_beta = 0, so a bad value never waits to be noticed
    _check_max_tokens(max_tokens, aggregation, mask)
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None].to(logprobs.dtype)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    kl = (kl_k3(logprobs, ref_logprobs, kl_clamp=kl_clamp) if kl_beta > 0
          else torch.zeros_like(logprobs))
    per_token = surrogate - kl_beta * kl
    if aggregation == "sequence":
        n_tokens = mask.sum(1)
        per_response = (per_token * mask).sum(1) / n_tokens.clamp_min(1)
        n_responses = (n_tokens > 0).sum()
        # Without empty responses keep the plain .mean() (sum / n_responses need not round the same
        # on every backend), so existing runs' numbers do not move; otherwise average over the
        # responses that have tokens. torch.where, not an if: no host sync, and both branches are
        # finite (clamp_min), so the unused one contributes zero, never NaN, to the gradient.
        plain = (n_responses == per_response.numel()) & (n_responses > 0)  # B = 0: mean() is NaN
        objective = torch.where(plain, per_response.mean(),
                                per_response.sum() / n_responses.clamp_min(1))
    elif aggregation == "token":
        objective = (per_token * mask).sum() / mask.sum().clamp_min(1)
    else:
        objective = (per_token * mask).sum() / (max_tokens * max(logprobs.shape[0], 1))
    loss = -objective
    if not return_stats:
        return loss
    with torch.no_grad():
        n = mask.sum().clamp_min(1)
        clipped = ((ratio > 1 + clip_eps) & (adv > 0)) | ((ratio < 1 - clip_eps) & (adv < 0))
        bounded = 0.0
        if kl_clamp is not None and kl_beta > 0:
            lo, hi = _k3_bounds(float(kl_clamp))
            d = ref_logprobs - logprobs
            bounded = float((((d < lo) | (d > hi)) * mask).sum() / n)
        return GRPOStats(loss, float((kl * mask).sum() / n), float((clipped * mask).sum() / n),
                         float((ratio * mask).sum() / n), bounded)


__all__ = ["AGGREGATIONS", "SCALES", "GRPOStats", "group_advantages", "grpo_loss", "kl_k3"]
