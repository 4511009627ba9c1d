"""Time to a reasoning base model: pre-train recipes from random weights and report the training
wall time and tokens at which each first passes the held-out check that R1-Zero needs of its base.

The check, on the fixed held-out test sets (greedy, ``--n`` problems per task and level):

* reasoned accuracy >= 90% on levels 1-2 of every task (the model can work a problem out),
* reasoned minus direct accuracy >= 50 points on levels 3-4, averaged over the tasks (reasoning is
  what makes the hard levels work: the gap RL can find, R1 §2.2),
* free-mode reasoning on at most 10% of the problems (left to itself the model rarely reasons, so
  RL has something to discover; R1-Zero's base answers without a long chain of thought).

Training time is the sum of the training windows between log rows (``Trainer.fit`` restarts its
clock after each check), so the checks' own time is not counted. A recipe stops at its first pass,
or at ``--max-minutes`` of training, or at its last step.

    python benchmarks/time_to_reason.py [--recipes cpu,demo] [--n 10] [--every 100]
                                        [--max-minutes 15] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import torch

from minir1.data.tasks import TASKS
from minir1.data.tokenizer import Tokenizer
from minir1.eval.greedy import accuracy_by_level, run_evaluation
from minir1.model.transformer import Transformer
from minir1.train.pretrain import DEMO_RECIPE, PRETRAIN_RECIPES, PretrainRecipe, pretrain

RECIPES: dict[str, PretrainRecipe] = {"cpu": PRETRAIN_RECIPES["cpu"], "demo": DEMO_RECIPE,
                                      "ci": PRETRAIN_RECIPES["ci"]}
EASY_MIN, HARD_GAP, FREE_MAX = 0.9, 0.5, 0.1


class Passed(Exception):
    """Raised by the check to end a recipe's run at its first pass."""


def reasoning_check(model: Transformer, tok: Tokenizer, n: int) -> dict[str, float]:
    """The three numbers of the check (see the module docstring)."""
    results = run_evaluation(model, tok, n)
    acc = {mode: accuracy_by_level(res) for mode, res in results.items()}
    hard = [(t, lv) for t in TASKS for lv in (3, 4)]
    return {"easy_reason": min(acc["reason"][(t, lv)] for t in TASKS for lv in (1, 2)),
            "hard_gap": sum(acc["reason"][k] - acc["direct"][k] for k in hard) / len(hard),
            "free_reasoning": sum(r.reasoned for r in results["free"]) / len(results["free"])}


def passes(row: dict[str, float]) -> bool:
    return (row["easy_reason"] >= EASY_MIN and row["hard_gap"] >= HARD_GAP
            and row["free_reasoning"] <= FREE_MAX)


def time_to_reason(recipe: PretrainRecipe, n: int, every: int,
                   max_minutes: float) -> dict[str, float | int | None]:
    """Pre-train ``recipe`` with the check every ``every`` steps; the first passing row's step,
    tokens and training seconds (None where it never passed) and the last check's numbers."""
    tok = Tokenizer()
    tokens_per_step = recipe.batch_size * recipe.seq_len
    clock = {"step": 0, "seconds": 0.0}
    rows: list[dict[str, float]] = []

    def on_log(row: dict[str, float]) -> None:
        clock["seconds"] += (row["step"] - clock["step"]) * tokens_per_step / row["tokens_per_s"]
        clock["step"] = row["step"]
        if "easy_reason" in row:
            rows.append({**row, "seconds": clock["seconds"]})
            print(f"  step {row['step']:>5} {clock['seconds']:>7.0f}s  "
                  f"L1-2 reasoned {row['easy_reason']:.0%}  L3-4 gap {row['hard_gap']:+.0%}  "
                  f"free reasoning {row['free_reasoning']:.0%}", flush=True)
            if passes(row) or clock["seconds"] > 60 * max_minutes:
                raise Passed

    def check(model: Transformer) -> dict[str, float]:
        return reasoning_check(model, tok, n)

    run = replace(recipe, eval_every=every, eval_n=0)
    with tempfile.TemporaryDirectory() as out:
        try:
            pretrain(out, run, progress=False, on_log=on_log, eval_fn=check)
        except Passed:
            pass
    first = next((r for r in rows if passes(r)), None)
    last = rows[-1]
    return {"steps": recipe.steps, "pass_step": first and first["step"],
            "pass_tokens": first and first["step"] * tokens_per_step,
            "pass_seconds": first and first["seconds"], "trained_seconds": last["seconds"],
            **{k: last[k] for k in ("easy_reason", "hard_gap", "free_reasoning")}}


def table(results: dict[str, dict[str, float | int | None]]) -> str:
    def cell(value: float | int | None, fmt: str) -> str:
        return "never" if value is None else format(value, fmt)

    lines = [f"{'':<28}" + "".join(f"{name:>14}" for name in results)]
    for key, label, fmt in (("pass_seconds", "training s to pass", ".0f"),
                            ("pass_tokens", "tokens to pass", ",d"),
                            ("pass_step", "step of the pass", "d"),
                            ("steps", "recipe's steps", "d"),
                            ("trained_seconds", "trained s (this run)", ".0f"),
                            ("easy_reason", "last: L1-2 reasoned (worst)", ".0%"),
                            ("hard_gap", "last: L3-4 reason - direct", "+.0%"),
                            ("free_reasoning", "last: free reasoning", ".0%")):
        lines.append(f"{label:<28}" + "".join(f"{cell(r[key], fmt):>14}"
                                              for r in results.values()))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", default="cpu,demo",
                    help=f"comma-separated, from {sorted(RECIPES)}")
    ap.add_argument("--n", type=int, default=10, help="held-out problems per task and level")
    ap.add_argument("--every", type=int, default=100, help="steps between checks")
    ap.add_argument("--max-minutes", type=float, default=15.0,
                    help="stop a recipe after this much training")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.recipes.split(",")
    if unknown := [n for n in names if n not in RECIPES]:
        raise SystemExit(f"--recipes: unknown {unknown}; known: {sorted(RECIPES)}")
    print(f"check: L1-2 reasoned >= {EASY_MIN:.0%} on every task, L3-4 gap >= {HARD_GAP:.0%}, "
          f"free reasoning <= {FREE_MAX:.0%}; {args.n} problems per task and level, every "
          f"{args.every} steps; {torch.get_num_threads()} threads")
    results = {}
    for name in names:
        print(f"{name}: {RECIPES[name]}", flush=True)
        t0 = time.perf_counter()
        results[name] = time_to_reason(RECIPES[name], args.n, args.every, args.max_minutes)
        print(f"  ({time.perf_counter() - t0:.0f}s with the checks)")
    print()
    print(table(results))


if __name__ == "__main__":
    main()
