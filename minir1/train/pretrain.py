"""Pre-training the base model and supervised fine-tuning, sized by profile.

``pretrain`` builds the R1-Zero-ready corpus (see ``minir1.data.datasets``), packs it, trains a fresh model
and saves ``out/checkpoint`` plus ``out/eval.json``; ``sft`` continues a checkpoint on prompt-masked,
sample-masked chat data. Both are what ``minir1 pretrain`` / ``minir1 sft`` run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minir1 import profile
from minir1.config import ModelConfig
from minir1.data.datasets import (
    CorpusConfig,
    Document,
    PackedStream,
    SFTStream,
    corpus_documents,
    pack_documents,
    sft_samples,
)
from minir1.data.tasks import LEVELS, TASKS
from minir1.data.testsets import test_set
from minir1.data.tokenizer import Tokenizer
from minir1.model.transformer import Transformer
from minir1.train.evaluate import MODES, EvalResult, accuracy_by_level, accuracy_table, evaluate
from minir1.train.loop import TrainConfig, Trainer, load_model, save_checkpoint


@dataclass(frozen=True)
class PretrainRecipe:
    preset: str = "tiny"
    steps: int = 5000
    batch_size: int = 32
    seq_len: int = 256
    lr: float = 3e-3
    warmup_steps: int = 50
    n_docs: int = 80_000  # documents in the (packed) corpus; more than one pass never happens at these sizes
    init_std: float = 0.02  # see ``pretrain``'s docstring
    eval_n: int = 50  # held-out problems per (task, level) in the final evaluation (0: skip it)
    eval_every: int = 250  # steps between held-out checks during training (loss + levels 1-2 accuracy; 0: none)
    compile: bool = False  # torch.compile the model (pays off on GPU; ~20 s to start on CPU)


# One profile switch sizes the run (``MINIR1_PROFILE``); ``cpu`` is the documented base model for the lessons.
RECIPES = {
    "ci": PretrainRecipe(steps=60, batch_size=16, n_docs=4_000, eval_n=10, eval_every=30),
    "cpu": PretrainRecipe(),
    "gpu": PretrainRecipe(preset="small", steps=3000, batch_size=64, lr=1e-3, n_docs=400_000, init_std=0.01),
}


# `make demo`: the same recipe, cut to ~5 minutes on 2 CPU cores so data -> pretrain -> eval fits in 10 minutes.
DEMO_RECIPE = PretrainRecipe(steps=450, eval_n=20)


# The distillation student (lesson 11): the dense ``student`` preset on the same corpus, pre-trained for less
# (a smaller model on a smaller budget, as R1's Qwen/Llama students were far smaller than V3).
STUDENT_RECIPES = {
    "ci": PretrainRecipe(preset="student", steps=60, batch_size=16, n_docs=4_000, eval_n=10, eval_every=30),
    "cpu": PretrainRecipe(preset="student", steps=2000),
    "gpu": PretrainRecipe(preset="student", steps=3000, batch_size=64, n_docs=400_000),
}


def model_config(recipe: PretrainRecipe, tok: Tokenizer, **overrides: Any) -> ModelConfig:
    """The preset with the tokenizer's exact vocabulary (so the model can never emit an id the tokenizer does not
    have, and sampled log-probs are over real tokens only) and the recipe's init std."""
    return ModelConfig.preset(recipe.preset, **{"vocab_size": tok.vocab_size, "init_std": recipe.init_std,
                                                **overrides})


def evaluation_problems(n: int, tasks: tuple[str, ...] = TASKS, levels: tuple[int, ...] = LEVELS) -> list:
    return [p for t in tasks for lv in levels for p in test_set(t, lv, n)]


def run_evaluation(model: Transformer, tok: Tokenizer, n: int, modes: tuple[str, ...] = MODES,
                   template: str = "r1_zero") -> dict[str, list[EvalResult]]:
    problems = evaluation_problems(n)
    return {mode: evaluate(model, tok, problems, mode, template=template) for mode in modes}


def heldout_eval(tok: Tokenizer, recipe: PretrainRecipe, corpus: CorpusConfig, seed: int = 0, n_batches: int = 4,
                 n_problems: int = 8) -> Callable[[Transformer], dict[str, float]]:
    """The periodic check ``Trainer`` runs: loss on test-split documents (never trained on) and greedy accuracy,
    direct and reasoned, on ``n_problems`` held-out problems per task at levels 1-2."""
    tokens, learned = pack_documents(tok, corpus_documents(corpus, 50 * n_batches * recipe.batch_size // 8 + 50,
                                                           seed=seed, split="test"))
    val = PackedStream(tokens, recipe.batch_size, recipe.seq_len, seed=seed + 1, learned=learned)
    batches = [val.batch(i) for i in range(n_batches)]
    problems = evaluation_problems(n_problems, levels=(1, 2))

    @torch.no_grad()
    def check(model: Transformer) -> dict[str, float]:
        model.eval()
        device = next(model.parameters()).device
        losses = [model(b["tokens"].to(device), targets=b["targets"].to(device)).lm_loss.item() for b in batches]
        row = {"val_loss": sum(losses) / len(losses)}
        for mode in ("direct", "reason"):
            res = evaluate(model, tok, problems, mode, template=corpus.template)
            row[f"{mode}_acc"] = sum(r.correct for r in res) / len(res)
        return row

    return check


