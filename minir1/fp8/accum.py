"""An emulator of the FP8 tensor core's limited-precision accumulation, and of promotion to fp32
(V3 §3.3.2, "Increasing accumulation precision", Fig. 7b; §3.5.2).

DeepSeek found that on H800 the FP8 GEMM accumulates with only about 14 bits: each MMA step aligns
its products (and the running sum) to the largest exponent among them and keeps the top ~14 bits,
truncating the rest. The error grows with the inner dimension K, because the running sum keeps
growing and every new product is cut relative to it; the paper reports a maximum relative error of
nearly 2% at K = 4096. Their fix: after every N_C = 128 elements, add the partial sum into a true
fp32 accumulator on the CUDA cores and restart the tensor-core sum from zero.

``tc_matmul(a, b, acc_bits=14, group=32, promote_every=None)`` computes ``C = A · Bᵀ``
this way, in numba:

* the products ``a[i, k] * b[j, k]`` are exact (FP8 x FP8 fits easily in float64);
* every ``group`` products (one MMA's K = 32 for FP8 on Hopper), the running sum and the group's
  products are aligned to the largest binary exponent among them, each truncated toward zero to a
  multiple of ``2^(e_max - acc_bits)``, and summed exactly: that is the new running sum;
* with ``promote_every=128`` the running sum is added into an fp32 accumulator (rounded to fp32)
  every 128 elements and reset.

The model is a simplification of hardware whose exact design is not public; DeepSeek describe it in
the same terms ("aligned by the maximum exponent", "highest 14 bits").
``benchmarks/fp8_accumulation.py`` prints the error against K with and without promotion.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# numba's default OpenMP pool keeps its threads spinning after a parallel loop; beside torch on a
# loaded 2-core machine that doubled, and under the test suite's two workers made ~10x slower, the
# FP8 training that lesson 06 runs next. The workqueue pool sleeps when idle (and was faster here).
# It must be chosen before the first parallel loop runs, hence at import.
numba.config.THREADING_LAYER = "workqueue"


@numba.njit(cache=True, inline="always")
def _align_and_sum(acc: float, terms: np.ndarray, n: int, acc_bits: int) -> float:
    emax = -1 << 30
    _, e = math.frexp(acc)
    if acc != 0.0:
        emax = e
    for t in range(n):
        if terms[t] != 0.0:
            _, e = math.frexp(terms[t])
            if e > emax:
                emax = e
    if emax == -1 << 30:
        return 0.0
    ulp = math.ldexp(1.0, emax - acc_bits)  # frexp's e: |x| < 2^e, so the top bit is 2^(e-1)
    s = math.trunc(acc / ulp) * ulp
    for t in range(n):
        s += math.trunc(terms[t] / ulp) * ulp
    return s


@numba.njit(parallel=True, cache=True)
def _tc_matmul(a: np.ndarray, b: np.ndarray, acc_bits: int, group: int,
               promote_every: int) -> np.ndarray:
    M, K = a.shape
    N = b.shape[0]
    out = np.empty((M, N), dtype=np.float32)
    for i in numba.prange(M):
        terms = np.empty(group, dtype=np.float64)
        for j in range(N):
            total = np.float32(0.0)
            acc = 0.0
            for k0 in range(0, K, group):
                n = min(group, K - k0)
                for t in range(n):
                    terms[t] = np.float64(a[i, k0 + t]) * np.float64(b[j, k0 + t])
                acc = _align_and_sum(acc, terms, n, acc_bits)
                done = k0 + n
                if promote_every > 0 and (done % promote_every == 0 or done == K):
                    total = np.float32(total + np.float32(acc))
                    acc = 0.0
            if promote_every <= 0:
                total = np.float32(acc)
            out[i, j] = total
    return out


def tc_matmul(a: np.ndarray, b: np.ndarray, acc_bits: int = 14, group: int = 32,
              promote_every: int | None = None) -> np.ndarray:
    """``A [M, K] · B [N, K]ᵀ`` with tensor-core-style limited accumulation
    (see the module docstring)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"tc_matmul: A [M, K] and B [N, K] must share K, "
                         f"got {a.shape} and {b.shape}")
    if acc_bits < 1 or group < 1:
        raise ValueError(f"tc_matmul: acc_bits={acc_bits} and group={group} must be >= 1")
    if promote_every is not None and (promote_every < group or promote_every % group):
        raise ValueError(f"promote_every={promote_every}: must be a multiple of group={group}")
    return _tc_matmul(a, b, acc_bits, group, promote_every or 0)


__all__ = ["tc_matmul"]
