"""Training throughput of a preset on the pretraining stream: tokens per second over timed optimiser
steps.

    python benchmarks/throughput.py [--preset tiny] [--steps 20] [--batch 32] [--seq 256]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from minir1.data.datasets import CorpusConfig, PackedStream, corpus_documents, pack_documents
from minir1.data.tokenizer import Tokenizer
from minir1.model.params import count_params, train_flops_per_token
from minir1.model.transformer import Transformer
from minir1.train.loop import TrainConfig, Trainer
from minir1.train.pretrain import PRETRAIN_RECIPES, model_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=256)
    args = parser.parse_args()
    tok = Tokenizer()
    recipe = replace(PRETRAIN_RECIPES["cpu"], preset=args.preset)
    cfg = model_config(recipe, tok)
    tokens, learned = pack_documents(tok, corpus_documents(CorpusConfig(), 3000, seed=0))
    stream = PackedStream(tokens, args.batch, args.seq, learned=learned)
    trainer = Trainer(Transformer(cfg), stream, TrainConfig(steps=args.steps + args.warmup,
                      batch_size=args.batch, seq_len=args.seq), progress=False)
    for _ in range(args.warmup):
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    seconds = time.perf_counter() - start
    per_step = args.batch * args.seq
    flops = train_flops_per_token(cfg, args.seq)
    print(f"{args.preset}: {count_params(cfg).total:,} parameters, "
          f"batch {args.batch} x {args.seq}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {trainer.device}")
    print(f"training throughput: {args.steps * per_step / seconds:,.0f} tokens/s "
          f"({seconds / args.steps * 1e3:.0f} ms/step, "
          f"{flops * args.steps * per_step / seconds / 1e9:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
