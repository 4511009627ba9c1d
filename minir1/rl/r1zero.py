"""R1-Zero in miniature: pure RL from the base model, no supervised data (R1 §2.2).

The base model can work a problem out (forced to reason it is right on the hard levels) but, left to
itself, answers at once and is mostly wrong there. GRPO with the rule rewards (accuracy + format)
and the R1-Zero template is all it gets. What to watch is what the paper plotted: held-out accuracy
climbing and the mean response length growing as the model learns to think before it answers (R1
Fig. 2-3), plus the miniature's version of "reflection": how often a completion ends its reasoning
with a self-check (``check 15979-7836=8143``), which a quarter of the corpus' worked add/sub
solutions do, and whether checked answers are more accurate.

``run_r1_zero(profile)`` loads the base model (``load_rl_base``), measures the held-out set, runs
GRPO with a held-out check every ``eval_every`` steps, and writes ``runs/r1zero-PROFILE``: the
checkpoint, ``grpo.jsonl`` (one row per step), ``samples.json`` (training samples from every step
and greedy held-out completions before and after) and ``summary.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from minir1 import profile
from minir1.data.tasks import Problem
from minir1.data.testsets import evaluation_problems
from minir1.data.tokenizer import Tokenizer
from minir1.dist import parallel as dist_parallel
from minir1.eval.greedy import EvalResult, evaluate
from minir1.eval.heldout import heldout_metrics
from minir1.model.transformer import Transformer
from minir1.rl.trainer import GRPOConfig, GRPOTrainer, rl_seconds
from minir1.train.checkpoint import save_checkpoint
from minir1.train.runs import load_rl_base, runs_dir


@dataclass(frozen=True)
class R1ZeroRecipe:
    grpo: GRPOConfig
    # held-out set: the tasks the base can reason through
    eval_tasks: tuple[str, ...] = ("add", "sub", "mul")
    eval_levels: tuple[int, ...] = (3, 4)  # ... on the levels where answering directly fails
    eval_n: int = 25  # held-out problems per task and level (greedy, free mode)
    eval_every: int = 10  # GRPO steps between held-out checks


# The hard levels (3-4) of the tasks the base model can reason through: there direct answers fail
# and reasoned ones succeed, the gap R1-Zero's RL has to find.
_HARD_ARITHMETIC = dict(tasks=("add", "sub", "mul"), levels=(3, 4), max_new_tokens=128)
R1ZERO_RECIPES = {
    "ci": R1ZeroRecipe(GRPOConfig(steps=8, prompts_per_step=8, group_size=8, **_HARD_ARITHMETIC),
                       eval_n=6, eval_every=4),
    "cpu": R1ZeroRecipe(GRPOConfig(steps=40, **_HARD_ARITHMETIC)),
    "gpu": R1ZeroRecipe(GRPOConfig(steps=100, prompts_per_step=32, group_size=16,
                                   **_HARD_ARITHMETIC),
                        eval_n=100),
}


@dataclass
class R1ZeroResult:
    trainer: GRPOTrainer
    before: list[EvalResult]
    after: list[EvalResult]
    summary: dict[str, Any] = field(default_factory=dict)


def run_r1_zero(profile_name: str | None = None, out: str | Path | None = None,
                steps: int | None = None, model: Transformer | None = None,
                tok: Tokenizer | None = None, progress: bool = True,
                on_log: Callable[[dict[str, float]], None] | None = None,
                tasks: tuple[str, ...] | None = None, levels: tuple[int, ...] | None = None,
                ) -> R1ZeroResult:
    """GRPO from the profile's base model (or ``model``) with the profile's recipe; writes ``out``.

    ``out`` defaults to ``runs/r1zero-PROFILE``; ``steps`` overrides the recipe's step count;
    ``tasks`` and ``levels`` replace what it trains and evaluates on (e.g. the harder
    ``expr`` task).
    """
    name = profile_name or profile.current()
    recipe = R1ZERO_RECIPES[name]
    if tasks or levels:
        tasks, levels = tasks or recipe.eval_tasks, levels or recipe.eval_levels
        recipe = replace(recipe, eval_tasks=tasks, eval_levels=levels,
                         grpo=replace(recipe.grpo, tasks=tasks, levels=levels))
    cfg = recipe.grpo if steps is None else replace(recipe.grpo, steps=steps)
    if model is None or tok is None:
        model, tok, _ = load_rl_base(name, progress=progress)
    out = Path(out) if out is not None else runs_dir() / f"r1zero-{name}"
    if (out / "grpo.jsonl").exists() and dist_parallel.is_main():
        (out / "grpo.jsonl").unlink()  # a fresh run, not appended to an old log
    problems: list[Problem] = evaluation_problems(recipe.eval_n, recipe.eval_tasks,
                                                  recipe.eval_levels)

    # fit() checks at step 0, every eval_every steps and at the last step
    checks: list[list[EvalResult]] = []

    def check(m: Transformer) -> dict[str, float]:
        checks.append(evaluate(m, tok, problems, "free", template=cfg.template))
        return heldout_metrics(checks[-1], tok)

    trainer = GRPOTrainer(model, tok, cfg, out_dir=out, eval_fn=check, eval_every=recipe.eval_every,
                          on_log=on_log)
    t0 = time.perf_counter()
    history = trainer.fit(progress=progress)
    wall = time.perf_counter() - t0
    policy = trainer.model  # whole (under torchrun, fit gathered the shards into it)
    if not trainer.is_main:  # rank 0 evaluated and writes the run
        return R1ZeroResult(trainer, [], [], {})
    before, after = checks[0], checks[-1]
    save_checkpoint(out / "checkpoint", policy, tok, trainer.step,
                    extra={"stage": "r1-zero", "profile": name})
    summary = {"profile": name, "steps": trainer.step, "rl_seconds": rl_seconds(history),
               "wall_seconds": wall, "heldout_problems": len(problems),
               "eval_tasks": recipe.eval_tasks, "eval_levels": recipe.eval_levels,
               "before": heldout_metrics(before, tok), "after": heldout_metrics(after, tok),
               "config": asdict(cfg)}
    samples = {"train": {str(k): v for k, v in trainer.samples.items()},
               "rollouts": {str(k): v for k, v in trainer.rollouts.items()},
               "heldout_before": [(r.problem.question, r.completion, r.correct) for r in before],
               "heldout_after": [(r.problem.question, r.completion, r.correct) for r in after]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "samples.json").write_text(json.dumps(samples) + "\n")
    return R1ZeroResult(trainer, before, after, summary)


def format_summary(summary: dict[str, Any]) -> str:
    """Before/after lines of the held-out metrics, for the CLI and the lessons."""
    b, a = summary["before"], summary["after"]
    lines = [f"held-out: {summary['heldout_problems']} problems "
             f"({'/'.join(summary['eval_tasks'])}, levels "
             f"{'/'.join(map(str, summary['eval_levels']))}), greedy, free mode",
             f"{'':<22}{'base':>10}{'after RL':>10}"]
    for key, label, pct in (("heldout_accuracy", "accuracy", True),
                            ("heldout_reasoning", "reasons first", True),
                            ("heldout_format", "well formed", True),
                            ("heldout_length", "mean length (tok)", False),
                            ("heldout_check_rate", "self-checks", True),
                            ("heldout_checked_accuracy", "  acc. when checked", True),
                            ("heldout_unchecked_accuracy", "  acc. reasoned, no chk", True)):
        cells = ["—" if v is None else f"{v:.1%}" if pct else f"{v:.1f}" for v in (b[key], a[key])]
        lines.append(f"{label:<22}{cells[0]:>10}{cells[1]:>10}")
    lines.append(f"{summary['steps']} GRPO steps in {summary['rl_seconds']:.0f}s of RL "
                 f"({summary['wall_seconds']:.0f}s with the held-out checks)")
    return "\n".join(lines)


__all__ = ["R1ZERO_RECIPES", "R1ZeroRecipe", "R1ZeroResult", "format_summary", "run_r1_zero"]
