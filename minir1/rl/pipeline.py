"""The DeepSeek-R1 pipeline in miniature: cold start, reasoning RL, rejection sampling + SFT, final RL (R1 §2.3;
facts §9.4), with R1-Zero run next to it from the same base for comparison.

Stages, each starting from the previous one's weights unless said otherwise:

0. **base**: the pre-trained model (``load_rl_base``), prompted with the R1-Zero template.
1. **R1-Zero** (for comparison): GRPO straight from the base, R1-Zero template, rule rewards.
2. **Dev1, cold start**: SFT of the base on a *small* set of clean traces in the chat format (R1: "thousands" of
   readable long-CoT samples). Here they are worked solutions written by the task generator, the miniature of
   R1's human-polished traces.
3. **Dev2, reasoning RL**: the same GRPO as R1-Zero, from Dev1, in the chat format. R1 added a
   language-consistency reward here; this corpus reasons in one "language" only, so there is nothing to keep
   consistent and the reward is left out.
4. **Dev3, rejection sampling + SFT**: ``rs_k`` samples per training prompt from Dev2; keep only the correct
   ones, drop unreadable ones (``readability``), at most ``rs_keep`` distinct traces per prompt; then SFT that
   restarts from the *base* model, as R1 restarted from V3-Base. (R1 also mixed in ~200k non-reasoning samples;
   this corpus has no non-reasoning domain, so Dev3's data is reasoning only.)
5. **R1, final RL**: GRPO again from Dev3 (R1's stage 4 added helpfulness/harmlessness reward models; here the
   rule rewards are all there is).

Every stage is scored the way R1 reports its results (facts §9.5): ``eval_k`` samples per held-out problem at
temperature 0.6, top-p 0.95; pass@1 is the mean accuracy of the samples, maj@k the majority vote (R1's cons@64).
``run_r1_pipeline`` writes ``runs/r1-PROFILE``: one directory per stage (checkpoint, logs), ``traces.jsonl`` (the
rejection-sampled traces, which ``minir1 distill`` reuses, as R1's students were trained on the same ~800k
samples) and ``results.json``.
"""

from __future__ import annotations

import copy
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from minir1 import profile
from minir1.data.datasets import CorpusConfig, Document, corpus_documents, prompt_for
from minir1.data.tasks import Problem, make_problem, split_of
from minir1.data.tokenizer import Tokenizer
from minir1.model.transformer import Transformer
from minir1.rl.r1zero import heldout_metrics
from minir1.rl.rewards import accuracy_reward, format_reward
from minir1.rl.trainer import GRPOConfig, GRPOTrainer, rl_seconds
from minir1.train.evaluate import complete, evaluate, is_reasoned, sampled_eval
from minir1.train.loop import save_checkpoint
from minir1.train.pretrain import evaluation_problems, load_rl_base, runs_dir, sft_model

_TASKS, _LEVELS = ("add", "sub", "mul", "expr"), (3, 4)


