"""Pre-training the base model and supervised fine-tuning, sized by profile.

``pretrain`` builds the R1-Zero-ready corpus (see ``minir1.data.datasets``), packs it, trains a fresh model
and saves ``out/checkpoint`` plus ``out/eval.json``; ``sft`` continues a checkpoint on prompt-masked,
sample-masked chat data. Both are what ``minir1 pretrain`` / ``minir1 sft`` run.
"""

from __future__ import annotations

import json
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
from minir1.train.loop import TrainConfig, Trainer, load_model


@dataclass(frozen=True)
class PretrainRecipe:
    preset: str = "tiny"
    steps: int = 1500
    batch_size: int = 32
    seq_len: int = 256
    lr: float = 3e-3
    warmup_steps: int = 50
    n_docs: int = 80_000  # documents in the (packed) corpus; more than one pass never happens at these sizes
    init_std: float = 0.02  # see ``pretrain``'s docstring
    eval_n: int = 50  # held-out problems per (task, level) in the final evaluation


# One profile switch sizes the run (``MINIR1_PROFILE``); ``cpu`` is the documented base model for the lessons.
RECIPES = {
    "ci": PretrainRecipe(steps=60, batch_size=16, n_docs=4_000, eval_n=10),
    "cpu": PretrainRecipe(),
    "gpu": PretrainRecipe(preset="small", steps=3000, batch_size=64, lr=1e-3, n_docs=400_000, init_std=0.01),
}


# `make demo`: the same recipe, cut to ~5 minutes on 2 CPU cores so data -> pretrain -> eval fits in 10 minutes.
DEMO_RECIPE = PretrainRecipe(steps=450, eval_n=20)


def model_config(recipe: PretrainRecipe, tok: Tokenizer, **overrides: Any) -> ModelConfig:
    """The preset, with a vocabulary that holds the tokenizer and the recipe's init std."""
    base = ModelConfig.preset(recipe.preset)
    return ModelConfig.preset(recipe.preset, **{"vocab_size": max(base.vocab_size, tok.vocab_size),
                                                "init_std": recipe.init_std, **overrides})


def evaluation_problems(n: int, tasks: tuple[str, ...] = TASKS, levels: tuple[int, ...] = LEVELS) -> list:
    return [p for t in tasks for lv in levels for p in test_set(t, lv, n)]


def run_evaluation(model: Transformer, tok: Tokenizer, n: int, modes: tuple[str, ...] = MODES,
                   template: str = "r1_zero") -> dict[str, list[EvalResult]]:
    problems = evaluation_problems(n)
    return {mode: evaluate(model, tok, problems, mode, template=template) for mode in modes}


def _summary(results: dict[str, list[EvalResult]]) -> dict[str, Any]:
    return {mode: {f"{t}_L{lv}": acc for (t, lv), acc in accuracy_by_level(res).items()}
            for mode, res in results.items()} | {
        "free_reasoning_rate": sum(r.reasoned for r in results.get("free", [])) / max(1, len(results.get("free", [])))}


def pretrain(out: str | Path, recipe: PretrainRecipe | None = None, corpus: CorpusConfig | None = None,
             seed: int = 0, resume: bool = False, progress: bool = True, **model_overrides: Any) -> Trainer:
    """Pre-train a base model on the R1-Zero-ready corpus; saves ``out/checkpoint`` and ``out/eval.json``.

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
                      warmup_steps=recipe.warmup_steps, log_every=max(1, recipe.steps // 50), seed=seed)
    trainer = Trainer(model, tok, stream, cfg, out, progress=progress)
    trainer.fit(resume=resume)
    results = run_evaluation(trainer.model, tok, recipe.eval_n, template=corpus.template)
    (Path(out) / "eval.json").write_text(json.dumps(_summary(results), indent=1) + "\n")
    if progress:
        print(accuracy_table(results))
    return trainer


def sft(init: str | Path, out: str | Path, docs: list[Document], steps: int, batch_size: int = 16,
        seq_len: int = 256, lr: float = 1e-3, seed: int = 0, progress: bool = True) -> Trainer:
    """Fine-tune the checkpoint at ``init`` on ``docs``: loss on completions only, packed samples isolated from
    each other (V3 §5.1 sample masking). Saves ``out/checkpoint``."""
    model, tok, _ = load_model(init)
    stream = SFTStream(sft_samples(tok, docs), batch_size, seq_len, seed=seed, pad_id=tok.pad_id)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr, warmup_steps=min(20, steps // 10),
                      log_every=max(1, steps // 50), seed=seed)
    trainer = Trainer(model, tok, stream, cfg, out, progress=progress)
    trainer.fit()
    return trainer


__all__ = ["DEMO_RECIPE", "RECIPES", "PretrainRecipe", "model_config", "pretrain", "run_evaluation", "sft"]
