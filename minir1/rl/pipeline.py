"""The DeepSeek-R1 pipeline in miniature: cold start, reasoning RL, rejection sampling + SFT, final
RL (R1 §2.3, Nature Fig. 2), with R1-Zero run next to it from the same base for comparison. The file
reads in the paper's order: the recipe, then one section per stage, then the run that chains them.

Stages, each starting from the previous one's weights unless said otherwise:

0. **base**: the pre-trained model (``load_rl_base``), prompted with the R1-Zero template.
1. **R1-Zero** (for comparison): GRPO straight from the base, R1-Zero template, rule rewards.
2. **Dev1, cold start**: SFT of the base on a *small* set of clean traces in the chat format (R1:
   "thousands" of readable long-CoT samples). Here they are worked solutions written by the task
   generator, the miniature of R1's human-polished traces.
3. **Dev2, reasoning RL**: the same GRPO as R1-Zero, from Dev1, in the chat format. R1 added a
   language-consistency reward here; this corpus reasons in one "language" only, so there is nothing
   to keep consistent and the reward is left out.
4. **Dev3, rejection sampling + SFT**: ``rs_k`` samples per training prompt from Dev2; keep only the
   correct ones, drop unreadable ones (``readability``), at most ``rs_keep`` distinct traces per
   prompt; then SFT that restarts from the *base* model, as R1 restarted from V3-Base. (R1 also
   mixed in ~200k non-reasoning samples; this corpus has no non-reasoning domain, so Dev3's data
   is reasoning only.)
5. **R1, final RL**: GRPO again from Dev3 (R1's stage 4 added helpfulness/harmlessness reward
   models; here the rule rewards are all there is).

Every stage is scored the way R1 reports its results (R1 §3, "Evaluation Setup";
``minir1.eval.sampled``): ``eval_k`` samples per held-out problem at temperature 0.6, top-p 0.95;
pass@1 is the mean accuracy of the samples, maj@k the majority vote (R1's cons@64).
``run_r1_pipeline`` writes ``runs/r1-PROFILE``: one directory per stage (checkpoint, logs; an RL
stage's ``samples.json`` too), ``traces.jsonl`` (the rejection-sampled traces, which ``minir1
distill`` reuses, as R1's students were trained on the same ~800k samples) and ``results.json``
(with every stage's wall time).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from minir1 import profile
from minir1.data.datasets import CorpusConfig, Document, corpus_documents
from minir1.data.tasks import Problem, draw_train_problems
from minir1.data.testsets import evaluation_problems
from minir1.data.tokenizer import Tokenizer
from minir1.dist import parallel as dist_parallel
from minir1.eval.greedy import EvalResult, evaluate
from minir1.eval.heldout import heldout_metrics
from minir1.eval.sampled import Scoreboard
from minir1.model.transformer import Transformer
from minir1.rl.rejection import RejectionSample, rejection_sample, save_traces
from minir1.rl.trainer import GRPOConfig, GRPOTrainer, rl_seconds
from minir1.train.checkpoint import save_checkpoint
from minir1.train.runs import load_rl_base, runs_dir
from minir1.train.sft import sft_model, sft_steps_for

_TASKS, _LEVELS = ("add", "sub", "mul", "expr"), (3, 4)


# ------------------------------------------------------------------------------------ the recipe
@dataclass(frozen=True)
class PipelineRecipe:
    rl: GRPOConfig  # reasoning RL (stage 2); R1-Zero runs the same with the R1-Zero template
    final_rl_steps: int  # GRPO steps of the final RL stage (R1: a shorter all-scenario stage)
    cold_start_traces: int = 200  # clean chat-format traces for the cold start (R1: "thousands")
    cold_start_steps: int = 60  # SFT steps on them (batch ``sft_batch``)
    rs_prompts: int = 2048  # training prompts for rejection sampling (R1: ~600k kept samples)
    # samples per prompt (correct traces of one prompt are mostly identical here: more prompts buy
    # more distinct traces than more samples do)
    rs_k: int = 4
    rs_temperature: float = 1.0
    rs_keep: int = 2  # at most this many distinct correct, readable traces per prompt
    # SFT passes over the kept traces (R1: 2 epochs, restarting from the base)
    rs_epochs: float = 2.0
    sft_lr: float = 5e-4  # peak SFT lr, cosine to a tenth (R1: 5e-5 -> 5e-6)
    sft_batch: int = 16  # packed rows of 256 tokens per SFT step
    eval_n: int = 20  # held-out problems per task and level for the results table
    eval_k: int = 8  # samples per problem: pass@1 over k samples, maj@k
    eval_temperature: float = 0.6  # R1's evaluation setting (R1 §3)
    eval_top_p: float = 0.95
    check_n: int = 8  # held-out problems per task and level for the greedy checks during RL
    check_every: int = 5  # GRPO steps between those checks
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("final_rl_steps", "cold_start_traces", "cold_start_steps", "rs_prompts",
                     "rs_k", "rs_keep", "sft_batch", "eval_n", "eval_k", "check_n", "check_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"PipelineRecipe.{name}={getattr(self, name)}: must be >= 1")
        if self.rs_epochs <= 0:
            raise ValueError(f"PipelineRecipe.rs_epochs={self.rs_epochs}: must be > 0")


_RL = dict(tasks=_TASKS, levels=_LEVELS, max_new_tokens=128)
PIPELINE_RECIPES = {
    # CI: every stage runs and is scored, in ~2 minutes on one thread; too short to learn much.
    "ci": PipelineRecipe(GRPOConfig(steps=6, prompts_per_step=8, group_size=8, **_RL),
                         final_rl_steps=3, cold_start_traces=64, cold_start_steps=20, rs_prompts=48,
                         rs_k=4, rs_epochs=4.0, eval_n=3, eval_k=4, check_n=3, check_every=3),
    "cpu": PipelineRecipe(GRPOConfig(steps=40, **_RL), final_rl_steps=20),
    "gpu": PipelineRecipe(GRPOConfig(steps=100, prompts_per_step=32, group_size=16, **_RL),
                          final_rl_steps=50, cold_start_traces=1000, cold_start_steps=200,
                          rs_prompts=8192, eval_n=50, check_n=25, check_every=10),
}
# `minir1 r1 --fast` and `minir1 demo --fast`: the whole pipeline in a few minutes on 2 cores, from
# the cpu base model (not a profile: it sizes no lesson).
FAST_PIPELINE = PipelineRecipe(GRPOConfig(steps=16, **_RL), final_rl_steps=8, cold_start_steps=40,
                               rs_prompts=512, eval_n=10, check_n=5, check_every=4)


# ------------------------------------------------------------------ stage 1: cold start (R1 §2.3.1)
def cold_start_documents(n: int, tasks: tuple[str, ...] = _TASKS,
                         levels: tuple[int, ...] = _LEVELS, seed: int = 0) -> list[Document]:
    """``n`` clean worked solutions in the chat format (the cold-start set),
    from the train split."""
    corpus = CorpusConfig(tasks=tasks, levels=levels, level_weights=(1.0,) * len(levels),
                          worked_fraction=1.0, template="chat")
    # not the pre-training corpus' seed (0): new draws
    return corpus_documents(corpus, n, seed=seed + 7)


# ----------------------------------------------- stages 2 and 4: reasoning RL, final RL (R1 §2.3.2)
def rl_stage(model: Transformer, tok: Tokenizer, cfg: GRPOConfig, out: Path,
             check_problems: list[Problem], check_every: int, progress: bool = True,
             on_log: Callable[[dict[str, float]], None] | None = None) -> GRPOTrainer:
    """GRPO on ``model`` (in place) with greedy held-out checks (``heldout_metrics``) every
    ``check_every`` steps; writes ``out/grpo.jsonl`` and ``out/checkpoint``."""
    if (out / "grpo.jsonl").exists() and dist_parallel.is_main():
        (out / "grpo.jsonl").unlink()  # a fresh run, not appended to an old log

    checks: list[list[EvalResult]] = []  # every check's completions (rank 0 checks)

    def check(m: Transformer) -> dict[str, float]:
        checks.append(evaluate(m, tok, check_problems, "free", template=cfg.template))
        return heldout_metrics(checks[-1], tok)

    trainer = GRPOTrainer(model, tok, cfg, out_dir=out, eval_fn=check, eval_every=check_every,
                          on_log=on_log)
    trainer.fit(progress=progress)  # under torchrun ``model`` is whole again on every rank
    if dist_parallel.is_main():
        save_checkpoint(out / "checkpoint", model, tok, trainer.step, extra={"stage": out.name})
        save_samples(out / "samples.json", trainer, checks)
    return trainer


def save_samples(path: Path, trainer: GRPOTrainer, checks: list[list[EvalResult]]) -> None:
    """``samples.json`` as ``run_r1_zero`` writes it, without the token-level rollouts: training
    samples per step and the greedy held-out completions of the first and last checks."""
    pairs = {"heldout_before": checks[0] if checks else [],
             "heldout_after": checks[-1] if checks else []}
    samples: dict[str, Any] = {"train": {str(k): v for k, v in trainer.samples.items()}}
    samples |= {key: [(r.problem.question, r.completion, r.correct) for r in results]
                for key, results in pairs.items()}
    path.write_text(json.dumps(samples) + "\n")


# --------------------------------------------------- stage 3: rejection sampling + SFT (R1 §2.3.3)
def rejection_prompts(recipe: PipelineRecipe) -> list[Problem]:
    """The training prompts rejection sampling draws from: ``rs_prompts`` train-split problems."""
    return draw_train_problems(recipe.rs_prompts, recipe.rl.tasks, recipe.rl.levels,
                               f"rejection:{recipe.seed}")


# ------------------------------------------------------------------------------------- the run
STAGES = ("base", "r1-zero", "dev1-cold-start", "dev2-reasoning-rl", "dev3-rejection-sft", "r1")


@dataclass
class StageClock:
    """Wall time between stages: ``timed(on_stage)`` records, as each row is ready, the seconds
    since the previous row (the first: since the clock started)."""

    seconds: dict[str, float] = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)

    def timed(self, on_stage: Callable[[str, dict[str, Any]], None] | None = None,
              ) -> Callable[[str, dict[str, Any]], None]:
        """``on_stage``, after recording the stage's wall time."""
        def record(stage: str, row: dict[str, Any]) -> None:
            self.seconds[stage] = self.total() - sum(self.seconds.values())
            if on_stage is not None:
                on_stage(stage, row)
        return record

    def total(self) -> float:
        """Seconds since the clock started."""
        return time.perf_counter() - self.start


