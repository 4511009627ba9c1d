"""Pipeline parallelism run for real: the schedules of ``minir1.plan.schedule`` executed on
processes, one rank per device, the activations and their gradients sent between them (V3 §3.2.1).

``minir1.plan.schedule`` decides *what* each rank runs and in which order (1F1B, ZB1P, DualPipe,
DualPipeV) and times it on paper. ``Pipeline`` runs exactly those orders on a process group:

- **F** of micro-batch ``i`` on stage ``s``: take the input (the micro-batch itself on stage 0,
  else the activation stage ``s - 1`` sent), run the stage, send the output to the rank of stage
  ``s + 1``; the last stage computes the micro-batch's loss instead.
- **B**: take the gradient of the output from the rank of stage ``s + 1`` (the loss on the last
  stage), backpropagate through the stage, send the input's gradient to the rank of stage ``s - 1``.
- A **split** B (zero bubble) computes the input's gradient only and leaves the weights' to its
  **W**, which runs later in the order. Here W walks the stage's graph a second time; the DualPipe
  repository instead queues the weight GEMMs themselves (its ``WeightGradStore``), which is where
  the time saving comes from. What this module proves is the order and the arithmetic; the time is
  the simulator's.
- An overlapped **F&B** slot runs its forward, then its backward: overlapping them pays off only
  when each hides the other's all-to-all on a GPU (V3 Figure 4), which CPU processes cannot show.

DualPipe puts stages ``r`` and ``PP-1-r`` on rank ``r`` (V3 Figure 5) and feeds half of the
micro-batches in at each end, so every stage lives on two ranks ("2x" parameters in V3 Table 2)
and the two copies' gradients are summed between the mirrored ranks at the end of the step, as the
DualPipe repository's example does. DualPipeV holds the same two stages per rank on PP/2 ranks,
each stage once. Sends are non-blocking and every message carries a tag naming its chunk, so a
rank takes its inputs in its own order whatever order they arrive in.

``split_transformer`` cuts a ``Transformer`` into stages (the embedding on the first, the final
norm and head on the last); ``python -m minir1.dist.pipeline`` runs one step of a schedule under
torchrun and checks the loss and every gradient against one process::

    python -m torch.distributed.run --standalone --nproc_per_node=4 \\
        -m minir1.dist.pipeline --schedule DualPipe --pp 4 --micro-batches 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from minir1.config import ModelConfig
from minir1.dist.inspect import global_batch
from minir1.model.transformer import Transformer, next_token_loss
from minir1.plan.schedule import SCHEDULES, Op, n_ranks, orders, rank_of, stages_on

KINDS = ("F", "B")  # the chunks that send: F its output, B its input's gradient


def micro_batch_index(schedule: str, pp: int, micro_batches: int, op: Op) -> int:
    """Which of the step's micro-batches ``op`` works on: DualPipe's reverse direction takes the
    second half."""
    return op.mb + (micro_batches // 2 if schedule == "DualPipe" and op.direction else 0)


@dataclass
class _Chunk:
    """What an F leaves for its B and W: the stage's input and output (or loss)."""

    input: torch.Tensor
    output: torch.Tensor
    grad: torch.Tensor | None = None  # the output's gradient, kept for a deferred W


