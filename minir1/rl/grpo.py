"""Group Relative Policy Optimization: the objective DeepSeekMath introduced and R1 trained with.

For a question q, G outputs o_1..o_G are sampled from the old policy and scored; each output's advantage is its
reward standardised within its group (DeepSeekMath §4.1.2), so no value network is needed:

    Â_i = (r_i - mean(r)) / (std(r) + eps),   the same for every token of o_i.

The token-level objective (DeepSeekMath Eq. 3), maximised:

    J = 1/G Σ_i 1/|o_i| Σ_t [ min(ρ_{i,t} Â_i, clip(ρ_{i,t}, 1-ε, 1+ε) Â_i) - β D_KL,t ],
    ρ_{i,t} = π_θ(o_{i,t}|·) / π_θold(o_{i,t}|·),
    D_KL,t = π_ref/π_θ - log(π_ref/π_θ) - 1   (Eq. 4, Schulman's "k3": >= 0, zero when the two agree).

The KL sits in the loss, not in the reward, so the advantages stay pure. ``grpo_loss`` returns -J. Variants
that later work proposed are explicit options, never silent defaults: ``aggregation="token"`` averages over
all tokens of the batch (DAPO), ``scale="none"`` drops the division by the group std (Dr. GRPO), and
``kl_beta=0`` removes the KL term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AGGREGATIONS = ("sequence", "token")
SCALES = ("std", "none")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "std", eps: float = 1e-4) -> torch.Tensor:
    """``(r - group mean) / (group std + eps)`` for consecutive groups of ``group_size`` rewards.

    ``rewards``: (G * n_groups,) with each group's samples adjacent. The std is the population std (ddof 0) of the
    group. ``scale="none"``: mean-centred only (Dr. GRPO). A group whose rewards are all equal gets zero
    advantages: it teaches nothing, which is why the trainer logs the fraction of such groups.
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}: must be one of {SCALES}")
    if group_size < 1 or rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"group_advantages: rewards of shape {tuple(rewards.shape)} do not split into groups of "
                         f"group_size={group_size}")
    r = rewards.float().view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale == "std":
        centred = centred / (r.std(dim=1, unbiased=False, keepdim=True) + eps)
    return centred.flatten()


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π_θ || π_ref): ``exp(ref - lp) - (ref - lp) - 1`` (DeepSeekMath Eq. 4)."""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1


@dataclass
class GRPOStats:
    loss: torch.Tensor
    kl: float  # mean k3 over the response tokens
    clip_fraction: float  # fraction of tokens whose ratio was clipped in the direction that matters
    ratio_mean: float


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2, kl_beta: float = 0.04,
              aggregation: str = "sequence", return_stats: bool = False) -> torch.Tensor | GRPOStats:
    """-J of DeepSeekMath Eq. 3 for a batch of responses.

    ``logprobs`` / ``old_logprobs`` / ``ref_logprobs``: (B, T) log-probabilities of the sampled tokens under the
    current, sampling and reference policies; ``advantages``: (B,) one per response; ``mask``: (B, T) 1 on
    response tokens. ``aggregation="sequence"`` averages each response over its own tokens and then over the
    responses (the paper); ``"token"`` averages over every response token of the batch (DAPO).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation={aggregation!r}: must be one of {AGGREGATIONS}")
    if clip_eps <= 0 or kl_beta < 0:
        raise ValueError(f"grpo_loss: clip_eps={clip_eps} must be > 0 and kl_beta={kl_beta} >= 0")
    if kl_beta > 0 and (ref_logprobs is None or ref_logprobs.shape != logprobs.shape):
        raise ValueError(f"grpo_loss: kl_beta={kl_beta} needs ref_logprobs of shape {tuple(logprobs.shape)}, got "
                         f"{None if ref_logprobs is None else tuple(ref_logprobs.shape)} (pass kl_beta=0 for no KL)")
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape or advantages.shape != logprobs.shape[:1]:
        raise ValueError(f"grpo_loss: logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)}, "
                         f"mask {tuple(mask.shape)} must match and advantages must be (B,), got "
                         f"{tuple(advantages.shape)}")
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None].to(logprobs.dtype)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    kl = kl_k3(logprobs, ref_logprobs) if kl_beta > 0 else torch.zeros_like(logprobs)
    per_token = surrogate - kl_beta * kl
    if aggregation == "sequence":
        objective = ((per_token * mask).sum(1) / mask.sum(1).clamp_min(1)).mean()
    else:
        objective = (per_token * mask).sum() / mask.sum().clamp_min(1)
    loss = -objective
    if not return_stats:
        return loss
    with torch.no_grad():
        n = mask.sum().clamp_min(1)
        clipped = ((ratio > 1 + clip_eps) & (adv > 0)) | ((ratio < 1 - clip_eps) & (adv < 0))
        return GRPOStats(loss, float((kl * mask).sum() / n), float((clipped * mask).sum() / n),
                         float((ratio * mask).sum() / n))


__all__ = ["AGGREGATIONS", "SCALES", "GRPOStats", "group_advantages", "grpo_loss", "kl_k3"]
