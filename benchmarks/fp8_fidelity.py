"""FP8 training fidelity: the tiny model trained from the same seed on the same batches in fp32 and with each
FP8 recipe, then the relative loss gap at the end after EMA(0.9) smoothing, as DeepSeek-V3 Fig. 10 plots it
(their bound: < 0.25% vs BF16). Then the same with injected activation outliers, where one scale per tensor
must cover values orders of magnitude apart. Also the wall-time cost of simulating FP8 on this CPU.

    python benchmarks/fp8_fidelity.py [--steps 300] [--outliers 3000]
"""

from __future__ import annotations

import argparse

import torch

from minir1.fp8.fidelity import ema, loss_curve, relative_gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--outliers", type=float, default=3000.0, help="scale of the injected outlier channels")
    args = parser.parse_args()
    print(f"tiny model, {args.steps} steps of {args.batch} x {args.seq} tokens, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; gap = relative difference of EMA(0.9) main loss at the last step")
    for outliers in (0.0, args.outliers):
        label = f"with outlier channels x{outliers:g}" if outliers else "no injected outliers"
        curves = {r: loss_curve(r, args.steps, args.batch, args.seq, outliers)
                  for r in ("off", "deepseek", "tensorwise")}
        base = curves["off"]
        print(f"\n{label}: fp32 final loss (EMA) {ema(base.losses)[-1]:.4f}")
        for name in ("deepseek", "tensorwise"):
            c = curves[name]
            print(f"  {name:<11} final {ema(c.losses)[-1]:.4f}  gap {relative_gap(c.losses, base.losses):+.3%}  "
                  f"(mean over the last 10% of steps {relative_gap(c.losses, base.losses, args.steps // 10):+.3%})"
                  f"  time {c.seconds:.0f}s = {c.seconds / base.seconds:.1f}x fp32 ({base.seconds:.0f}s)")


if __name__ == "__main__":
    main()
