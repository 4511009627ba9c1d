"""The checks a training run makes on held-out data while it trains.

* ``heldout_eval``: what pretraining logs every ``eval_every`` steps: the loss on test-split
  documents (never trained on) and greedy accuracy, direct and reasoned, at levels 1-2.
* ``heldout_metrics``: what RL logs at its checks: greedy accuracy, the reasoning rate, the format
  rate, the mean response length (R1 Fig. 2-3) and the self-check statistics (the miniature of
  R1-Zero's reflection).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from minir1.data.checks import has_check
from minir1.data.datasets import CorpusConfig, PackedStream, corpus_documents, pack_documents
from minir1.data.testsets import evaluation_problems
from minir1.data.tokenizer import Tokenizer
from minir1.eval.greedy import EvalResult, evaluate
from minir1.model.transformer import Transformer


def heldout_eval(tok: Tokenizer, corpus: CorpusConfig, batch_size: int, seq_len: int, seed: int = 0,
                 n_batches: int = 4,
                 n_problems: int = 8) -> Callable[[Transformer], dict[str, float]]:
    """The periodic check ``Trainer`` runs while pretraining: the loss on ``n_batches`` batches of
    test-split documents and greedy accuracy, direct and reasoned, on ``n_problems`` held-out
    problems per task at levels 1-2."""
    docs = corpus_documents(corpus, 50 * n_batches * batch_size // 8 + 50, seed=seed, split="test")
    tokens, learned = pack_documents(tok, docs)
    val = PackedStream(tokens, batch_size, seq_len, seed=seed + 1, learned=learned)
    batches = [val.batch(i) for i in range(n_batches)]
    problems = evaluation_problems(n_problems, levels=(1, 2))

    @torch.no_grad()
    def check(model: Transformer) -> dict[str, float]:
        model.eval()
        device = next(model.parameters()).device
        losses = [model(b["tokens"].to(device), targets=b["targets"].to(device)).lm_loss.item()
                  for b in batches]
        row = {"val_loss": sum(losses) / len(losses)}
        for mode in ("direct", "reason"):
            res = evaluate(model, tok, problems, mode, template=corpus.template)
            row[f"{mode}_acc"] = sum(r.correct for r in res) / len(res)
        return row

    return check


def heldout_metrics(results: list[EvalResult], tok: Tokenizer) -> dict[str, float | None]:
    """Accuracy, reasoning rate, mean completion length (tokens) and self-check statistics of greedy
    results. The accuracies of checked and of reasoned-but-unchecked completions are None when there
    are none."""
    n = len(results)
    checked = [r for r in results if has_check(r.completion)]
    unchecked = [r for r in results if r.reasoned and not has_check(r.completion)]

    def rate(rs: list[EvalResult]) -> float | None:
        return sum(r.correct for r in rs) / len(rs) if rs else None

    return {"heldout_accuracy": rate(results),
            "heldout_reasoning": sum(r.reasoned for r in results) / n,
            "heldout_format": sum(r.well_formed for r in results) / n,
            "heldout_length": sum(len(tok.encode(r.completion)) for r in results) / n,
            "heldout_check_rate": len(checked) / n,
            "heldout_checked_accuracy": rate(checked),
            "heldout_unchecked_accuracy": rate(unchecked)}


__all__ = ["heldout_eval", "heldout_metrics"]
