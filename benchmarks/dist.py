"""What spreading one training step over processes costs, and what the all-to-alls carry.

    python benchmarks/dist.py [--steps 12] [--warmup 3] [--batch 16] [--seq 256]

The same global batch and model (the ``tiny`` preset, the ``ci``/``cpu`` pre-training shape),
trained three ways on this machine's cores:

* 1 process x ``--nproc`` threads (the baseline: torch parallelises each op);
* ``--nproc`` processes x 1 thread, FSDP2 (each rank computes ``1 / nproc`` of the batch, then
  all-gathers parameters and reduce-scatters gradients);
* the same with expert parallelism (EP = ``--nproc``): the MoE's dispatch and combine all-to-alls,
  with the shared experts overlapping the combine, and without (``no overlap``).

It prints tokens/s after ``--warmup`` steps and the communication overhead, 1 - (processes'
tokens/s) / (threads' tokens/s), and for the EP run the rows each dispatch sent to other ranks per
step against the formula for uniform routing: tokens x K_r x (EP - 1) / EP copies of ``dim``
values per MoE layer, each way (V3 §3.2.2; the planner's estimate).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from minir1 import ModelConfig, Transformer
from minir1.data.tokenizer import Tokenizer
from minir1.dist import parallel
from minir1.dist.expert_parallel import ExpertParallel
from minir1.train.loop import TrainConfig, Trainer


class RandomStream:
    """Fixed random batches (a pure function of the step), ``rows`` sequences of ``seq`` tokens."""

    def __init__(self, rows: int, seq: int, vocab: int) -> None:
        self.rows, self.seq, self.vocab = rows, seq, vocab

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(step)
        x = torch.randint(0, self.vocab, (self.rows, self.seq + 1), generator=g)
        return {"tokens": x[:, :-1], "targets": x[:, 1:]}


def measure(args: argparse.Namespace) -> dict:
    """Train ``steps`` steps in this process (a launch's rank, or alone); time the last ones."""
    tok = Tokenizer()
    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny", vocab_size=tok.vocab_size))
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch, seq_len=args.seq, warmup_steps=2,
                      device="cpu")
    trainer = Trainer(model, RandomStream(args.batch, args.seq, tok.vocab_size), cfg,
                      progress=False)
    for m in trainer.module.modules():
        if isinstance(m, ExpertParallel):
            m.overlap = not args.no_overlap
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    timed = times[args.warmup:]
    result = {"tokens_per_s": args.batch * args.seq * len(timed) / sum(timed)}
    moes = [m for m in trainer.module.modules() if isinstance(m, ExpertParallel)]
    if moes:
        sent = sum(m.traffic.node + m.traffic.cross for m in moes)  # rows off this rank
        mc = model.cfg
        tokens = args.batch * args.seq // trainer.parallel.layout.world  # this rank's
        ep = trainer.parallel.layout.ep
        formula = len(moes) * tokens * mc.n_activated_experts * (ep - 1) / ep
        result |= {"rows_off_rank_per_step": sent / args.steps,
                   "formula_rows_per_step": formula,
                   "bytes_per_step": sent / args.steps * moes[0].traffic.row_bytes,
                   "moe_layers": len(moes), "top_k": mc.n_activated_experts, "dim": mc.dim}
    return result


def launch(args: argparse.Namespace, ep: int, overlap: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={args.nproc}", __file__, "--worker", str(out), "--ep", str(ep),
               "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--batch", str(args.batch), "--seq", str(args.seq),
               *([] if overlap else ["--no-overlap"])]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--ep", type=int, default=1)
    p.add_argument("--no-overlap", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:  # a rank of a launch
        torch.set_num_threads(1)
        launch_ = parallel.init(args.ep)
        result = measure(args)
        per_rank: list = [None] * launch_.layout.world
        torch.distributed.all_gather_object(per_rank, result)
        if launch_.is_main:
            Path(args.worker).write_text(json.dumps(per_rank))
        parallel.shutdown()
        return
    torch.set_num_threads(args.nproc)
    base = measure(args)["tokens_per_s"]
    print(f"global batch {args.batch} x {args.seq} tokens, tiny preset, {args.steps} steps "
          f"({args.warmup} warm-up), {os.cpu_count()} CPUs")
    print(f"1 process x {args.nproc} threads:            {base:>8,.0f} tokens/s")
    runs = ((1, "FSDP", True), (args.nproc, f"FSDP x EP{args.nproc}", True),
            (args.nproc, "  no overlap", False))
    for ep, name, overlap in runs:
        ranks = launch(args, ep, overlap)
        tps = ranks[0]["tokens_per_s"]  # the global batch over the step time
        print(f"{args.nproc} processes x 1 thread, {name + ':':<14}{tps:>8,.0f} tokens/s "
              f"(overhead {1 - tps / base:+.1%})")
        if "rows_off_rank_per_step" in ranks[0] and overlap:
            for rank, r in enumerate(ranks):
                print(f"  rank {rank}: dispatch sent {r['rows_off_rank_per_step']:,.0f} rows "
                      f"off-rank per step ({r['bytes_per_step'] / 1e6:.2f} MB fp32, each way) "
                      f"vs {r['formula_rows_per_step']:,.0f} for uniform routing "
                      f"({r['moe_layers']} MoE layers x tokens x K_r={r['top_k']} x (EP-1)/EP)")


if __name__ == "__main__":
    main()