def summarize(results: dict[str, list[EvalResult]]) -> dict[str, Any]:
    return {mode: {f"{t}_L{lv}": acc for (t, lv), acc in accuracy_by_level(res).items()}
            for mode, res in results.items()} | {
        "free_reasoning_rate": sum(r.reasoned for r in results.get("free", [])) / max(1, len(results.get("free", [])))}


def write_summary(path: str | Path, results: dict[str, list[EvalResult]]) -> None:
    """``summarize(results)`` as JSON at ``path`` (``eval.json`` of a run, or ``minir1 eval --out``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(summarize(results), indent=1) + "\n")


def pretrain(out: str | Path, recipe: PretrainRecipe | None = None, corpus: CorpusConfig | None = None,
             seed: int = 0, resume: bool = False, progress: bool = True,
             on_log: Callable[[dict[str, float]], None] | None = None, **model_overrides: Any) -> Trainer:
    """Pre-train a base model on the R1-Zero-ready corpus; saves ``out/checkpoint`` and ``out/eval.json``.

    Returns the trainer: ``trainer.history`` holds the metric rows (with the periodic held-out checks of
    ``heldout_eval``) and ``trainer.results`` the final evaluation, ``{mode: [EvalResult, ...]}``.

    ``init_std``: V3 initialises with std 0.006 at width 7168. At width 128 that is a much smaller relative
    scale, and the attention heads that look up the question's digits form far later (lesson 02 saw the same
    on its copy task), so the small presets start from 0.02.
    """
    recipe = recipe or RECIPES[profile.current()]
    corpus = corpus or CorpusConfig()
    tok = Tokenizer()
    torch.manual_seed(seed)
    model = Transformer(model_config(recipe, tok, **model_overrides))
    tokens, learned = pack_documents(tok, corpus_documents(corpus, recipe.n_docs, seed=seed))
    stream = PackedStream(tokens, recipe.batch_size, recipe.seq_len, seed=seed, learned=learned)
    cfg = TrainConfig(steps=recipe.steps, batch_size=recipe.batch_size, seq_len=recipe.seq_len, lr=recipe.lr,
                      warmup_steps=recipe.warmup_steps, log_every=max(1, recipe.steps // 50),
                      eval_every=recipe.eval_every, compile=recipe.compile, seed=seed)
    check = heldout_eval(tok, recipe, corpus, seed) if recipe.eval_every else None
    trainer = Trainer(model, tok, stream, cfg, out, eval_fn=check, progress=progress, on_log=on_log)
    trainer.fit(resume=resume)
    if recipe.eval_n:
        trainer.results = run_evaluation(trainer.model, tok, recipe.eval_n, template=corpus.template)
        write_summary(Path(out) / "eval.json", trainer.results)
        if progress:
            print(accuracy_table(trainer.results))
    return trainer


def runs_dir() -> Path:
    """Where runs live: ``$MINIR1_RUNS``, else ``runs/`` in the repository checkout (so the CLI and the
    lessons, which run from ``notebooks/``, find the same files), else ``./runs``."""
    if os.environ.get("MINIR1_RUNS"):
        return Path(os.environ["MINIR1_RUNS"])
    repo = Path(__file__).resolve().parents[2]
    return repo / "runs" if (repo / "pyproject.toml").exists() else Path.cwd() / "runs"


MODELS = ("base", "student")  # what a run directory or a shipped copy holds: the teacher's base or the student's


def _check_kind(kind: str) -> None:
    if kind not in MODELS:
        raise ValueError(f"kind={kind!r}: must be one of {MODELS}")


def pretrain_command(profile_name: str, kind: str = "base") -> str:
    """The command that trains a profile's base (or student) model."""
    return f"minir1 pretrain{' --student' if kind == 'student' else ''} --profile {profile_name}"


def base_dir(profile_name: str | None = None, kind: str = "base") -> Path:
    """The documented pre-training run of a profile: ``minir1 pretrain --profile P`` writes ``runs/base-P``
    (``kind="student"``: ``minir1 pretrain --student`` writes ``runs/student-P``)."""
    _check_kind(kind)
    return runs_dir() / f"{kind}-{profile_name or profile.current()}"