class Pipeline:
    """One rank of a pipeline: runs its order of ``schedule`` over ``stages`` (this rank's, by
    stage index) and the process group ``group``, one training step per ``step`` call.

    ``loss_fn(output_of_last_stage, target)`` is a micro-batch's loss; the step backpropagates
    their mean, so the gradients equal one process's on the concatenated micro-batches.
    ``shape`` and ``dtype`` describe the activation passed between stages.
    """

    def __init__(self, stages: Mapping[int, nn.Module], schedule: str, pp: int,
                 micro_batches: int, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 shape: Sequence[int], dtype: torch.dtype = torch.float32,
                 group: dist.ProcessGroup | None = None) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule={schedule!r} must be one of {', '.join(SCHEDULES)}")
        self.group = group
        self.rank, world = dist.get_rank(group), dist.get_world_size(group)
        if world != n_ranks(schedule, pp):
            raise ValueError(f"the process group has {world} ranks; {schedule} with pp={pp} "
                             f"runs on {n_ranks(schedule, pp)}")
        want = stages_on(schedule, pp, self.rank)
        if tuple(sorted(stages)) != want:
            raise ValueError(f"rank {self.rank} was given stages {sorted(stages)}; under "
                             f"{schedule} it holds stages {list(want)}")
        self.schedule, self.pp, self.micro_batches = schedule, pp, micro_batches
        self.order = orders(schedule, pp, micro_batches)[self.rank]  # validates pp, micro-batches
        self.stages, self.loss_fn = dict(stages), loss_fn
        self.shape, self.dtype = tuple(shape), dtype

    # ------------------------------------------------------------------ messages
    def _tag(self, kind: str, op: Op) -> int:
        """A number unique to the message ``kind`` of ``op``'s chunk within a step."""
        chunk = (op.direction * self.pp + op.stage) * self.micro_batches + op.mb
        return KINDS.index(kind) * 2 * self.pp * self.micro_batches + chunk

    def _global(self, rank: int) -> int:
        return rank if self.group is None else dist.get_global_rank(self.group, rank)

    def _peer(self, op: Op, stage: int) -> int:
        return self._global(rank_of(self.schedule, self.pp, stage, op.direction))

    def _send(self, kind: str, op: Op, to_stage: int, x: torch.Tensor) -> None:
        if rank_of(self.schedule, self.pp, to_stage, op.direction) == self.rank:
            self._local[kind, op.mb, op.stage, op.direction] = x.detach()  # the V turns
            return
        self._sends.append(dist.isend(x.detach().contiguous(), self._peer(op, to_stage),
                                      group=self.group, tag=self._tag(kind, op)))

    def _recv(self, kind: str, op: Op, from_stage: int) -> torch.Tensor:
        sender = Op(op.kind, op.mb, from_stage, op.direction)
        key = (kind, sender.mb, sender.stage, sender.direction)
        if key in self._local:
            return self._local.pop(key)
        x = torch.empty(self.shape, dtype=self.dtype)
        dist.recv(x, self._peer(op, from_stage), group=self.group, tag=self._tag(kind, sender))
        return x

    # ------------------------------------------------------------------ chunks
    def _forward(self, op: Op, inputs: Sequence[torch.Tensor],
                 targets: Sequence[torch.Tensor]) -> None:
        i = micro_batch_index(self.schedule, self.pp, self.micro_batches, op)
        if op.stage == 0:
            x = inputs[i]
        else:
            x = self._recv("F", op, op.stage - 1).requires_grad_()
        y = self.stages[op.stage](x)
        if op.stage == self.pp - 1:
            loss = self.loss_fn(y, targets[i])
            self.losses[i] = loss.detach()
            y = loss / self.micro_batches  # the step's loss is the micro-batches' mean
        else:
            self._send("F", op, op.stage + 1, y)
        self._chunks[op.mb, op.stage, op.direction] = _Chunk(x, y)
        self._live += 1
        self.peak_activations = max(self.peak_activations, self._live)

    def _backward(self, op: Op) -> None:
        chunk = self._chunks[op.mb, op.stage, op.direction]
        if op.stage < self.pp - 1:
            chunk.grad = self._recv("B", op, op.stage + 1)
        wants_input = chunk.input.requires_grad
        self._live -= 1  # what a deferred W still reads is not counted, as in V3 Table 2
        if op.split:  # the input's gradient now, the weights' in the W
            if wants_input:
                (g,) = torch.autograd.grad(chunk.output, chunk.input, chunk.grad,
                                           retain_graph=True)
                self._send("B", op, op.stage - 1, g)
            return
        torch.autograd.backward(chunk.output, chunk.grad)
        if wants_input:
            self._send("B", op, op.stage - 1, chunk.input.grad)
        del self._chunks[op.mb, op.stage, op.direction]

    def _weights(self, op: Op) -> None:
        chunk = self._chunks.pop((op.mb, op.stage, op.direction))
        params = [p for p in self.stages[op.stage].parameters() if p.requires_grad]
        torch.autograd.backward(chunk.output, chunk.grad, inputs=params)

    # ------------------------------------------------------------------ the step
    def step(self, inputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
        """One training step over ``micro_batches`` micro-batches (every rank passes all of them
        and uses those its stages need); accumulates into the stages' ``.grad`` and returns the
        micro-batches' losses, the same tensor on every rank. ``peak_activations`` is then the
        most chunks this rank held between their F and their B (V3 Table 2's activation
        column, in chunks)."""
        if len(inputs) != self.micro_batches or len(targets) != self.micro_batches:
            raise ValueError(f"got {len(inputs)} inputs and {len(targets)} targets; the "
                             f"pipeline was built for micro_batches={self.micro_batches}")
        self._sends: list[dist.Work] = []
        self._local: dict[tuple, torch.Tensor] = {}
        self._chunks: dict[tuple[int, int, int], _Chunk] = {}
        self.losses = torch.zeros(self.micro_batches, dtype=torch.float64)
        self._live = self.peak_activations = 0  # chunks between their F and their B
        run = {"F": lambda o: self._forward(o, inputs, targets), "B": self._backward,
               "W": self._weights}
        for slot in self.order:
            for op in slot:  # an F&B slot: its F, then its B
                run[op.kind](op)
        for work in self._sends:
            work.wait()
        assert not self._chunks and not self._local, "every chunk ran its backward"
        if self.schedule == "DualPipe":
            self._sum_mirrored_gradients()
        dist.all_reduce(self.losses, group=self.group)  # each loss is on one rank, zero elsewhere
        return self.losses

    def _sum_mirrored_gradients(self) -> None:
        """DualPipe keeps each stage on two ranks, r and PP-1-r: each copy saw one direction's
        micro-batches, so the stage's gradient is the sum of the two (both ranks end equal). A
        parameter neither copy reached (an expert no token chose) keeps no gradient, as in one
        process, so the optimiser skips it there too."""
        params = [p for s in sorted(self.stages) for p in self.stages[s].parameters()
                  if p.requires_grad]
        mine = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                          for p in params]
                         + [torch.tensor([p.grad is not None for p in params], dtype=self.dtype)])
        theirs = torch.empty_like(mine)
        mirror = self._global(self.pp - 1 - self.rank)
        work = dist.isend(mine, mirror, group=self.group, tag=0)
        dist.recv(theirs, mirror, group=self.group, tag=0)
        work.wait()
        total = mine + theirs  # the same sum in the same order on both ranks
        *grads, reached = total.split([p.numel() for p in params] + [len(params)])
        for p, g, r in zip(params, grads, reached.tolist(), strict=True):
            p.grad = g.view_as(p).clone() if r else None


