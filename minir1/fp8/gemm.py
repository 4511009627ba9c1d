"""FP8 GEMM with fine-grained scales and fp32 promotion every 128 inner elements
(V3 §3.3.2, Fig. 7b).

``fp8_gemm(qa, sa, qb, sb)`` computes ``C = A · Bᵀ`` the way the official ``fp8_gemm`` kernel
does: A is ``[M, K]`` in FP8 with one scale per row per 128-wide K slice, B is ``[N, K]`` in FP8
with either one scale per 128x128 block (a weight) or, like A, one per row per K slice (an
activation or gradient, in the weight-gradient GEMM). For every K slice the FP8 product is formed
and multiplied by ``sa[row] * sb[col]`` before it is added to an fp32 accumulator: dequantising
per 128-element slice is the software form of promoting the tensor core's partial sums to fp32
every N_C = 128 elements.

Two backends compute each slice's product. ``"dequant"`` converts the FP8 values to fp32 and uses an
ordinary fp32 matmul: products of two E4M3 values have at most 8 significant bits and a 128-term
partial sum stays well inside fp32's 24, so the only rounding left is fp32's own, the ideal of what
the hardware computes with promotion. ``"scaled_mm"`` hands the FP8 operands to ``torch._scaled_mm``
with row-wise scales (one per row of A and one per row of B for this slice, which is exactly what
tile and block scales are within one K slice): PyTorch's CPU kernel gives the dequantising path's
numbers (tested); on Hopper's FP8 tensor cores the sum inside a slice runs at the hardware's reduced
accumulation precision, so results differ by ~1e-4 relative, which is the effect promotion bounds.
The tensor core's 14-bit accumulation *without* promotion is what ``minir1.fp8.accum`` emulates.

``"blockwise"`` is the same GEMM in one ``torch._scaled_mm`` call that takes the 1x128 tile and
128x128 block scales themselves (cuBLAS >= 12.9 on SM90, which applies them per K slice inside the
kernel, as DeepGEMM does): what runs fast on Hopper, where the per-slice loop pays a launch and an
fp32 read-modify-write of C for every 128 columns of K. PyTorch's CPU kernel lacks it.
"""

from __future__ import annotations

import torch

from minir1.fp8.formats import FP8Format
from minir1.fp8.quant import Block, quantize

K_SLICE = 128  # N_C: the inner-dimension interval of fp32 promotion and of the scales