@dataclass
class PipelineResult:
    rows: dict[str, dict[str, Any]]  # stage -> results-table row
    curves: dict[str, list[dict[str, float]]]  # RL stage -> its GRPO log
    rejection: RejectionSample
    models: dict[str, Transformer] = field(default_factory=dict)  # stage -> model (when kept)
    summary: dict[str, Any] = field(default_factory=dict)
    tokenizer: Tokenizer | None = None


def run_r1_pipeline(profile_name: str | None = None, out: str | Path | None = None,
                    recipe: PipelineRecipe | None = None, progress: bool = True,
                    keep_models: bool = False,
                    on_stage: Callable[[str, dict[str, Any]], None] | None = None,
                    command: str | None = None) -> PipelineResult:
    """Base -> R1-Zero, and base -> cold start -> reasoning RL -> rejection sampling + SFT (from the
    base) -> final RL, each stage scored on the same held-out problems.

    ``profile_name`` picks the base model (``load_rl_base``) and the default ``recipe``
    (``PIPELINE_RECIPES[profile]``) and output directory (``runs/r1-PROFILE``); ``on_stage(stage,
    row)`` is called as each row is ready (the CLI prints it); ``command`` is recorded in
    ``results.json`` as what produced it.
    """
    name = profile_name or profile.current()
    recipe = recipe or PIPELINE_RECIPES[name]
    out = Path(out) if out is not None else runs_dir() / f"r1-{name}"
    out.mkdir(parents=True, exist_ok=True)
    clock = StageClock()  # wall time per stage: training and scoring (the rows: training alone)
    base, tok, _ = load_rl_base(name, progress=progress)
    tasks, levels = recipe.rl.tasks, recipe.rl.levels
    problems = evaluation_problems(recipe.eval_n, tasks, levels)
    checks = evaluation_problems(recipe.check_n, tasks, levels)
    board = Scoreboard.of(recipe, tok, problems, keep_models, clock.timed(on_stage))
    record = board.record
    curves: dict[str, list[dict[str, float]]] = {}

    record("base", base, "r1_zero", 0.0)
    chat_rl = replace(recipe.rl, template="chat", seed=recipe.seed)
    zero_rl = replace(recipe.rl, template="r1_zero", seed=recipe.seed)

    zero = rl_stage(copy.deepcopy(base), tok, zero_rl, out / "r1-zero", checks, recipe.check_every,
                    progress)
    curves["r1-zero"] = zero.history
    record("r1-zero", zero.model, "r1_zero", rl_seconds(zero.history))

    t0 = time.perf_counter()
    cold_docs = cold_start_documents(recipe.cold_start_traces, tasks, levels, recipe.seed)
    dev1 = copy.deepcopy(base)
    sft_model(dev1, tok, cold_docs, out / "dev1-cold-start", recipe.cold_start_steps,
              recipe.sft_batch, lr=recipe.sft_lr, seed=recipe.seed, progress=progress)
    record("dev1-cold-start", dev1, "chat", time.perf_counter() - t0)

    dev2 = rl_stage(copy.deepcopy(dev1), tok, chat_rl, out / "dev2-reasoning-rl", checks,
                    recipe.check_every, progress)
    curves["dev2-reasoning-rl"] = dev2.history
    record("dev2-reasoning-rl", dev2.model, "chat", rl_seconds(dev2.history))

    t0 = time.perf_counter()
    # under torchrun rank 0 samples and every rank fine-tunes on its traces (a GPU's sampling is
    # not bit-reproducible, and the SFT's step count depends on them)
    rs = dist_parallel.from_main(lambda: rejection_sample(
        dev2.model, tok, rejection_prompts(recipe), recipe.rs_k, recipe.rs_keep,
        recipe.rs_temperature, "chat", recipe.seed, recipe.rl.max_new_tokens))
    if not rs.docs:
        raise RuntimeError(f"rejection sampling kept no trace out of {rs.sampled} samples: "
                           f"{rs.summary()}")
    if dist_parallel.is_main():
        save_traces(out / "traces.jsonl", rs.docs)
    dev3 = copy.deepcopy(base)  # R1 restarts the SFT from the base model, not from Dev2
    steps = sft_steps_for(rs.docs, tok, recipe.rs_epochs, recipe.sft_batch)
    sft_model(dev3, tok, rs.docs, out / "dev3-rejection-sft", steps, recipe.sft_batch,
              lr=recipe.sft_lr, seed=recipe.seed, progress=progress)
    record("dev3-rejection-sft", dev3, "chat", time.perf_counter() - t0)  # sampling included

    final_cfg = replace(chat_rl, steps=recipe.final_rl_steps, seed=recipe.seed + 1)
    r1 = rl_stage(copy.deepcopy(dev3), tok, final_cfg, out / "r1", checks, recipe.check_every,
                  progress)
    curves["r1"] = r1.history
    record("r1", r1.model, "chat", rl_seconds(r1.history))

    rows = board.rows
    summary = {"profile": name, "recipe": asdict(recipe), "eval_problems": len(problems),
               "rejection": {**rs.summary(), "sft_steps": steps}, "rows": rows,
               "cold_start_traces": len(cold_docs),
               "command": command or f"minir1 r1 --profile {name}",
               "stage_seconds": clock.seconds, "wall_seconds": clock.total()}
    if dist_parallel.is_main():
        (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    return PipelineResult(rows, curves, rs, board.models, summary, tok)


__all__ = ["FAST_PIPELINE", "PIPELINE_RECIPES", "STAGES", "PipelineRecipe", "PipelineResult",
           "StageClock", "cold_start_documents", "rejection_prompts", "rl_stage",
           "run_r1_pipeline", "save_samples"]
