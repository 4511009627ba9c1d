"""How fast the FP8 GEMM runs against a bf16 matmul of the same shape, and how far its result is
from the simulation (``fp8_gemm(backend="dequant")``) on the same operands.

DeepSeek-V3 runs the GEMMs of its Linears in FP8 for speed (§3.3.1: in principle twice the BF16
rate on the same tensor cores), with 1x128 activation tiles, 128x128 weight blocks and fp32
promotion every 128 inner elements (§3.3.2). ``compare_with_bf16`` times one square GEMM
(4096³ by default, what benchmarks/gpu_check.py reports) per backend of ``minir1.fp8.gemm``; a
backend the device cannot run is reported with its error, not skipped silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from minir1.fp8.gemm import fp8_gemm
from minir1.fp8.quant import quantize

FAST_BACKENDS = ("scaled_mm", "blockwise")  # the ones that can use FP8 tensor cores


def _sync(device: torch.device) -> None:
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def seconds_per_call(fn: Callable[[], Any], device: torch.device, repeats: int = 20,
                     warmup: int = 3) -> float:
    """Mean wall time of ``fn()`` over ``repeats`` calls queued back to back (one sync at each
    end, so the launch overhead overlaps as in a training step)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def compare_with_bf16(n: int = 4096, device: str | torch.device = "cuda", repeats: int = 20,
                      backends: tuple[str, ...] = FAST_BACKENDS, seed: int = 0) -> dict[str, Any]:
    """Time ``C = A · Bᵀ`` for A, B of shape [n, n]: a bf16 matmul, then each FP8 ``backend`` on
    A quantised in 1x128 tiles and B in 128x128 blocks (E4M3).

    Returns ``{"n", "device", "bf16": {"ms", "tflops"}, "backends": {name: {"ms", "tflops",
    "speedup" (bf16 time over this one), "rel_err" (Frobenius, against the simulation)} or
    {"error": why}}}``.
    """
    device = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    flops = 2.0 * n**3
    a16, b16 = a.bfloat16(), b.bfloat16()
    bf16 = seconds_per_call(lambda: a16 @ b16.T, device, repeats)
    qa, sa = quantize(a, "e4m3", (1, 128))
    qb, sb = quantize(b, "e4m3", (128, 128))
    simulated = fp8_gemm(qa, sa, qb, sb, backend="dequant")
    out: dict[str, Any] = {"n": n, "device": str(device),
                           "bf16": {"ms": bf16 * 1e3, "tflops": flops / bf16 / 1e12},
                           "backends": {}}
    for name in backends:
        try:
            c = fp8_gemm(qa, sa, qb, sb, out_dtype=torch.float32, backend=name)
            t = seconds_per_call(lambda name=name: fp8_gemm(qa, sa, qb, sb, torch.bfloat16, name),
                                 device, repeats)
        except (RuntimeError, ValueError) as err:
            out["backends"][name] = {"error": " ".join(str(err).split())[:400]}
            continue
        rel = float((c - simulated).norm() / simulated.norm())
        out["backends"][name] = {"ms": t * 1e3, "tflops": flops / t / 1e12,
                                 "speedup": bf16 / t, "rel_err": rel}
    return out


__all__ = ["FAST_BACKENDS", "compare_with_bf16", "seconds_per_call"]