def _row_scales(s: torch.Tensor, rows: int, name: str, k_slices: int) -> torch.Tensor:
    """Scales as [rows, K/128]: per-row scales pass through, 128-row block scales are repeated per
    row, and a 0-d (per-tensor) scale is broadcast."""
    if s.dim() == 0:
        return s.expand(rows, k_slices)
    if s.dim() != 2 or s.shape[1] != k_slices:
        raise ValueError(f"{name}: scales must be [rows or row blocks, ceil(K/128) = {k_slices}], "
                         f"got {tuple(s.shape)}")
    if s.shape[0] == rows:
        return s
    if s.shape[0] == -(-rows // K_SLICE):
        return s.repeat_interleave(K_SLICE, dim=0)[:rows]
    raise ValueError(f"{name}: {s.shape[0]} scale rows fit neither {rows} rows "
                     f"nor {-(-rows // K_SLICE)} blocks")


BACKENDS = ("dequant", "scaled_mm", "blockwise")


def _pad_to(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    if x.shape == (rows, cols):
        return x
    out = torch.zeros(rows, cols, dtype=x.dtype, device=x.device)
    out[: x.shape[0], : x.shape[1]] = x
    return out


def scaled_mm_available(device: str | torch.device = "cpu") -> bool:
    """Whether this torch has ``torch._scaled_mm`` with row-wise scales and fp32 output
    on ``device``."""
    try:
        q = torch.ones(16, 16, device=device).to(torch.float8_e4m3fn)
        s = torch.ones(16, 1, device=device)
        torch._scaled_mm(q, q.t(), scale_a=s, scale_b=s.t().contiguous(), out_dtype=torch.float32)
        return True
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def _scaled_mm_slice(qa: torch.Tensor, qb: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor,
                     multiple: int | None = None) -> torch.Tensor:
    """One K slice on FP8 hardware: ``(qa · qbᵀ) * sa[:, None] * sb[None, :]`` with fp32 output.

    cuBLAS wants K and N multiples of 16 (``multiple``, default 16 on CUDA and 1 elsewhere), A
    row-major and B column-major; the zero padding changes nothing.
    """
    M, N, K = qa.shape[0], qb.shape[0], qa.shape[1]
    multiple = multiple or (16 if qa.is_cuda else 1)

    def up(n: int) -> int:
        return -(-n // multiple) * multiple

    a, b = _pad_to(qa, up(M), up(K)), _pad_to(qb, up(N), up(K))
    try:
        out = torch._scaled_mm(a, b.t(),
                               scale_a=_pad_to(sa[:, None], up(M), 1).float().contiguous(),
                               scale_b=_pad_to(sb[None, :], 1, up(N)).float().contiguous(),
                               out_dtype=torch.float32)
    except RuntimeError as err:  # e.g. CUTLASS builds allow row-wise scales only with bf16 output
        raise RuntimeError(f"torch._scaled_mm with row-wise scales and fp32 output failed on "
                           f"{qa.device} ({err}). It needs PyTorch's CPU kernel (torch >= 2.7) "
                           "or, on CUDA, an SM90 GPU with cuBLAS >= 12.9; "
                           "use backend='dequant' instead") from err
    return out[:M, :N]


def _blockwise(qa: torch.Tensor, sa: torch.Tensor, qb: torch.Tensor, sb: torch.Tensor,
               out_dtype: torch.dtype) -> torch.Tensor:
    """One ``torch._scaled_mm`` with A's [M, K/128] tile scales and B's [N/128, K/128] block
    scales, laid out as cuBLAS reads them (tile scales M-major, block scales transposed)."""
    M, N, K = qa.shape[0], qb.shape[0], qa.shape[1]
    slices = -(-K // K_SLICE)
    if sa.shape != (M, slices) or sb.shape != (-(-N // K_SLICE), slices):
        raise ValueError(f"backend='blockwise' takes 1x128 tile scales for A [{M}, {slices}] and "
                         f"128x128 block scales for B [{-(-N // K_SLICE)}, {slices}], got "
                         f"{tuple(sa.shape)} and {tuple(sb.shape)}")
    try:
        return torch._scaled_mm(qa, qb.t(), scale_a=sa.float().t().contiguous().t(),
                                scale_b=sb.float().t(), out_dtype=out_dtype)
    except (RuntimeError, ValueError, NotImplementedError) as err:  # the CPU kernel: ValueError
        raise RuntimeError(f"torch._scaled_mm with 1x128/128x128 block scales failed on "
                           f"{qa.device} ({err}). It needs an SM90 GPU with cuBLAS >= 12.9 and "
                           "M, N, K multiples of 16 (128 for K); use backend='scaled_mm' or "
                           "'dequant' instead") from err


def fp8_gemm(qa: torch.Tensor, sa: torch.Tensor, qb: torch.Tensor, sb: torch.Tensor,
             out_dtype: torch.dtype = torch.float32, backend: str = "dequant") -> torch.Tensor:
    """``C = A · Bᵀ`` from FP8 operands and their scales (see the module docstring); ``[M, N]``
    in ``out_dtype``.

    ``backend``: ``"dequant"`` (fp32 matmul of the FP8 values), ``"scaled_mm"``
    (``torch._scaled_mm`` per K slice) or ``"blockwise"`` (one ``torch._scaled_mm`` with the
    block scales, A's 1x128 and B's 128x128 only)."""
    if backend not in BACKENDS:
        raise ValueError(f"fp8_gemm: backend={backend!r} must be one of {BACKENDS}")
    if qa.dim() != 2 or qb.dim() != 2 or qa.shape[1] != qb.shape[1]:
        raise ValueError(f"fp8_gemm: A [M, K] and B [N, K] must share K, "
                         f"got {tuple(qa.shape)} and {tuple(qb.shape)}")
    M, K = qa.shape
    N = qb.shape[0]
    if backend == "blockwise":
        return _blockwise(qa, sa, qb, sb, out_dtype)
    slices = -(-K // K_SLICE)
    sa, sb = _row_scales(sa, M, "sa", slices), _row_scales(sb, N, "sb", slices)
    acc = torch.zeros(M, N, dtype=torch.float32, device=qa.device)
    if backend == "scaled_mm":
        for j in range(slices):
            ks = slice(j * K_SLICE, (j + 1) * K_SLICE)
            acc += _scaled_mm_slice(qa[:, ks].contiguous(), qb[:, ks].contiguous(),
                                    sa[:, j], sb[:, j])
        return acc.to(out_dtype)
    a, b = qa.float(), qb.float()
    for j in range(slices):
        ks = slice(j * K_SLICE, (j + 1) * K_SLICE)
        # promote and dequantise per slice
        acc += (a[:, ks] @ b[:, ks].T) * sa[:, j, None] * sb[None, :, j]
    return acc.to(out_dtype)


def fp8_matmul(a: torch.Tensor, b: torch.Tensor, fmt: str | FP8Format = "e4m3",
               a_block: Block = (1, 128), b_block: Block = (128, 128), pow2_scale: bool = False,
               out_dtype: torch.dtype = torch.float32, backend: str = "dequant") -> torch.Tensor:
    """Quantise ``a`` [M, K] and ``b`` [N, K] (default: activation tiles and weight blocks),
    then ``fp8_gemm``."""
    for name, blk in (("a_block", a_block), ("b_block", b_block)):
        if blk is not None and blk[1] != K_SLICE:
            raise ValueError(f"{name}={blk}: scales must span {K_SLICE} inner (K) elements, "
                             "e.g. (1, 128) or (128, 128)")
    qa, sa = quantize(a, fmt, a_block, pow2_scale)
    qb, sb = quantize(b, fmt, b_block, pow2_scale)
    return fp8_gemm(qa, sa, qb, sb, out_dtype, backend)


__all__ = ["BACKENDS", "K_SLICE", "fp8_gemm", "fp8_matmul", "scaled_mm_available"]