@dataclass(frozen=True)
class PipelineRecipe:
    rl: GRPOConfig  # reasoning RL (stage 2); R1-Zero runs the same with the R1-Zero template
    final_rl_steps: int  # GRPO steps of the final RL stage (R1: a shorter all-scenario stage)
    cold_start_traces: int = 200  # clean chat-format traces for the cold start (R1: "thousands")
    cold_start_steps: int = 60  # SFT steps on them (batch ``sft_batch``)
    rs_prompts: int = 2048  # training prompts for rejection sampling (R1: ~600k kept reasoning samples)
    rs_k: int = 4  # samples per prompt (correct traces of one prompt are mostly identical here: more prompts
    # buy more distinct traces than more samples do)
    rs_temperature: float = 1.0
    rs_keep: int = 2  # at most this many distinct correct, readable traces per prompt
    rs_epochs: float = 2.0  # SFT passes over the kept traces (R1: 2 epochs, restarting from the base)
    sft_lr: float = 5e-4  # peak SFT lr, cosine to a tenth (R1: 5e-5 -> 5e-6)
    sft_batch: int = 16  # packed rows of 256 tokens per SFT step
    eval_n: int = 20  # held-out problems per task and level for the results table
    eval_k: int = 8  # samples per problem: pass@1 over k samples, maj@k
    eval_temperature: float = 0.6  # R1's evaluation setting (facts §9.5)
    eval_top_p: float = 0.95
    check_n: int = 8  # held-out problems per task and level for the greedy checks during RL
    check_every: int = 5  # GRPO steps between those checks
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("final_rl_steps", "cold_start_traces", "cold_start_steps", "rs_prompts", "rs_k", "rs_keep",
                     "sft_batch", "eval_n", "eval_k", "check_n", "check_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"PipelineRecipe.{name}={getattr(self, name)}: must be >= 1")
        if self.rs_epochs <= 0:
            raise ValueError(f"PipelineRecipe.rs_epochs={self.rs_epochs}: must be > 0")


_RL = dict(tasks=_TASKS, levels=_LEVELS, max_new_tokens=128)
PIPELINE_RECIPES = {
    # CI: every stage runs and is scored, in about two minutes on one thread; too short to learn much.
    "ci": PipelineRecipe(GRPOConfig(steps=6, prompts_per_step=8, group_size=8, **_RL), final_rl_steps=3,
                         cold_start_traces=64, cold_start_steps=20, rs_prompts=48, rs_k=4, rs_epochs=4.0,
                         eval_n=3, eval_k=4, check_n=3, check_every=3),
    # `minir1 demo --fast`: the whole pipeline in a few minutes on 2 cores.
    "fast": PipelineRecipe(GRPOConfig(steps=16, **_RL), final_rl_steps=8, cold_start_steps=40, rs_prompts=512,
                           eval_n=10, check_n=5, check_every=4),
    "cpu": PipelineRecipe(GRPOConfig(steps=40, **_RL), final_rl_steps=20),
    "gpu": PipelineRecipe(GRPOConfig(steps=100, prompts_per_step=32, group_size=16, **_RL), final_rl_steps=50,
                          cold_start_traces=1000, cold_start_steps=200, rs_prompts=8192, eval_n=50,
                          check_n=25, check_every=10),
}

# One step of the corpus' worked solutions: "4+1+1=6", "623*70=43610", "-13-5=-18", "check 936-589=347".
_STEP = re.compile(r"(check )?-?\d+(?:[-+*]\d+)+=-?\d+")


def readability(completion: str, problem: Problem | None = None) -> str | None:
    """Why a correct trace would still be dropped from the SFT data, or None if it is readable.

    R1 filtered out chain-of-thought with mixed languages, long paragraphs and code blocks (facts §9.4). The
    miniature's counterparts: a malformed completion (tags), an empty think block (no trace to learn from), a step
    that is not in the corpus' step grammar (``_STEP``), and, given the ``problem``, rambling: more steps than its
    worked solution and a check (the repetition small models fall into as RL lengthens their output; R1 v2 App. G.1).
    """
    if format_reward(completion) != 1.0:
        return "malformed"
    if not is_reasoned(completion):
        return "no reasoning"
    steps = completion.split("<think>", 1)[1].split("</think>", 1)[0].split(",")
    if not all(_STEP.fullmatch(s) for s in steps):
        return "unreadable step"
    if problem is not None and len(steps) > len(problem.steps) + 1:
        return "rambling"
    return None


@dataclass
class RejectionSample:
    """What rejection sampling kept, and why the rest went."""

    docs: list[Document]  # kept traces, chat format, ready for SFT
    sampled: int  # completions drawn
    correct: int  # ... of which correct
    dropped: dict[str, int]  # correct but unreadable, by reason (``readability``), plus "duplicate" / "over cap"
    prompts: int  # prompts sampled
    prompts_kept: int  # prompts with at least one kept trace
    records: list[dict[str, Any]] = field(default_factory=list)  # every sample: question, answer, completion,
    # task, level, steps (of the worked solution), correct, why (None: kept; else why it was dropped)

    def summary(self) -> dict[str, Any]:
        return {"sampled": self.sampled, "correct": self.correct, "kept": len(self.docs), "dropped": self.dropped,
                "prompts": self.prompts, "prompts_kept": self.prompts_kept}


def training_prompts(n: int, tasks: tuple[str, ...], levels: tuple[int, ...], seed: int) -> list[Problem]:
    """``n`` train-split problems, uniform over tasks and levels, deterministic in ``seed``."""
    rng = random.Random(f"rejection:{seed}")
    out: list[Problem] = []
    while len(out) < n:
        p = make_problem(rng.choice(tasks), rng.choice(levels), rng)
        if split_of(p) == "train":
            out.append(p)
    return out


def rejection_sample(model: Transformer, tok: Tokenizer, problems: list[Problem], k: int, keep: int = 2,
                     temperature: float = 1.0, template: str = "chat", seed: int = 0,
                     max_new_tokens: int = 160) -> RejectionSample:
    """``k`` samples per problem; keep the correct, readable ones (at most ``keep`` distinct per problem) as
    chat-format SFT documents (R1 §2.3.3)."""
    flat = [p for p in problems for _ in range(k)]
    texts = complete(model, tok, flat, template, "", max_new_tokens, 128, temperature,
                     generator=torch.Generator().manual_seed(seed))
    docs: list[Document] = []
    records: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    prompts_kept = 0
    for i, p in enumerate(problems):
        seen: list[str] = []
        for text in texts[i * k:(i + 1) * k]:
            correct = accuracy_reward(text, p.answer) == 1.0
            why = readability(text, p) if correct else None
            if correct and why is None and text in seen:
                why = "duplicate"
            elif correct and why is None and len(seen) >= keep:
                why = "over cap"
            records.append({"question": p.question, "task": p.task, "level": p.level, "answer": p.answer,
                            "steps": len(p.steps), "completion": text, "correct": correct, "why": why})
            if not correct:
                continue
            if why is not None:
                dropped[why] += 1
                continue
            seen.append(text)
            docs.append(Document(p, prompt_for(p.question, "chat"), text.strip(), worked=True))
        prompts_kept += bool(seen)
    correct_n = sum(r["correct"] for r in records)
    return RejectionSample(docs, len(texts), correct_n, dict(dropped), len(problems), prompts_kept, records)


def cold_start_documents(n: int, tasks: tuple[str, ...] = _TASKS, levels: tuple[int, ...] = _LEVELS,
                         seed: int = 0) -> list[Document]:
    """``n`` clean worked solutions in the chat format (the cold-start set), from the train split."""
    corpus = CorpusConfig(tasks=tasks, levels=levels, level_weights=(1.0,) * len(levels), worked_fraction=1.0,
                          template="chat")
    return corpus_documents(corpus, n, seed=seed + 7)  # not the pre-training corpus's seed (0): other draws


def save_traces(path: str | Path, docs: list[Document]) -> Path:
    """The SFT traces as JSON lines (``question``, ``task``, ``level``, ``answer``, ``completion``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for d in docs:
            f.write(json.dumps({"question": d.problem.question, "task": d.problem.task, "level": d.problem.level,
                                "answer": d.problem.answer, "completion": d.completion}) + "\n")
    return path


def load_traces(path: str | Path) -> list[Document]:
    """Traces written by ``save_traces``, as chat-format SFT documents."""
    docs = []
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        p = Problem(r["task"], r["level"], r["question"], r["answer"], ())
        docs.append(Document(p, prompt_for(p.question, "chat"), r["completion"], worked=True))
    return docs


def sft_steps_for(docs: list[Document], tok: Tokenizer, epochs: float, batch_size: int, seq_len: int = 256) -> int:
    """Optimiser steps for ``epochs`` passes over ``docs`` when packed ``batch_size`` rows of ``seq_len`` tokens."""
    tokens = sum(len(tok.encode(d.prompt)) + len(tok.encode(d.completion)) + 2 for d in docs)
    return max(1, round(epochs * tokens / (batch_size * seq_len * 0.9)))  # packing leaves ~10% of each row empty


def score_stage(model: Transformer, tok: Tokenizer, problems: list[Problem], template: str, k: int,
                temperature: float = 0.6, top_p: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """One row of the results table: pass@1 and maj@k over ``k`` samples per problem (R1's protocol), the
    format and reasoning rates, mean completion length (tokens) and pass@1 per task."""
    ev = sampled_eval(model, tok, problems, k, temperature=temperature, template=template, seed=seed, top_p=top_p)
    flat = [t for group in ev.completions for t in group]
    by_task: dict[str, list[bool]] = {}
    for p, correct in zip(problems, ev.correct, strict=True):
        by_task.setdefault(p.task, []).extend(correct)
    return {"pass1": ev.pass1, "majk": ev.majk, "passk": ev.passk, "k": k,
            "format": sum(format_reward(t) for t in flat) / len(flat),
            "reasoning": sum(is_reasoned(t) for t in flat) / len(flat),
            "length": sum(len(tok.encode(t)) for t in flat) / len(flat),
            "pass1_by_task": {t: sum(v) / len(v) for t, v in by_task.items()}}


@dataclass
class Scoreboard:
    """Scores every model of a run on the same held-out problems, the same way (``score_stage``), as it is made."""

    tok: Tokenizer
    problems: list[Problem]
    k: int
    temperature: float
    top_p: float
    seed: int = 0
    keep_models: bool = False
    on_stage: Callable[[str, dict[str, Any]], None] | None = None  # called with each new row (the CLI prints it)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, Transformer] = field(default_factory=dict)

    @classmethod
    def of(cls, recipe: Any, tok: Tokenizer, problems: list[Problem], keep_models: bool = False,
           on_stage: Callable[[str, dict[str, Any]], None] | None = None) -> Scoreboard:
        """From a recipe with ``eval_k``, ``eval_temperature``, ``eval_top_p`` and ``seed`` fields."""
        return cls(tok, problems, recipe.eval_k, recipe.eval_temperature, recipe.eval_top_p, recipe.seed,
                   keep_models, on_stage)

    def record(self, stage: str, model: Transformer, template: str, seconds: float) -> dict[str, Any]:
        """Score ``model`` (prompted with ``template``) as ``stage``; ``seconds``: what training it cost (GRPO: the
        steps alone, without the held-out checks)."""
        row = {"stage": stage, "template": template, "train_seconds": seconds,
               **score_stage(model, self.tok, self.problems, template, self.k, self.temperature, self.top_p,
                             self.seed)}
        self.rows[stage] = row
        if self.keep_models:
            self.models[stage] = model
        if self.on_stage is not None:
            self.on_stage(stage, row)
        return row


def rl_stage(model: Transformer, tok: Tokenizer, cfg: GRPOConfig, out: Path, check_problems: list[Problem],
             check_every: int, progress: bool = True,
             on_log: Callable[[dict[str, float]], None] | None = None) -> GRPOTrainer:
    """GRPO on ``model`` (in place) with greedy held-out checks (``heldout_metrics``) every ``check_every`` steps;
    writes ``out/grpo.jsonl`` and ``out/checkpoint``."""
    if (out / "grpo.jsonl").exists():
        (out / "grpo.jsonl").unlink()  # a fresh run, not appended to an old log

    def check(m: Transformer) -> dict[str, float]:
        return heldout_metrics(evaluate(m, tok, check_problems, "free", template=cfg.template), tok)

    trainer = GRPOTrainer(model, tok, cfg, out_dir=out, eval_fn=check, eval_every=check_every, on_log=on_log)
    trainer.fit(progress=progress)
    save_checkpoint(out / "checkpoint", model, tok, trainer.step, extra={"stage": out.name})
    return trainer


STAGES = ("base", "r1-zero", "dev1-cold-start", "dev2-reasoning-rl", "dev3-rejection-sft", "r1")


@dataclass
class PipelineResult:
    rows: dict[str, dict[str, Any]]  # stage -> results-table row
    curves: dict[str, list[dict[str, float]]]  # RL stage -> its GRPO log
    rejection: RejectionSample
    models: dict[str, Transformer] = field(default_factory=dict)  # stage -> model (when kept)
    summary: dict[str, Any] = field(default_factory=dict)
    tokenizer: Tokenizer | None = None


def run_r1_pipeline(profile_name: str | None = None, out: str | Path | None = None,
                    recipe: PipelineRecipe | None = None, progress: bool = True, keep_models: bool = False,
                    on_stage: Callable[[str, dict[str, Any]], None] | None = None) -> PipelineResult:
    """Base -> R1-Zero, and base -> cold start -> reasoning RL -> rejection sampling + SFT (from the base) -> final
    RL, each stage scored on the same held-out problems. ``recipe`` defaults to ``PIPELINE_RECIPES[profile]``;
    ``on_stage(stage, row)`` is called as each row is ready (the CLI prints it)."""
    name = profile_name or profile.current()
    recipe = recipe or PIPELINE_RECIPES[name]
    out = Path(out) if out is not None else runs_dir() / f"r1-{name}"
    out.mkdir(parents=True, exist_ok=True)
    base, tok, _ = load_rl_base(name, progress=progress)
    tasks, levels = recipe.rl.tasks, recipe.rl.levels
    problems = evaluation_problems(recipe.eval_n, tasks, levels)
    checks = evaluation_problems(recipe.check_n, tasks, levels)
    board = Scoreboard.of(recipe, tok, problems, keep_models, on_stage)
    record = board.record
    curves: dict[str, list[dict[str, float]]] = {}

    record("base", base, "r1_zero", 0.0)
    chat_rl = replace(recipe.rl, template="chat", seed=recipe.seed)
    zero_rl = replace(recipe.rl, template="r1_zero", seed=recipe.seed)

    zero = rl_stage(copy.deepcopy(base), tok, zero_rl, out / "r1-zero", checks, recipe.check_every, progress)
    curves["r1-zero"] = zero.history
    record("r1-zero", zero.model, "r1_zero", rl_seconds(zero.history))

    t0 = time.perf_counter()
    cold_docs = cold_start_documents(recipe.cold_start_traces, tasks, levels, recipe.seed)
    dev1 = copy.deepcopy(base)
    sft_model(dev1, tok, cold_docs, out / "dev1-cold-start", recipe.cold_start_steps, recipe.sft_batch,
              lr=recipe.sft_lr, seed=recipe.seed, progress=progress)
    record("dev1-cold-start", dev1, "chat", time.perf_counter() - t0)

    dev2 = rl_stage(copy.deepcopy(dev1), tok, chat_rl, out / "dev2-reasoning-rl", checks, recipe.check_every,
                    progress)
    curves["dev2-reasoning-rl"] = dev2.history
    record("dev2-reasoning-rl", dev2.model, "chat", rl_seconds(dev2.history))

    t0 = time.perf_counter()
    rs = rejection_sample(dev2.model, tok, training_prompts(recipe.rs_prompts, tasks, levels, recipe.seed),
                          recipe.rs_k, recipe.rs_keep, recipe.rs_temperature, "chat", recipe.seed,
                          recipe.rl.max_new_tokens)
    if not rs.docs:
        raise RuntimeError(f"rejection sampling kept no trace out of {rs.sampled} samples: {rs.summary()}")
    save_traces(out / "traces.jsonl", rs.docs)
    dev3 = copy.deepcopy(base)  # R1 restarts the SFT from the base model, not from Dev2
    steps = sft_steps_for(rs.docs, tok, recipe.rs_epochs, recipe.sft_batch)
    sft_model(dev3, tok, rs.docs, out / "dev3-rejection-sft", steps, recipe.sft_batch, lr=recipe.sft_lr,
              seed=recipe.seed, progress=progress)
    record("dev3-rejection-sft", dev3, "chat", time.perf_counter() - t0)  # sampling included

    final_cfg = replace(chat_rl, steps=recipe.final_rl_steps, seed=recipe.seed + 1)
    r1 = rl_stage(copy.deepcopy(dev3), tok, final_cfg, out / "r1", checks, recipe.check_every, progress)
    curves["r1"] = r1.history
    record("r1", r1.model, "chat", rl_seconds(r1.history))

    rows = board.rows
    summary = {"profile": name, "recipe": asdict(recipe), "eval_problems": len(problems),
               "rejection": {**rs.summary(), "sft_steps": steps}, "rows": rows, "cold_start_traces": len(cold_docs),
               "command": "minir1 r1 --fast" if name == "fast" else f"minir1 r1 --profile {name}"}
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    return PipelineResult(rows, curves, rs, board.models, summary, tok)


def format_results(rows: dict[str, dict[str, Any]], title: str = "") -> str:
    """The results table in the paper's style (R1 Tables 2 and 6): one row per model, pass@1 and maj@k on the
    held-out problems, then the per-task pass@1, the share of samples that reason first, format rate and mean
    length."""
    any_row = next(iter(rows.values()))
    k, tasks = any_row["k"], list(any_row["pass1_by_task"])
    head = (f"| model | pass@1 | maj@{k} | " + " | ".join(f"{t} pass@1" for t in tasks)
            + " | reasons first | well formed | length (tok) |")
    lines = ([title] if title else []) + [head, "|" + "---|" * (6 + len(tasks))]
    for stage, r in rows.items():
        cells = [f"{r['pass1']:.1%}", f"{r['majk']:.1%}", *(f"{r['pass1_by_task'][t]:.1%}" for t in tasks),
                 f"{r['reasoning']:.0%}", f"{r['format']:.0%}", f"{r['length']:.0f}"]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["PIPELINE_RECIPES", "STAGES", "PipelineRecipe", "PipelineResult", "RejectionSample", "Scoreboard",
           "cold_start_documents", "format_results", "load_traces", "readability", "rejection_sample", "rl_seconds",
           "rl_stage", "run_r1_pipeline", "save_traces", "score_stage", "sft_steps_for", "training_prompts"]
