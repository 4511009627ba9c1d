"""Does FP8 training track FP32? The measurement of V3 Appendix B.1 (Fig. 10), in miniature.

``loss_curve(recipe, ...)`` trains the tiny model from one seed on one fixed stream with a given FP8 recipe
(``"off"`` is the fp32 baseline) and returns the per-step main loss; ``relative_gap`` compares two curves the
way the paper plots them, after an EMA with coefficient 0.9. DeepSeek report the FP8 loss within 0.25% of
BF16 over ~1T tokens at 16B and 230B parameters.

``inject_activation_outliers`` reproduces the problem fine-grained scaling exists for: a few channels whose
activations are orders of magnitude larger than the rest (as LLMs develop; V3 §3.3.2 cites them). It scales
those channels of every pre-attention and pre-FFN RMSNorm weight, identically for every recipe, so one
per-tensor scale must cover both the outliers and everything else.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from minir1.data.datasets import CorpusConfig, PackedStream, corpus_documents, pack_documents
from minir1.data.tokenizer import Tokenizer
from minir1.fp8.linear import convert_to_fp8
from minir1.model.transformer import Transformer
from minir1.train.loop import TrainConfig, Trainer
from minir1.train.pretrain import RECIPES, model_config


@dataclass
class Curve:
    recipe: str
    losses: list[float]  # main next-token loss per step
    seconds: float  # wall time of the training steps


def ema(values: Sequence[float], coef: float = 0.9) -> list[float]:
    """Exponential moving average, ``s_t = coef * s_{t-1} + (1 - coef) * v_t`` (the paper's smoothing, 0.9)."""
    out, s = [], values[0]
    for v in values:
        s = coef * s + (1 - coef) * v
        out.append(s)
    return out


def relative_gap(curve: Sequence[float], baseline: Sequence[float], last: int = 1) -> float:
    """(EMA(curve) - EMA(baseline)) / EMA(baseline), averaged over the ``last`` steps."""
    a, b = ema(curve)[-last:], ema(baseline)[-last:]
    return sum((x - y) / y for x, y in zip(a, b, strict=True)) / len(a)


def inject_activation_outliers(model: Transformer, scale: float, channels: Sequence[int] = (3, 77)) -> None:
    """Multiply ``channels`` of every attention and FFN input norm by ``scale`` (in place)."""
    with torch.no_grad():
        for layer in model.layers:
            for norm in (layer.attn_norm, layer.ffn_norm):
                norm.weight[list(channels)] *= scale


def loss_curve(recipe: str, steps: int, batch_size: int = 16, seq_len: int = 128, outliers: float = 0.0,
               seed: int = 0, lr: float = 3e-3) -> Curve:
    """Train the ``cpu`` recipe's tiny model for ``steps`` with ``recipe`` ("off", "deepseek", "tensorwise")."""
    tok = Tokenizer()
    tokens, learned = pack_documents(tok, corpus_documents(CorpusConfig(), max(2000, steps * batch_size), seed=seed))
    stream = PackedStream(tokens, batch_size, seq_len, seed=seed, learned=learned)
    torch.manual_seed(seed)
    model = Transformer(model_config(RECIPES["cpu"], tok))
    if outliers:
        inject_activation_outliers(model, outliers)
    convert_to_fp8(model, recipe)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr, warmup_steps=min(50, steps // 10),
                      log_every=steps, seed=seed)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, tok, stream, cfg, out, progress=False)
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        losses = [trainer.train_step()["lm_loss"] for _ in range(steps)]
        seconds = time.perf_counter() - t0
    return Curve(recipe, losses, seconds)


__all__ = ["Curve", "ema", "inject_activation_outliers", "loss_curve", "relative_gap"]