def load_base(profile_name: str | None = None, train_if_missing: bool = True, progress: bool = True,
              kind: str = "base") -> tuple[Transformer, Tokenizer, dict[str, Any]]:
    """The base model the RL lessons start from: loaded from ``base_dir(profile)``, or pre-trained there first
    with the profile's recipe (about a minute in ``ci``; the ``cpu`` recipe is the ``minir1 pretrain`` run).
    ``kind="student"``: the same for the distillation student (``STUDENT_RECIPES``)."""
    name = profile_name or profile.current()
    ckpt = base_dir(name, kind) / "checkpoint"
    if not ckpt.exists():
        if not train_if_missing:
            raise FileNotFoundError(f"no {kind} model at {ckpt}: run `{pretrain_command(name, kind)}` first")
        print(f"no {kind} model at {ckpt}; pre-training one now (same as `{pretrain_command(name, kind)}`)")
        pretrain(base_dir(name, kind), (STUDENT_RECIPES if kind == "student" else RECIPES)[name], progress=progress)
    return load_model(ckpt)


def shipped_base_dir(kind: str = "base") -> Path:
    """``data/base-cpu`` in the repository: the ``cpu`` recipe's base model (``minir1 pretrain --profile cpu``,
    5,000 steps), its weights stored in float16 to keep the repository small (``make ship-base`` rewrites it).
    ``kind="student"``: ``data/student-cpu``, the distillation student's base (``minir1 pretrain --student``)."""
    _check_kind(kind)
    return Path(__file__).resolve().parents[2] / "data" / f"{kind}-cpu"


def ship_base(src: str | Path | None = None, dst: str | Path | None = None, kind: str = "base") -> Path:
    """Copy a trained base model (default ``runs/KIND-cpu``) into ``data/KIND-cpu`` with float16 weights."""
    model, tok, meta = load_model(Path(src) if src else base_dir("cpu", kind) / "checkpoint")
    extra = {**meta.get("extra", {}), "shipped_from": pretrain_command("cpu", kind), "stored_dtype": "float16"}
    return save_checkpoint(Path(dst) if dst else shipped_base_dir(kind), model, tok, meta["step"], extra=extra,
                           dtype=torch.float16)


def load_rl_base(profile_name: str | None = None, progress: bool = True,
                 kind: str = "base") -> tuple[Transformer, Tokenizer, dict[str, Any]]:
    """The base model RL starts from (``minir1 r1-zero``, ``minir1 r1`` and lessons 09-11).

    ``gpu``: ``load_base("gpu")``. ``ci`` and ``cpu``: the ``cpu`` recipe's model, from ``runs/base-cpu`` if you
    trained it, else the copy shipped in ``data/base-cpu``. A minute of ``ci`` pre-training teaches the model
    nothing to reason with, and the ``cpu`` recipe takes most of an hour, so CI and a first read of the RL
    lessons start from the shipped copy; RL on it measures the same thing. ``kind="student"``: the same for the
    distillation student (``runs/student-cpu``, else ``data/student-cpu``).
    """
    name = profile_name or profile.current()
    if name == "gpu":
        return load_base("gpu", progress=progress, kind=kind)
    trained = base_dir("cpu", kind) / "checkpoint"
    if trained.exists() or not shipped_base_dir(kind).exists():
        return load_base("cpu", progress=progress, kind=kind)
    return load_model(shipped_base_dir(kind))


def sft(init: str | Path, out: str | Path, docs: list[Document], steps: int, batch_size: int = 16,
        seq_len: int = 256, lr: float = 1e-3, seed: int = 0, progress: bool = True) -> Trainer:
    """Fine-tune the checkpoint at ``init`` on ``docs``; see ``sft_model``. Saves ``out/checkpoint``."""
    model, tok, _ = load_model(init)
    return sft_model(model, tok, docs, out, steps, batch_size, seq_len, lr, seed, progress)


def sft_model(model: Transformer, tok: Tokenizer, docs: list[Document], out: str | Path, steps: int,
              batch_size: int = 16, seq_len: int = 256, lr: float = 1e-3, seed: int = 0,
              progress: bool = True) -> Trainer:
    """Fine-tune ``model`` in place on ``docs``: loss on completions only, packed samples isolated from each other
    (V3 §5.1 sample masking), cosine decay to a tenth of ``lr`` (R1's SFT: 5e-5 -> 5e-6). Saves
    ``out/checkpoint``."""
    stream = SFTStream(sft_samples(tok, docs), batch_size, seq_len, seed=seed, pad_id=tok.pad_id)
    warmup = min(20, max(1, steps // 10)) if steps > 1 else 0  # even a short run must not start at the peak lr
    cfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr, warmup_steps=warmup,
                      log_every=max(1, steps // 50), seed=seed)
    trainer = Trainer(model, tok, stream, cfg, out, progress=progress)
    trainer.fit()
    return trainer


__all__ = ["DEMO_RECIPE", "MODELS", "RECIPES", "STUDENT_RECIPES", "PretrainRecipe", "base_dir", "heldout_eval",
           "load_base", "load_rl_base", "model_config", "pretrain", "run_evaluation", "runs_dir", "sft", "sft_model",
           "ship_base", "shipped_base_dir", "summarize", "write_summary"]
