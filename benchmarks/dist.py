"""What spreading one training step over processes costs, and what the all-to-alls carry.

    python benchmarks/dist.py [--steps 16] [--warmup 3] [--repeats 3] [--batch 16] [--seq 256]

The same global batch and model (the ``tiny`` preset, the ``ci``/``cpu`` pre-training shape),
trained on this machine's cores:

* 1 process x ``--nproc`` threads (the baseline: torch parallelises each op);
* ``--nproc`` processes x 1 thread, each computing ``1 / nproc`` of the batch, with ZeRO-1
  (gradients reduce-scattered to the rank that owns each parameter's AdamW state, the updated
  weights all-gathered: the default) and with FSDP2 (weights all-gathered for each block's
  forward and backward, gradients reduce-scattered);
* each with expert parallelism too (EP = ``--nproc``): the MoE's dispatch and combine all-to-alls,
  with the shared experts overlapping the combine, and for ZeRO-1 also without (``no overlap``).

It prints tokens/s after ``--warmup`` steps (the global batch over the median step time) and the
communication overhead, 1 - (processes' tokens/s) / (threads' tokens/s): negative when the processes
are faster. A shared 2-core machine is noisy (the same launch measured 6,800 and 11,300 tokens/s in
two runs a minute apart), so every configuration runs ``--repeats`` times, interleaved with the
others, and the median of the repeats is reported with their range. For the EP run it prints the
rows each dispatch sent to other ranks per step against the formula for uniform routing: tokens x
K_r x (EP - 1) / EP copies of ``dim`` values per MoE layer, each way (V3 §3.2.2; the planner's
``minir1.plan.comm.a2a_rows``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
from minir1.plan.comm import a2a_rows
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
    timed = sorted(times[args.warmup:])
    result = {"tokens_per_s": args.batch * args.seq / timed[len(timed) // 2]}
    moes = [m for m in trainer.module.modules() if isinstance(m, ExpertParallel)]
    if moes:
        sent = sum(m.traffic.node + m.traffic.cross for m in moes)  # rows off this rank
        mc = model.cfg
        tokens = args.batch * args.seq // trainer.parallel.layout.world  # this rank's
        ep = trainer.parallel.layout.ep
        formula = len(moes) * a2a_rows(tokens, mc.n_activated_experts, ep)
        result |= {"rows_off_rank_per_step": sent / args.steps,
                   "formula_rows_per_step": formula,
                   "bytes_per_step": sent / args.steps * moes[0].traffic.row_bytes,
                   "moe_layers": len(moes), "top_k": mc.n_activated_experts, "dim": mc.dim}
    return result


def launch(args: argparse.Namespace, ep: int, dp: str, overlap: bool = True,
           nproc: int | None = None) -> list[dict]:
    """Every rank's result of a torchrun launch of ``args.nproc`` one-thread processes; with
    ``nproc=0`` the baseline instead: one process with ``args.nproc`` threads. Each in a fresh
    interpreter, so that this one sits idle (torch's OpenMP threads, left spinning in the parent
    after a measurement, took a quarter of a core from the launches that followed)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        common = [__file__, "--worker", str(out), "--ep", str(ep), "--steps", str(args.steps),
                  "--warmup", str(args.warmup), "--batch", str(args.batch), "--seq",
                  str(args.seq), "--dp", dp, *([] if overlap else ["--no-overlap"])]
        if nproc == 0:
            cmd = [sys.executable, *common, "--threads", str(args.nproc)]
            threads = args.nproc
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={args.nproc}", *common]
            threads = 1
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="runs of every configuration")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--ep", type=int, default=1)
    p.add_argument("--dp", default="zero1", help=argparse.SUPPRESS)
    p.add_argument("--no-overlap", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker and args.threads:  # the baseline: one process, several threads
        torch.set_num_threads(args.threads)
        Path(args.worker).write_text(json.dumps([measure(args)]))
        return
    if args.worker:  # a rank of a launch
        torch.set_num_threads(1)
        launch_ = parallel.init(args.ep, dp=args.dp)
        result = measure(args)
        per_rank: list = [None] * launch_.layout.world
        torch.distributed.all_gather_object(per_rank, result)
        if launch_.is_main:
            Path(args.worker).write_text(json.dumps(per_rank))
        parallel.shutdown()
        return
    runs = ((1, "zero1", "ZeRO-1", True), (args.nproc, "zero1", f"ZeRO-1 x EP{args.nproc}", True),
            (args.nproc, "zero1", "  no overlap", False), (1, "fsdp", "FSDP", True),
            (args.nproc, "fsdp", f"FSDP x EP{args.nproc}", True))
    threads: list[float] = []
    procs: list[list[float]] = [[] for _ in runs]
    ep_ranks = None
    for _ in range(args.repeats):  # interleaved, so that a slow spell hits every configuration
        threads.append(launch(args, 1, "zero1", nproc=0)[0]["tokens_per_s"])
        for i, (ep, dp, _name, overlap) in enumerate(runs):
            ranks = launch(args, ep, dp, overlap)
            procs[i].append(ranks[0]["tokens_per_s"])  # the global batch over the step time
            if ep > 1 and dp == "zero1" and overlap:
                ep_ranks = ranks
    print(f"global batch {args.batch} x {args.seq} tokens, tiny preset, {args.steps} steps "
          f"({args.warmup} warm-up), median of {args.repeats} runs (their range), "
          f"{os.cpu_count()} CPUs")
    base = statistics.median(threads)
    print(f"1 process x {args.nproc} threads:              {base:>8,.0f} tokens/s "
          f"({min(threads):,.0f}-{max(threads):,.0f})")
    for (_ep, _dp, name, _overlap), tps in zip(runs, procs, strict=True):
        mid = statistics.median(tps)
        print(f"{args.nproc} processes x 1 thread, {name + ':':<16}{mid:>8,.0f} tokens/s "
              f"({min(tps):,.0f}-{max(tps):,.0f}; overhead {1 - mid / base:+.1%})")
    for rank, r in enumerate(ep_ranks or []):
        print(f"  rank {rank}: dispatch sent {r['rows_off_rank_per_step']:,.0f} rows "
              f"off-rank per step ({r['bytes_per_step'] / 1e6:.2f} MB fp32, each way) "
              f"vs {r['formula_rows_per_step']:,.0f} for uniform routing "
              f"({r['moe_layers']} MoE layers x tokens x K_r={r['top_k']} x (EP-1)/EP)")

if __name__ == "__main__":
    main()
