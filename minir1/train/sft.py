"""Supervised fine-tuning on completions: prompt masked, samples packed but isolated (V3 §5.1).

The R1 pipeline fine-tunes twice, on the cold-start traces (Dev1) and on the rejection-sampled ones
(Dev3, restarting from the base), and distillation fine-tunes the student on the teacher's traces
(R1 §2.3.1, §2.3.3, §2.4). All three are ``sft_model``; ``sft_steps_for`` turns epochs into steps.
"""

from __future__ import annotations

from pathlib import Path

from minir1.data.datasets import Document, SFTStream, sft_samples
from minir1.data.tokenizer import Tokenizer
from minir1.model.transformer import Transformer
from minir1.train.checkpoint import load_model
from minir1.train.loop import TrainConfig, Trainer


def sft_model(model: Transformer, tok: Tokenizer, docs: list[Document], out: str | Path | None,
              steps: int, batch_size: int = 16, seq_len: int = 256, lr: float = 1e-3, seed: int = 0,
              progress: bool = True) -> Trainer:
    """Fine-tune ``model`` in place on ``docs``: loss on completions only, packed samples isolated
    from each other (V3 §5.1 sample masking), cosine decay to a tenth of ``lr`` (R1's SFT: 5e-5 ->
    5e-6). Saves ``out/checkpoint`` (``out=None``: nothing is written)."""
    stream = SFTStream(sft_samples(tok, docs), batch_size, seq_len, seed=seed, pad_id=tok.pad_id)
    # even a short run must not start at peak
    warmup = min(20, max(1, steps // 10)) if steps > 1 else 0
    cfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr,
                      warmup_steps=warmup, log_every=max(1, steps // 50), seed=seed)
    trainer = Trainer(model, stream, cfg, out_dir=out, tokenizer=tok, progress=progress)
    trainer.fit()
    return trainer


def sft(init: str | Path, out: str | Path, docs: list[Document], steps: int, batch_size: int = 16,
        seq_len: int = 256, lr: float = 1e-3, seed: int = 0, progress: bool = True) -> Trainer:
    """Fine-tune the checkpoint at ``init`` on ``docs`` (``sft_model``);
    saves ``out/checkpoint``."""
    model, tok, _ = load_model(init)
    return sft_model(model, tok, docs, out, steps, batch_size, seq_len, lr, seed, progress)


def sft_steps_for(docs: list[Document], tok: Tokenizer, epochs: float, batch_size: int,
                  seq_len: int = 256) -> int:
    """Optimiser steps for ``epochs`` passes over ``docs`` packed
    ``batch_size`` rows of ``seq_len``."""
    tokens = sum(len(tok.encode(d.prompt)) + len(tok.encode(d.completion)) + 2 for d in docs)
    # packing leaves ~10% of each row empty
    return max(1, round(epochs * tokens / (batch_size * seq_len * 0.9)))


__all__ = ["sft", "sft_model", "sft_steps_for"]
