"""FP8 training fidelity: the tiny model trained from the same seed on the same batches in fp32 and
with each FP8 recipe; the gap is the relative difference of the EMA(0.9)-smoothed main loss,
averaged over the last 10% of the steps, read at step 100 and at the end, as DeepSeek-V3 Fig. 10
plots it (their bound: < 0.25% vs BF16). Every gap is set against the noise floor (fp32 against fp32
with its initial weights perturbed by 1e-6) and averaged over seeds. Then the same with injected
token outliers (every 32nd token's attention/FFN input x1e4), where one scale per tensor must cover
values orders of magnitude apart. Also the wall-time cost of simulating FP8 on this CPU.

    python benchmarks/fp8_fidelity.py [--steps 300] [--seeds 3] [--outliers none token]
                                      [--json out.json]
    python benchmarks/fp8_fidelity.py --outliers token --seeds 1     # the outlier contrast alone
"""

from __future__ import annotations

import argparse
import json

import torch

from minir1.train.fp8_fidelity import NOISE_FLOOR, OUTLIERS, ema, fidelity_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--outliers", nargs="+", choices=OUTLIERS, default=["none", "token"])
    parser.add_argument("--outlier-scale", type=float, default=1e4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--json", help="also write every curve and gap to this file")
    args = parser.parse_args()
    print(f"tiny model, {args.steps} steps of {args.batch} x {args.seq} tokens, "
          f"seeds 0-{args.seeds - 1}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; gap = EMA(0.9) loss vs fp32, mean over the last 10% "
          f"of the steps so far; lr {args.lr:g}", flush=True)
    dump = {}
    for outliers in args.outliers:
        def progress(label: str, seed: int, curve, outliers=outliers) -> None:
            print(f"  [{outliers}] seed {seed} {label:<16} final EMA {ema(curve.losses)[-1]:.4f} "
                  f"({curve.seconds:.0f}s)", flush=True)

        rep = fidelity_report(args.steps, range(args.seeds), outliers,
                              outlier_scale=args.outlier_scale, batch_size=args.batch,
                              seq_len=args.seq, lr=args.lr, on_curve=progress)
        label = ("no injected outliers" if outliers == "none"
                 else f"{outliers} outliers x{args.outlier_scale:g}")
        base = [ema(rep.curves["off", s].losses)[-1] for s in rep.seeds]
        print(f"\n{label}: fp32 final EMA loss {sum(base) / len(base):.4f} (mean over seeds)")
        for step in sorted({min(100, args.steps), args.steps}):
            print(f"  at step {step}:")
            for name in rep.labels:
                per_seed = " ".join(f"{g:+.3%}" for g in rep.gaps(name, step))
                cost = "" if name == NOISE_FLOOR else f"  time {rep.slowdown(name):.1f}x fp32"
                print(f"    {name:<16} gap {rep.mean(name, step):+.3%} "
                      f"± {rep.stderr(name, step):.3%}  (seeds: {per_seed}){cost}")
            print(f"    noise floor (rms of the fp32 vs perturbed fp32 gaps): "
                  f"{rep.noise_floor(step):.3%}", flush=True)
        print()
        dump[outliers] = {"gaps": {name: rep.gaps(name) for name in rep.labels},
                          "noise_floor": rep.noise_floor(),
                          "curves": {f"{k[0]}|{k[1]}": {"losses": c.losses, "seconds": c.seconds}
                                     for k, c in rep.curves.items()}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": dump}, f)


if __name__ == "__main__":
    main()
