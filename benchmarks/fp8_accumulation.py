"""Accumulation precision of an FP8 GEMM: tensor-core accumulation (~14 bits) with and without
promotion to fp32 every N_C = 128 elements (DeepSeek-V3 §3.3.2, Fig. 7b). The paper: "nearly 2%" max
relative error at K = 4096 without promotion.

    python benchmarks/fp8_accumulation.py [--size 256] [--bits 14]

Operands are random matrices quantised to E4M3 with 1x128 tiles (so the products are what an FP8
GEMM multiplies); the reference is the exact float64 product of the same FP8 values, so the error
printed is the accumulation's alone. Two input distributions: standard normal (signs cancel, the
running sum grows like sqrt(K)) and |normal| (all positive, the running sum grows like K and every
product is cut against it).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from minir1.fp8 import fake_quantize
from minir1.fp8.accum import tc_matmul


def operands(kind: str, size: int, K: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a, b = rng.standard_normal((size, K)), rng.standard_normal((size, K))
    if kind == "positive":
        a, b = np.abs(a), np.abs(b)
    q = [fake_quantize(torch.from_numpy(m.astype(np.float32)), "e4m3", (1, 128)).numpy()
         for m in (a, b)]
    return q[0], q[1]


def errors(c: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """(max relative error over the outputs with |C| above the median, relative Frobenius error)."""
    # near-zero outputs make elementwise ratios meaningless
    big = np.abs(exact) >= np.median(np.abs(exact))
    rel = np.abs(c - exact)[big] / np.abs(exact)[big]
    return float(rel.max()), float(np.linalg.norm(c - exact) / np.linalg.norm(exact))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="M = N of the output")
    parser.add_argument("--bits", type=int, default=14, help="tensor-core accumulator bits")
    parser.add_argument("--ks", default="256,1024,4096,16384")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # compile outside the timings
    tc_matmul(np.ones((1, 32), np.float32), np.ones((1, 32), np.float32))
    print(f"output {args.size}x{args.size}, E4M3 operands (1x128 tiles), {args.bits}-bit "
          f"accumulation, 32 products per MMA step; errors vs the exact product of the same FP8 "
          f"values")
    print(f"{'inputs':<9} {'K':>6} | {'no promotion':^26} | {'promotion every 128':^26} | time (s)")
    print(f"{'':<9} {'':>6} | {'max rel':>12} {'rel Frobenius':>13} | {'max rel':>12} "
          f"{'rel Frobenius':>13} |")
    for kind in ("normal", "positive"):
        for K in (int(k) for k in args.ks.split(",")):
            a, b = operands(kind, args.size, K, rng)
            exact = a.astype(np.float64) @ b.astype(np.float64).T
            t0 = time.perf_counter()
            plain = errors(tc_matmul(a, b, acc_bits=args.bits), exact)
            seconds = time.perf_counter() - t0
            promoted = errors(tc_matmul(a, b, acc_bits=args.bits, promote_every=128), exact)
            print(f"{kind:<9} {K:>6} | {plain[0]:>12.3%} {plain[1]:>13.3%} | {promoted[0]:>12.3%} "
                  f"{promoted[1]:>13.3%} | {seconds:.2f}")


if __name__ == "__main__":
    main()
