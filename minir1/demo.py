"""``minir1 demo``: the whole story in one command, printed as it goes.

Data (the fixed test sets, checksums verified) -> a short pretraining of the tiny DeepSeek-V3 and
its accuracy table -> the R1 pipeline (R1-Zero beside cold start, reasoning RL, rejection sampling +
SFT, final RL) -> distillation into a dense student -> the results table. ``--fast`` skips the
pretraining and runs short RL stages from the shipped base model.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from minir1.config import ModelConfig
from minir1.data.testsets import verify_test_sets, write_test_sets
from minir1.data.tokenizer import Tokenizer
from minir1.eval.greedy import accuracy_table, run_evaluation, write_summary
from minir1.eval.sampled import format_results
from minir1.model.params import count_params
from minir1.report import print_report
from minir1.rl.distill import DISTILL_RECIPES, FAST_DISTILL, run_distillation
from minir1.rl.pipeline import FAST_PIPELINE, PIPELINE_RECIPES, run_r1_pipeline
from minir1.train.pretrain import DEMO_RECIPE, model_config, pretrain


def print_row(stage: str, row: dict[str, Any]) -> None:
    """One stage's results row, as the pipeline and distillation produce them."""
    print(f"  {stage:<20} pass@1 {row['pass1']:6.1%}   maj@{row['k']} {row['majk']:6.1%}   "
          f"reasons first {row['reasoning']:4.0%}   mean length {row['length']:5.1f} tokens   "
          f"({row['train_seconds']:.0f}s)", flush=True)


def rejection_line(rs: dict[str, Any]) -> str:
    """What rejection sampling drew, kept and dropped."""
    return (f"rejection sampling: {rs['sampled']} samples, {rs['correct']} correct, "
            f"kept {rs['kept']} (dropped {rs['dropped']}) "
            f"from {rs['prompts_kept']}/{rs['prompts']} prompts")


def r1_and_distill(fast: bool, out: Path, step: str = "1/2", t0: float | None = None,
                   distill: bool = True) -> dict[str, float]:
    """The R1 pipeline (``cpu`` recipe, or the short one with ``fast``), then distillation on its
    traces, then the results table (written to ``out/results.md``); returns the wall time of each
    part."""
    t0 = time.perf_counter() if t0 is None else t0
    t_pipe = time.perf_counter()
    recipe = FAST_PIPELINE if fast else PIPELINE_RECIPES["cpu"]
    label = "the short" if fast else "cpu"
    print(f"\n== {step} the R1 pipeline ({label} recipe): base -> R1-Zero, and cold start -> "
          "reasoning RL -> rejection sampling + SFT -> final RL ==")
    print(f"each stage scored on {recipe.eval_n} held-out problems per task and level, "
          f"{recipe.eval_k} samples each at T={recipe.eval_temperature}, top-p {recipe.eval_top_p} "
          "(R1's protocol)")
    pipe = run_r1_pipeline("cpu", out / "r1", recipe, on_stage=print_row,
                           command="minir1 r1 --fast" if fast else None)
    rs = pipe.summary["rejection"]
    print("  " + rejection_line(rs))
    rows = dict(pipe.rows)
    seconds = {"R1 pipeline": time.perf_counter() - t_pipe}
    if distill:
        nxt = f"{int(step[0]) + 1}/{step.split('/')[1]}"
        print(f"\n== {nxt} distillation: the dense student SFT'd on those {rs['kept']} traces vs "
              "the same student trained by RL alone ==")
        dist = run_distillation("cpu", out / "distill",
                                FAST_DISTILL if fast else DISTILL_RECIPES["cpu"],
                                traces=pipe.rejection.docs, on_stage=print_row,
                                command="minir1 distill --fast" if fast else None)
        rows |= dist.rows
        seconds["distillation"] = time.perf_counter() - t_pipe - seconds["R1 pipeline"]
    print("\n" + format_results(rows, f"held-out results ({pipe.summary['eval_problems']} "
                                      f"problems; {time.perf_counter() - t0:.0f}s so far)"))
    (out / "results.md").write_text(format_results(rows) + "\n")
    print(f"written to {out}/results.md; stage checkpoints and logs under {out}/")
    return seconds


def run_demo(out: str | Path = "runs/demo", fast: bool = False, data: str | Path = "data",
             steps: int | None = None, seed: int = 0) -> None:
    """``minir1 demo``: data -> pretraining -> the R1 pipeline and distillation -> results."""
    out = Path(out)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    print("== 1/4 data: the fixed held-out test sets ==")
    problems = verify_test_sets(data)
    if problems:
        write_test_sets(data)
        print(f"rebuilt {data}/ ({problems[0]})")
    print(f"{data}/test: 16 sets of 200 problems (4 tasks x 4 levels), checksums verified")
    seconds["data"] = time.perf_counter() - t0
    recipe = DEMO_RECIPE if steps is None else replace(DEMO_RECIPE, steps=steps)
    v3, tiny = (count_params(ModelConfig.preset("v3")),
                count_params(model_config(recipe, Tokenizer())))
    print(f"\n== 2/4 pretrain the tiny DeepSeek-V3 ({tiny.total:,} parameters; "
          f"the real V3 counted on the meta device: {v3.total / 1e9:.1f}B, "
          f"{v3.activated / 1e9:.1f}B active) ==")
    if fast:
        print("skipped with --fast: the pipeline below starts from the cpu base model "
              "(`minir1 pretrain --profile cpu`, 5,000 steps: runs/base-cpu if you trained it, "
              "else the copy shipped in data/base-cpu)")
    else:
        print(f"{recipe.steps} steps of {recipe.batch_size} x {recipe.seq_len} tokens: a short "
              "version of `minir1 pretrain` (the lessons' base model trains longer)")
        trainer = pretrain(out, replace(recipe, eval_n=0), seed=seed)
        last = trainer.history[-1]
        print(f"trained in {time.perf_counter() - t0:.0f}s; final loss {last['loss']:.3f} at "
              f"{last['tokens_per_s']:,.0f} tokens/s; checkpoint {out}/checkpoint")
        print(f"greedy accuracy on {recipe.eval_n} held-out problems per task and level "
              "(free = the model chooses; direct = forced to answer at once; "
              "reason = forced to work it out first)")
        results = run_evaluation(trainer.model, trainer.tokenizer, recipe.eval_n)
        write_summary(out / "eval.json", results)
        print(accuracy_table(results))
        seconds["pretraining"] = time.perf_counter() - t0 - seconds["data"]
    seconds |= r1_and_distill(fast, out, step="3/4", t0=t0)
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")
    seconds["total"] = time.perf_counter() - t0
    print_report(out, command=demo_command(out, fast, data, steps, seed), seconds=seconds)


def demo_command(out: str | Path, fast: bool, data: str | Path, steps: int | None,
                 seed: int) -> str:
    """The ``minir1 demo`` command line that runs ``run_demo`` with these arguments."""
    flags = [("--fast", fast), (f"--steps {steps}", steps is not None), (f"--seed {seed}", seed),
             (f"--out {out}", str(out) != "runs/demo"), (f"--data {data}", str(data) != "data")]
    return " ".join(["minir1 demo", *(flag for flag, given in flags if given)])


__all__ = ["demo_command", "print_row", "r1_and_distill", "rejection_line", "run_demo"]
