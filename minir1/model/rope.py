"""Rotary position embeddings with YaRN context extension (V3 §2.1.1 Eqs. 3 and 8, §4.3).

DeepSeek-V3 applies RoPE only to the decoupled parts: the per-head query q^R and the one key k^R
shared by all heads. The official code rotates *consecutive* (interleaved) pairs (x0, x1), (x2, x3),
... as complex numbers; minir1 keeps that convention (``apply_rope``), with a real cos/sin form for
torch.compile (``rope_real``).

YaRN (Peng et al. 2023) stretches the low frequencies by the factor s while keeping the high ones:
each frequency index gets a blend weight from a linear ramp between a "correction range" found from
beta_fast and beta_slow (how many full rotations a dimension makes over the original context). The
attention temperature correction (mscale) lives in ``ModelConfig.softmax_scale``.
"""

from __future__ import annotations

import math

import torch

from minir1.config import ModelConfig


def yarn_correction_dim(n_rotations: float, dim: int, base: float, seq_len: int) -> float:
    """The (fractional) frequency index that makes ``n_rotations`` full turns
    over ``seq_len`` positions."""
    return dim * math.log(seq_len / (n_rotations * 2 * math.pi)) / (2 * math.log(base))


def yarn_correction_range(beta_fast: float, beta_slow: float, dim: int, base: float,
                          seq_len: int) -> tuple[int, int]:
    """Integer index range [low, high] over which YaRN blends from "keep" to
    "interpolate" (V3: [10, 23])."""
    low = math.floor(yarn_correction_dim(beta_fast, dim, base, seq_len))
    high = math.ceil(yarn_correction_dim(beta_slow, dim, base, seq_len))
    return max(low, 0), min(high, dim - 1)


def yarn_ramp(low: float, high: float, n: int) -> torch.Tensor:
    """0 below ``low``, 1 above ``high``, linear in between, for indices 0..n-1."""
    if low == high:
        high += 0.001  # avoid dividing by zero, as the reference implementations do
    return ((torch.arange(n, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)


def rope_frequencies(cfg: ModelConfig) -> torch.Tensor:
    """Inverse frequencies theta_i = base^(-2i/d)
    for the d = qk_rope_head_dim rotary dims, YaRN-blended."""
    dim, base = cfg.qk_rope_head_dim, cfg.rope_theta
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    if cfg.uses_yarn:
        low, high = yarn_correction_range(cfg.beta_fast, cfg.beta_slow, dim, base,
                                          cfg.original_seq_len)
        keep = 1 - yarn_ramp(low, high, dim // 2)  # 1 = high-frequency dim kept as is
        freqs = freqs / cfg.rope_factor * (1 - keep) + freqs * keep
    return freqs


def rope_cos_sin(cfg: ModelConfig,
                 device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (max_seq_len, qk_rope_head_dim // 2), in fp32."""
    freqs = rope_frequencies(cfg)
    t = torch.arange(cfg.max_seq_len, dtype=torch.float32)
    angles = torch.outer(t, freqs)
    return angles.cos().to(device), angles.sin().to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of the last dim of x:
    (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos).

    x: (B, T, ..., d) with d even; cos/sin: (T, d/2), broadcast over batch and any head dims.
    Computed in fp32 and cast back. Run eagerly, this is the official code's form: the pairs read as
    complex numbers times e^{i t theta}, one kernel (on a CPU several times faster than the real
    form, whose strided halves vectorise badly). Under ``torch.compile`` it is the same arithmetic
    on real numbers (``rope_real``), which compilers fuse and complex dtypes they may not.
    """
    # e.g. MPS: complex is patchy
    if torch.compiler.is_compiling() or x.device.type not in ("cpu", "cuda"):
        return rope_real(x, cos, sin)
    pairs = x.float().unflatten(-1, (-1, 2))
    try:
        z = torch.view_as_complex(pairs)
    except RuntimeError:  # a view whose strides or offset split a pair: copy it first
        z = torch.view_as_complex(pairs.contiguous())
    shape = (1, cos.shape[0]) + (1,) * (z.dim() - 3) + (cos.shape[1],)
    return torch.view_as_real(z * torch.complex(cos, sin).view(shape)).flatten(-2).to(x.dtype)


def rope_real(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``apply_rope`` with real cos and sin only (what runs under ``torch.compile``)."""
    x0, x1 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    shape = (1, cos.shape[0]) + (1,) * (x0.dim() - 3) + (cos.shape[1],)
    cos, sin = cos.view(shape), sin.view(shape)
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2).to(x.dtype)
