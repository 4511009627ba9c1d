"""Pre-training the base model, sized by profile: the recipes and the run (``minir1 pretrain``).

``pretrain`` builds the R1-Zero-ready corpus (see ``minir1.data.datasets``), packs it, trains a
fresh model with held-out checks along the way (``minir1.eval.heldout``) and saves
``out/checkpoint`` plus ``out/eval.json`` (``minir1.eval.greedy``). Documents are packed without a
cross-document mask, as V3 pre-trains (§4.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minir1 import profile
from minir1.config import ModelConfig
from minir1.data.datasets import CorpusConfig, PackedStream, corpus_documents, pack_documents
from minir1.data.tokenizer import Tokenizer
from minir1.dist.parallel import on_main
from minir1.eval.greedy import accuracy_table, run_evaluation, write_summary
from minir1.eval.heldout import heldout_eval
from minir1.model.transformer import Transformer
from minir1.train.loop import TrainConfig, Trainer


@dataclass(frozen=True)
class PretrainRecipe:
    preset: str = "tiny"
    steps: int = 5000
    batch_size: int = 32
    seq_len: int = 256
    lr: float = 3e-3
    warmup_steps: int = 50
    # documents in the (packed) corpus; more than one pass never happens at these sizes
    n_docs: int = 80_000
    init_std: float = 0.02  # see ``pretrain``'s docstring
    eval_n: int = 50  # held-out problems per (task, level) in the final evaluation (0: skip it)
    # steps between held-out checks during training (loss + levels 1-2 accuracy; 0: none)
    eval_every: int = 250
    compile: bool = False  # torch.compile the model (pays off on GPU; ~20 s to start on CPU)


# One profile switch sizes the run (``MINIR1_PROFILE``); ``cpu`` is the documented base model
# for the lessons.
PRETRAIN_RECIPES = {
    "ci": PretrainRecipe(steps=60, batch_size=16, n_docs=4_000, eval_n=5, eval_every=30),
    "cpu": PretrainRecipe(),
    "gpu": PretrainRecipe(preset="small", steps=3000, batch_size=64, lr=1e-3, n_docs=400_000,
                          init_std=0.01),
}


# `make demo`: the same recipe, cut to ~5 minutes on 2 CPU cores so data -> pretrain -> eval
# fits in 10 minutes.
DEMO_RECIPE = PretrainRecipe(steps=450, eval_n=20)


# The distillation student (lesson 11): the dense ``student`` preset on the same corpus,
# pre-trained for less (a smaller model on a smaller budget, as R1's Qwen/Llama students were far
# smaller than V3).
STUDENT_RECIPES = {
    "ci": PretrainRecipe(preset="student", steps=60, batch_size=16, n_docs=4_000, eval_n=10,
                         eval_every=30),
    "cpu": PretrainRecipe(preset="student", steps=2000),
    "gpu": PretrainRecipe(preset="student", steps=3000, batch_size=64, n_docs=400_000),
}


def model_config(recipe: PretrainRecipe, tok: Tokenizer, **overrides: Any) -> ModelConfig:
    """The preset with the tokenizer's exact vocabulary (so the model can never emit an id the
    tokenizer does not have, and sampled log-probs are over real tokens only) and the recipe's
    init std."""
    return ModelConfig.preset(recipe.preset, **{"vocab_size": tok.vocab_size,
                                                "init_std": recipe.init_std, **overrides})


def pretrain(out: str | Path, recipe: PretrainRecipe | None = None,
             corpus: CorpusConfig | None = None, seed: int = 0, resume: bool = False,
             progress: bool = True, on_log: Callable[[dict[str, float]], None] | None = None,
             eval_fn: Callable[[Transformer], dict[str, float]] | None = None,
             **model_overrides: Any) -> Trainer:
    """Pre-train a base model on the R1-Zero-ready corpus;
    saves ``out/checkpoint`` and ``out/eval.json``.

    Returns the trainer: ``trainer.history`` holds the metric rows (with the periodic held-out
    checks of ``heldout_eval``, or of ``eval_fn`` where given) and ``trainer.results`` the final
    evaluation, ``{mode: [EvalResult, ...]}``.

    ``init_std``: V3 initialises with std 0.006 at width 7168. At width 128 that is a much smaller
    relative scale, and the attention heads that look up the question's digits form far later
    (lesson 02 saw the same on its copy task), so the small presets start from 0.02.
    """
    recipe = recipe or PRETRAIN_RECIPES[profile.current()]
    corpus = corpus or CorpusConfig()
    tok = Tokenizer()
    torch.manual_seed(seed)
    model = Transformer(model_config(recipe, tok, **model_overrides))
    tokens, learned = pack_documents(tok, corpus_documents(corpus, recipe.n_docs, seed=seed))
    stream = PackedStream(tokens, recipe.batch_size, recipe.seq_len, seed=seed, learned=learned)
    cfg = TrainConfig(steps=recipe.steps, batch_size=recipe.batch_size, seq_len=recipe.seq_len,
                      lr=recipe.lr, warmup_steps=recipe.warmup_steps,
                      log_every=max(1, recipe.steps // 50), eval_every=recipe.eval_every,
                      compile=recipe.compile, seed=seed)
    check = eval_fn or (heldout_eval(tok, corpus, recipe.batch_size, recipe.seq_len, seed)
                        if recipe.eval_every else None)
    trainer = Trainer(model, stream, cfg, out_dir=out, tokenizer=tok, eval_fn=check,
                      progress=progress, on_log=on_log)
    trainer.fit(resume=resume)
    if recipe.eval_n:
        def final_evaluation() -> dict[str, Any]:
            results = run_evaluation(trainer.model, tok, recipe.eval_n, template=corpus.template)
            write_summary(Path(out) / "eval.json", results)
            if progress:
                print(accuracy_table(results))
            return results

        # under torchrun rank 0 evaluates (``model`` is whole after fit)
        trainer.results = on_main(final_evaluation, trainer.parallel)
    return trainer


__all__ = ["DEMO_RECIPE", "PRETRAIN_RECIPES", "STUDENT_RECIPES", "PretrainRecipe", "model_config",
           "pretrain"]
