"""Distillation in miniature: a smaller dense student fine-tuned on the teacher's traces, against
the same student trained by RL alone (R1 §2.4 and §4.1, Table 6).

R1's students were dense Qwen and Llama models, SFT'd for 2-3 epochs on the ~800k samples curated
with R1 (the rejection-sampled traces of pipeline stage 3), with no RL. The comparison that matters:
on Qwen-32B-Base, >10k steps of R1-Zero-style RL reached 47.0% AIME pass@1 where distillation
reached 72.6% — distilling a strong teacher beats RL on a small model, because RL can only sharpen
what the small model already finds by sampling.

Here the student is the ``student`` preset (dense, no MoE, no MTP, ~0.34M parameters against the
teacher's 1.6M), pre-trained on the same corpus for less (``STUDENT_RECIPES``); the traces are those
``minir1 r1`` kept by rejection sampling (``runs/r1-PROFILE/traces.jsonl``, else the ``cpu`` run's
copy shipped in ``data/r1-traces-cpu.jsonl``).
Both students are scored like every pipeline stage (``score_stage``).
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
from minir1.data.datasets import Document
from minir1.data.testsets import evaluation_problems
from minir1.dist import parallel as dist_parallel
from minir1.eval.sampled import Scoreboard
from minir1.model.transformer import Transformer
from minir1.rl.pipeline import FAST_PIPELINE, PIPELINE_RECIPES, PipelineRecipe, rl_stage
from minir1.rl.rejection import load_traces
from minir1.rl.trainer import GRPOConfig, rl_seconds
from minir1.train.runs import SHIPPED_TRACES, load_rl_base, runs_dir
from minir1.train.sft import sft_model, sft_steps_for


@dataclass(frozen=True)
class DistillRecipe:
    rl: GRPOConfig  # the RL-only student: R1-Zero's GRPO on the student (R1-Zero-Qwen-32B)
    epochs: float = 3.0  # SFT passes over the teacher's traces (R1's students: 2-3)
    # peak SFT lr, cosine to a tenth (R1: 1e-4 for the 1.5B student, less for larger ones; 1e-3
    # here made the loss jump for the first steps and lost accuracy with fewer traces)
    lr: float = 3e-4
    batch: int = 16  # packed rows of 256 tokens per SFT step
    max_traces: int | None = None  # use at most this many traces (None: all)
    eval_n: int = 20  # as ``PipelineRecipe``: held-out problems per task and level, k samples each
    eval_k: int = 8
    eval_temperature: float = 0.6
    eval_top_p: float = 0.95
    check_n: int = 8
    check_every: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.lr <= 0:
            raise ValueError(f"DistillRecipe: epochs={self.epochs} and lr={self.lr} must be > 0")
        if self.max_traces is not None and self.max_traces < 1:
            raise ValueError(f"DistillRecipe.max_traces={self.max_traces}: must be >= 1 or None")


def _from_pipeline(p: PipelineRecipe, **overrides: Any) -> DistillRecipe:
    """The teacher pipeline's tasks, levels, RL steps and evaluation, for the student."""
    return DistillRecipe(p.rl, eval_n=p.eval_n, eval_k=p.eval_k, check_n=p.check_n,
                         check_every=p.check_every, **overrides)


DISTILL_RECIPES = {
    "ci": _from_pipeline(PIPELINE_RECIPES["ci"], epochs=0.5),
    "cpu": _from_pipeline(PIPELINE_RECIPES["cpu"]),
    "gpu": _from_pipeline(PIPELINE_RECIPES["gpu"], lr=5e-4),
}
FAST_DISTILL = _from_pipeline(FAST_PIPELINE, epochs=1.0)  # `minir1 distill --fast`, `demo --fast`


def teacher_traces(profile_name: str | None = None) -> tuple[list[Document], Path]:
    """The rejection-sampled traces of this profile's pipeline run,
    else the shipped ``cpu`` ones."""
    name = profile_name or profile.current()
    path = runs_dir() / f"r1-{name}" / "traces.jsonl"
    if not path.exists():
        if name == "gpu" or not SHIPPED_TRACES.exists():
            raise FileNotFoundError(f"no teacher traces at {path}: run "
                                    f"`minir1 r1 --profile {name}` first")
        path = SHIPPED_TRACES
    return load_traces(path), path


@dataclass
class DistillResult:
    # "student base" / "student distilled" / "student RL-only" -> results row
    rows: dict[str, dict[str, Any]]
    # "student RL-only" -> its GRPO log; "student distilled" -> SFT log
    curves: dict[str, list[dict[str, float]]]
    models: dict[str, Transformer] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def run_distillation(profile_name: str | None = None, out: str | Path | None = None,
                     recipe: DistillRecipe | None = None, traces: list[Document] | None = None,
                     progress: bool = True, keep_models: bool = False,
                     on_stage: Callable[[str, dict[str, Any]], None] | None = None,
                     command: str | None = None) -> DistillResult:
    """Student base, student SFT'd on the teacher's traces, student after R1-Zero-style RL; writes
    ``out`` (default ``runs/distill-PROFILE``): one directory per student and ``results.json``."""
    name = profile_name or profile.current()
    recipe = recipe or DISTILL_RECIPES[name]
    out = Path(out) if out is not None else runs_dir() / f"distill-{name}"
    out.mkdir(parents=True, exist_ok=True)
    source = "given"
    if traces is None:
        traces, path = teacher_traces(name)
        source = str(path.relative_to(path.parents[1]))
    traces = traces[: recipe.max_traces]
    student, tok, meta = load_rl_base(name, progress=progress, kind="student")
    problems = evaluation_problems(recipe.eval_n, recipe.rl.tasks, recipe.rl.levels)
    checks = evaluation_problems(recipe.check_n, recipe.rl.tasks, recipe.rl.levels)
    board = Scoreboard.of(recipe, tok, problems, keep_models, on_stage)
    record = board.record
    curves: dict[str, list[dict[str, float]]] = {}

    record("student base", student, "r1_zero", 0.0)

    t0 = time.perf_counter()
    distilled = copy.deepcopy(student)
    steps = sft_steps_for(traces, tok, recipe.epochs, recipe.batch)
    sft = sft_model(distilled, tok, traces, out / "distilled", steps, recipe.batch, lr=recipe.lr,
                    seed=recipe.seed, progress=progress)
    curves["student distilled"] = sft.history
    record("student distilled", distilled, "chat", time.perf_counter() - t0)

    rl_cfg = replace(recipe.rl, template="r1_zero", seed=recipe.seed)
    rl = rl_stage(copy.deepcopy(student), tok, rl_cfg, out / "rl-only", checks, recipe.check_every,
                  progress)
    curves["student RL-only"] = rl.history
    record("student RL-only", rl.model, "r1_zero", rl_seconds(rl.history))

    summary = {"profile": name, "recipe": asdict(recipe), "traces": len(traces),
               "traces_from": source, "sft_steps": steps,
               "student": {"preset_dim": student.cfg.dim, "layers": student.cfg.n_layers,
                           "pretrain_step": meta["step"]},
               "eval_problems": len(problems), "rows": board.rows,
               "command": command or f"minir1 distill --profile {name}"}
    if dist_parallel.is_main():
        (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    return DistillResult(board.rows, curves, board.models, summary)


__all__ = ["DISTILL_RECIPES", "FAST_DISTILL", "DistillRecipe", "DistillResult", "run_distillation",
           "teacher_traces"]
