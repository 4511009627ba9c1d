"""Fine-grained FP8 quantisation: one scale per tile or block (V3 §3.3.2, Fig. 7a).

``quantize(x, fmt, block)`` splits the last two dimensions of ``x`` into ``block = (rows, cols)``
pieces and gives each piece its own fp32 scale ``s = amax / fmt.max``, so that its largest element
lands on the format's largest value; ``q = x / s`` is then cast to FP8. DeepSeek-V3 uses

* ``(1, 128)`` for activations: per token, per 128 channels (the official ``act_quant``);
* ``(128, 128)`` for weights (the official ``weight_dequant`` / ``weight_scale_inv`` layout);
* ``(128, 1)`` for the activations' transposed use in the weight-gradient GEMM
  (128 tokens per scale);
* ``None``: one scale for the whole tensor, the older per-tensor practice that one outlier ruins.

Sizes need not be multiples of the block: the last block is partial and its scale comes from the
elements it has (the official checkpoints zero-pad misaligned blocks, which gives the same amax).
The amax has a floor of 1e-4, as in the official kernel, so an all-zero block gets a finite scale.
``pow2_scale=True`` rounds each scale *up* to a power of two (the ``ue8m0`` scale format of V3.1),
so dequantising is an exponent shift and rounding up keeps ``|x / s| <= fmt.max``.
"""

from __future__ import annotations

import math

import torch

from minir1.fp8.formats import FP8Format, get_format

AMAX_FLOOR = 1e-4  # the official act_quant's max(amax, 1e-4)
Block = tuple[int, int] | None


def _check_block(x: torch.Tensor, block: Block) -> None:
    if block is None:
        return
    if len(block) != 2 or min(block) < 1:
        raise ValueError(f"block={block!r}: must be (rows, cols) with both >= 1, "
                         "or None for one scale per tensor")
    if x.dim() < 1:
        raise ValueError("quantize: x must have at least one dimension when block is not None")


def _as_2d(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0) if x.dim() == 1 else x


def _blocks(x: torch.Tensor, block: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad the last two dims to whole blocks and view them as (..., R/br, br, C/bc, bc)."""
    br, bc = block
    R, C = x.shape[-2:]
    nr, nc = math.ceil(R / br), math.ceil(C / bc)
    padded = torch.nn.functional.pad(x, (0, nc * bc - C, 0, nr * br - R))
    return padded.reshape(*x.shape[:-2], nr, br, nc, bc), (nr, nc)


def expand_scale(scale: torch.Tensor, shape: torch.Size, block: Block) -> torch.Tensor:
    """Broadcast per-block scales back to one value per element of a tensor of ``shape``."""
    if block is None:
        return scale.expand(shape)
    R, C = (1, shape[-1]) if len(shape) == 1 else shape[-2:]
    if len(shape) == 1:
        scale = scale.unsqueeze(0)
    s = scale.repeat_interleave(block[0], dim=-2).repeat_interleave(block[1], dim=-1)[..., :R, :C]
    return s.reshape(shape)


def compute_scale(x: torch.Tensor, fmt: str | FP8Format = "e4m3", block: Block = (1, 128),
                  pow2_scale: bool = False) -> torch.Tensor:
    """The fp32 scale of every block: ``max(amax, 1e-4) / fmt.max``
    (rounded up to 2^k with ``pow2_scale``)."""
    f = get_format(fmt)
    _check_block(x, block)
    a = x.detach().float().abs()
    if block is None:
        amax = a.amax() if a.numel() else a.new_zeros(())
    else:
        amax = _blocks(_as_2d(a), block)[0].amax(dim=(-3, -1))
        if x.dim() == 1:
            amax = amax.squeeze(0)
    scale = amax.clamp_min(AMAX_FLOOR) / f.max
    if pow2_scale:
        scale = torch.exp2(torch.ceil(torch.log2(scale)))
    return scale


def quantize(x: torch.Tensor, fmt: str | FP8Format = "e4m3", block: Block = (1, 128),
             pow2_scale: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` -> ``(q, scale)``: ``q`` a float8 tensor of ``x``'s shape,
    ``scale`` fp32 with one value per block.

    ``scale`` has shape ``(..., ceil(R / rows), ceil(C / cols))`` for ``x`` of shape ``(..., R, C)``
    (a 1-D ``x`` is one row: scales ``(ceil(C / cols),)``), and is a 0-d tensor for ``block=None``.
    A NaN or inf element makes its block's amax, hence its scale, non-finite, so the whole block
    dequantises to NaN, as in the official kernel; other blocks are untouched. A training run then
    stops on a NaN loss instead of going on with silently clipped values.
    """
    f = get_format(fmt)
    scale = compute_scale(x, f, block, pow2_scale)
    s = scale if block is None else expand_scale(scale, x.shape, block)
    return (x.float() / s).to(f.dtype), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor, block: Block = (1, 128),
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Invert ``quantize``: ``q * scale`` per block, in ``dtype``."""
    s = scale if block is None else expand_scale(scale, q.shape, block)
    return (q.float() * s).to(dtype)


def fake_quantize(x: torch.Tensor, fmt: str | FP8Format = "e4m3", block: Block = (1, 128),
                  pow2_scale: bool = False) -> torch.Tensor:
    """``dequantize(quantize(x))`` in ``x``'s dtype:
    the values an FP8 GEMM would actually multiply."""
    q, scale = quantize(x, fmt, block, pow2_scale)
    return dequantize(q, scale, block, dtype=x.dtype)


__all__ = ["AMAX_FLOOR", "compute_scale", "dequantize", "expand_scale", "fake_quantize", "quantize"]