# --------------------------------------------------------------------------- a Transformer cut

class Stage(nn.Module):
    """Blocks ``first:last`` of a ``Transformer`` as one pipeline stage, sharing its parameters;
    the first stage embeds the tokens, the last applies the final norm and the head."""

    def __init__(self, model: Transformer, first: int, last: int, is_first: bool,
                 is_last: bool) -> None:
        super().__init__()
        self.rope = model.rope_tables  # the model's fp32 tables, not a copy
        self.embed = model.embed if is_first else None
        self.blocks = nn.ModuleList(model.layers[first:last])
        self.norm = model.norm if is_last else None
        self.head = model.head if is_last else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x)
        cos, sin = self.rope(x.device)
        cos, sin = cos[: x.shape[1]], sin[: x.shape[1]]
        for block in self.blocks:
            x, _ = block(x, cos, sin)
        if self.head is not None:
            x = self.head(self.norm(x))
        return x


def split_transformer(model: Transformer, pp: int) -> list[Stage]:
    """``model``'s layers cut into ``pp`` stages of as equal a size as the layers allow (the first
    ones one layer longer), the embedding on the first and the head on the last. The MTP modules
    are not placed: drop them first (``model.drop_mtp()``)."""
    n = len(model.layers)
    if not 2 <= pp <= n:
        raise ValueError(f"pp={pp} must be between 2 and the model's {n} layers: each stage "
                         "holds at least one layer")
    if len(model.mtp):
        raise ValueError("the model has MTP modules, which no stage places; call "
                         "model.drop_mtp() first")
    bounds = [0]
    for s in range(pp):
        bounds.append(bounds[-1] + n // pp + (s < n % pp))
    return [Stage(model, bounds[s], bounds[s + 1], s == 0, s == pp - 1) for s in range(pp)]


# --------------------------------------------------------------------------- the check

def build(pp: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Transformer:
    """The check's model: the ``tiny`` preset (MoE from layer 1) with one layer per stage at
    least, no MTP, no balance loss, the same weights on every rank."""
    cfg = ModelConfig.preset("tiny", n_layers=max(4, pp), n_mtp_modules=0, balance_alpha=0.0,
                             max_seq_len=64, original_seq_len=64)
    torch.manual_seed(seed)
    return Transformer(cfg).to(dtype)


def micro_batches_of(vocab_size: int, micro_batches: int, rows: int, seq_len: int,
                     seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``inspect``'s fixed random batch cut into micro-batches of ``rows``: (inputs, targets)."""
    batch = global_batch(vocab_size, micro_batches * rows, seq_len, seed)
    return list(batch["tokens"].split(rows)), list(batch["targets"].split(rows))


def one_process_gradients(model: Transformer, inputs: Sequence[torch.Tensor],
                          targets: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """The reference: the mean of the micro-batches' losses backpropagated in one process."""
    model.zero_grad(set_to_none=True)
    losses = torch.stack([model(x, y, mtp=False).lm_loss
                          for x, y in zip(inputs, targets, strict=True)])
    losses.mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return losses.detach().double(), grads


def check(schedule: str, pp: int, micro_batches: int, rows: int = 2, seq_len: int = 16,
          dtype: torch.dtype = torch.float32) -> dict:
    """One step of ``schedule`` on this process group against one process computing the same
    step: the losses, the largest relative gradient difference over this rank's parameters
    (reduced to the maximum over ranks) and what ran where."""
    rank = dist.get_rank()
    model = build(pp, dtype=dtype)
    inputs, targets = micro_batches_of(model.cfg.vocab_size, micro_batches, rows, seq_len)
    ref_losses, ref_grads = one_process_gradients(model, inputs, targets)

    stages = split_transformer(model, pp)
    mine = {s: stages[s] for s in stages_on(schedule, pp, rank)}
    pipe = Pipeline(mine, schedule, pp, micro_batches, next_token_loss,
                    (rows, seq_len, model.cfg.dim), dtype)
    t0 = time.perf_counter()
    losses = pipe.step(inputs, targets)
    seconds = time.perf_counter() - t0

    held = [(n, p) for n, p in model.named_parameters()
            if any(p is q for s in mine.values() for q in s.parameters())]
    # a gradient where one process has none, or none where it has one, is a mismatch too
    mismatched = sum((p.grad is None) != (n not in ref_grads) for n, p in held)
    diff = max([((p.grad - ref_grads[n]).norm() / ref_grads[n].norm().clamp_min(1e-30)).item()
                for n, p in held if p.grad is not None and n in ref_grads], default=0.0)
    stats = torch.tensor([diff, seconds, float(mismatched)], dtype=torch.float64)
    dist.all_reduce(stats, op=dist.ReduceOp.MAX)
    peaks = [torch.zeros((), dtype=torch.long) for _ in range(dist.get_world_size())]
    dist.all_gather(peaks, torch.tensor(pipe.peak_activations))
    return {"schedule": schedule, "pp": pp, "ranks": dist.get_world_size(),
            "micro_batches": micro_batches, "dtype": str(dtype).removeprefix("torch."),
            "stages_per_rank": [list(stages_on(schedule, pp, r))
                                for r in range(dist.get_world_size())],
            "chunks_per_rank": [sum(len(slot) for slot in o)
                                for o in orders(schedule, pp, micro_batches)],
            "loss": losses.mean().item(), "one_process_loss": ref_losses.mean().item(),
            "losses_equal": bool(torch.equal(losses, ref_losses)),
            "max_loss_diff": (losses - ref_losses).abs().max().item(),
            "max_grad_rel_diff": stats[0].item(), "grads_mismatched": int(stats[2].item()),
            "peak_activations_per_rank": [int(p) for p in peaks],
            "step_seconds": stats[1].item()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minir1.dist.pipeline", description=(
        "One step of a pipeline schedule under torchrun, checked against one process."))
    p.add_argument("--schedule", default="DualPipe", choices=SCHEDULES)
    p.add_argument("--pp", type=int, default=4, help="pipeline stages")
    p.add_argument("--micro-batches", type=int, default=8)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = p.parse_args(argv)
    dist.init_process_group("gloo")
    try:
        torch.set_num_threads(1)
        report = check(args.schedule, args.pp, args.micro_batches,
                       dtype=getattr(torch, args.dtype))
        if dist.get_rank() == 0:
            print(json.dumps(report))
    finally:
        dist.destroy_process_group()
    return 0


__all__ = ["Pipeline", "Stage", "check", "n_ranks", "rank_of",
           "split_transformer", "stages_on"]

if __name__ == "__main__":
    sys.exit(main())
