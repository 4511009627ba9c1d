"""RoPE and YaRN pictures: per-pair wavelengths with and without YaRN, and where the ramp comes
from.

``render_yarn`` is pure (arguments in, ``Figure`` out) so lesson 02 can wrap it in a widget and
tests can call it headless. Every number it plots comes from ``minir1.model.rope``: the figure can
never disagree with the frequencies the model actually uses.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from minir1.config import ModelConfig
from minir1.model.rope import rope_frequencies, yarn_correction_range, yarn_ramp

_KEEP, _RAMP, _INTERP = "tab:green", "tab:olive", "tab:red"


def yarn_config(factor: float, beta_fast: float, beta_slow: float, original_len: int, dim: int = 64,
                base: float = 10000.0) -> ModelConfig:
    """A config whose RoPE part is the given one, serving ``factor`` times its original context."""
    return ModelConfig(qk_rope_head_dim=dim, rope_theta=base, original_seq_len=original_len,
                       max_seq_len=max(original_len, math.ceil(factor * original_len)),
                       rope_factor=factor, beta_fast=beta_fast, beta_slow=beta_slow)


def render_yarn(factor: float = 40.0, beta_fast: float = 32, beta_slow: float = 1,
                original_len: int = 4096, dim: int = 64, base: float = 10000.0) -> Figure:
    """Three panels over the ``dim // 2`` rotary pairs (V3 defaults: s = 40, beta 32/1, L0 = 4096,
    d^R = 64).

    1. wavelength 2*pi/theta_i in tokens, plain RoPE vs YaRN, against the original and the extended
       context;
    2. full rotations each pair makes over the original context, with the beta_fast / beta_slow
       thresholds that define the correction range;
    3. the ramp gamma_i: 0 keeps a pair's frequency, 1 divides it by the factor s.
    """
    cfg = yarn_config(factor, beta_fast, beta_slow, original_len, dim, base)
    plain = rope_frequencies(cfg.replace(max_seq_len=original_len))
    yarn = rope_frequencies(cfg)
    n = dim // 2
    low, high = yarn_correction_range(beta_fast, beta_slow, dim, base, original_len)
    ramp = yarn_ramp(low, high, n) if cfg.uses_yarn else torch.zeros(n)  # s = 1: nothing is blended
    idx = list(range(n))
    wave_plain = (2 * math.pi / plain).tolist()
    wave_yarn = (2 * math.pi / yarn).tolist()
    turns = (original_len * plain / (2 * math.pi)).tolist()

    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True, height_ratios=[3, 2, 1.4])
    ax_wave, ax_turn, ax_ramp = axes
    for ax in axes:
        ax.axvspan(-0.5, low, color=_KEEP, alpha=0.10, lw=0)
        ax.axvspan(low, high, color=_RAMP, alpha=0.12, lw=0)
        ax.axvspan(high, n - 0.5, color=_INTERP, alpha=0.10, lw=0)
        ax.grid(alpha=0.3)

    ax_wave.plot(idx, wave_plain, "o-", ms=3, color="tab:blue", label="RoPE")
    ax_wave.plot(idx, wave_yarn, "s--", ms=3, color="tab:orange", label="YaRN")
    ax_wave.axhline(original_len, color="k", lw=1, ls=":",
                    label=f"original context L0 = {original_len:,}")
    ax_wave.axhline(cfg.max_seq_len, color="k", lw=1, ls="-.",
                    label=f"extended context s·L0 = {cfg.max_seq_len:,}")
    ax_wave.set_yscale("log")
    ax_wave.set_ylabel("wavelength 2π/θ_i (tokens)")
    ax_wave.legend(loc="upper left", fontsize=8)
    kind = "YaRN on" if cfg.uses_yarn else "YaRN off (s = 1)"
    ax_wave.set_title(f"YaRN, s = {factor:g}, β_fast = {beta_fast:g}, β_slow = {beta_slow:g}, "
                      f"L0 = {original_len:,}: ramp over pairs [{low}, {high}] ({kind})")

    ax_turn.plot(idx, turns, "o-", ms=3, color="tab:blue", label="rotations over L0")
    ax_turn.axhline(beta_fast, color=_KEEP, lw=1.2,
                    label=f"β_fast = {beta_fast:g}: faster pairs kept")
    ax_turn.axhline(beta_slow, color=_INTERP, lw=1.2,
                    label=f"β_slow = {beta_slow:g}: slower pairs ÷ s")
    ax_turn.set_yscale("log")
    ax_turn.set_ylabel("full turns in L0")
    ax_turn.legend(loc="upper right", fontsize=8)

    ax_ramp.plot(idx, ramp.tolist(), "o-", ms=3, color="tab:purple", label="ramp γ_i")
    ax_ramp.set_ylim(-0.1, 1.1)
    ax_ramp.set_ylabel("γ_i")
    ax_ramp.set_xlabel("rotary pair index i (θ_i = base^(-2i/d))")
    ax_ramp.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["render_yarn", "yarn_config"]
