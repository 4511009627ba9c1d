"""Expert parallelism: each rank holds some of the routed experts, and tokens travel to them
(V3 §3.2.2).

The MoE already computes in three steps, ``permute`` -> ``RoutedExperts`` -> ``unpermute``.
``ExpertParallel`` takes the middle step's place on every rank of an expert-parallel (EP) group of
``ep`` ranks; rank ``p`` holds experts ``p * L ... (p + 1) * L - 1`` with ``L = N_r / ep``:

1. **counts all-to-all**: every rank tells every other how many of its sorted token copies go to
   each of that rank's experts (``x_sorted`` is ordered by global expert, so the copies for rank
   ``p`` are one contiguous slice);
2. **dispatch all-to-all**: the slices themselves; what arrives is rank-major
   (source 0's copies for each local expert, then source 1's, ...);
3. the local experts, each once on all the copies it received (expert-major), and back;
4. **combine all-to-all**: the results return to the ranks the tokens came from, in ``x_sorted``'s
   order, so ``unpermute`` weights and sums them exactly as in one process. The MoE's shared
   experts need no token from elsewhere, so they run while the combine is in flight
   (``forward_with``; in the backward, while the gradients travel back), as V3 hides its
   all-to-alls behind computation (§3.2.1, DualPipe, goes further and overlaps two micro-batches).

Both token all-to-alls are differentiable (``AllToAll``): the backward of sending rows by splits is
sending their gradients back by the swapped splits. Every rank calls every collective each step,
even with nothing to send, and every local expert runs even on zero rows, so no rank waits for a
collective another skipped and every expert has a gradient.

Node-limited routing (V3 §2.1.2) is simulated by letting the gate's expert groups play nodes:
with ``ep`` ranks and ``n_expert_groups`` groups, a "node" is ``ep / n_expert_groups`` consecutive
ranks (or a single rank, when each rank holds whole groups). ``ExpertParallel.traffic`` counts the
rows each dispatch sends to itself, within its node and across nodes: what NVLink and InfiniBand
would carry (the combine sends the same rows back).

Stored under their global indices (``experts.{i}.w1.weight``), one rank's experts are its slice of
the single-process state dict: the checkpoints of all ranks together hold every expert once per
replica, and a single process loads them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from minir1.model.moe import RoutedExperts, moe_layers


class AllToAll(torch.autograd.Function):
    """``all_to_all_single`` with uneven splits, differentiable: backward sends the gradients back.

    ``x``'s first ``send[p]`` rows go to rank ``p`` of ``group``; the result stacks the
    ``recv[p]`` rows from each rank ``p``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, recv: list[int], send: list[int],  # type: ignore[override]
                group: dist.ProcessGroup | None) -> torch.Tensor:
        ctx.recv, ctx.send, ctx.group = recv, send, group
        return _all_to_all(x, recv, send, group)[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor,  # type: ignore[override]
                 ) -> tuple[torch.Tensor, None, None, None]:
        return _all_to_all(grad, ctx.send, ctx.recv, ctx.group)[0], None, None, None


def _all_to_all(x: torch.Tensor, recv: list[int], send: list[int],
                group: dist.ProcessGroup | None, wait: bool = True,
                ) -> tuple[torch.Tensor, dist.Work | None]:
    out = x.new_empty(sum(recv), *x.shape[1:])
    work = dist.all_to_all_single(out, x.contiguous(), recv, send, group=group,
                                  async_op=not wait)
    return out, work


class InFlight:
    """An all-to-all started and not yet waited for, shared by its ``Start`` and ``Wait`` nodes
    (in the forward, then the backward)."""

    work: dist.Work | None = None
    grad: torch.Tensor | None = None


class StartAllToAll(torch.autograd.Function):
    """``AllToAll`` in two halves, so that work can run while the rows travel: ``Start`` sends and
    returns the (not yet filled) receive buffer, ``WaitAllToAll`` waits for it. In the backward
    the wait's node starts the gradients' trip back and this node waits for it; what autograd
    runs between the two (the shared experts' backward) overlaps it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, recv: list[int], send: list[int],  # type: ignore[override]
                group: dist.ProcessGroup | None, flight: InFlight) -> torch.Tensor:
        ctx.flight = flight
        out, flight.work = _all_to_all(x, recv, send, group, wait=False)
        return out

    @staticmethod
    def backward(ctx, _grad: torch.Tensor,  # type: ignore[override]
                 ) -> tuple[torch.Tensor | None, None, None, None, None]:
        flight = ctx.flight
        assert flight.work is not None
        flight.work.wait()
        return flight.grad, None, None, None, None


class WaitAllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, buffer: torch.Tensor, recv: list[int],  # type: ignore[override]
                send: list[int], group: dist.ProcessGroup | None,
                flight: InFlight) -> torch.Tensor:
        ctx.recv, ctx.send, ctx.group, ctx.flight = recv, send, group, flight
        assert flight.work is not None
        flight.work.wait()
        flight.work = None  # its buffers can go
        return buffer.view_as(buffer)

    @staticmethod
    def backward(ctx, grad: torch.Tensor,  # type: ignore[override]
                 ) -> tuple[torch.Tensor, None, None, None, None]:
        flight = ctx.flight
        flight.grad, flight.work = _all_to_all(grad, ctx.send, ctx.recv, ctx.group, wait=False)
        return grad, None, None, None, None  # StartAllToAll ignores it: the trip carries it


@dataclass
class Traffic:
    """Token copies one rank's dispatch all-to-alls sent, by where they went (rows of ``dim``
    values; ``bytes`` at ``row_bytes`` each). The combine returns the same rows."""

    local: int = 0  # to its own experts: no wire
    node: int = 0  # to another rank of its simulated node (NVLink on V3's cluster)
    cross: int = 0  # to a rank of another node (InfiniBand)
    row_bytes: int = 0
    to_rank: list[int] = field(default_factory=list)  # rows sent to each rank of the EP group

    def add(self, send: list[int], rank: int, ranks_per_node: int, row_bytes: int) -> None:
        if len(self.to_rank) != len(send):
            self.to_rank = [0] * len(send)
        self.to_rank = [a + b for a, b in zip(self.to_rank, send, strict=True)]
        for dst, rows in enumerate(send):
            if dst == rank:
                self.local += rows
            elif dst // ranks_per_node == rank // ranks_per_node:
                self.node += rows
            else:
                self.cross += rows
        self.row_bytes = row_bytes

    def bytes(self, where: str) -> int:
        return getattr(self, where) * self.row_bytes


class ExpertParallel(nn.ModuleDict):
    """One rank's share of a MoE's ``RoutedExperts``, under their global indices, and the
    all-to-alls that bring every rank's token copies to them and the results back."""

    def __init__(self, experts: RoutedExperts, group: dist.ProcessGroup | None = None,
                 ranks_per_node: int = 1) -> None:
        ep, rank = dist.get_world_size(group), dist.get_rank(group)
        n = len(experts)
        if n % ep:
            raise ValueError(f"ep={ep} must divide n_routed_experts={n}: each rank of an "
                             "expert-parallel group holds the same number of experts")
        per_rank = n // ep
        local = range(rank * per_rank, (rank + 1) * per_rank)
        super().__init__({str(i): experts[i] for i in local})
        self.n_experts, self.ep, self.group = n, ep, group
        self.first = local.start  # global index of this rank's first expert
        self.rank, self.ranks_per_node = rank, ranks_per_node
        self.traffic = Traffic()  # accumulated over forwards until reset (``Traffic()``)
        self.overlap = True  # the shared experts run while the combine travels (forward_with)

    def forward(self, x_sorted: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Same contract as ``RoutedExperts.forward``: rows sorted by global expert, ``counts``
        (n_routed_experts,) of this rank's rows -> each row through its expert, same order."""
        y_recv, send, recv = self._to_experts(x_sorted, counts)
        # 4. combine: the results back to where their tokens came from
        return AllToAll.apply(y_recv, send, recv, self.group)

    def forward_with(self, x_sorted: torch.Tensor, counts: torch.Tensor,
                     also: Callable[[], torch.Tensor | None],
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``forward``, with ``also()`` (the shared experts) computed while the combine
        all-to-all is in flight, and their backward while its gradients travel back."""
        if not self.overlap:
            return self(x_sorted, counts), also()
        y_recv, send, recv = self._to_experts(x_sorted, counts)
        flight = InFlight()
        buffer = StartAllToAll.apply(y_recv, send, recv, self.group, flight)
        common = also()
        return WaitAllToAll.apply(buffer, send, recv, self.group, flight), common

    def _to_experts(self, x_sorted: torch.Tensor, counts: torch.Tensor,
                    ) -> tuple[torch.Tensor, list[int], list[int]]:
        """Steps 1-3: the rows through their experts on the ranks that hold them; returns the
        results (rank-major) and the combine's splits."""
        ep, per_rank = self.ep, len(self)
        # 1. counts[p * L + l] rows go to expert l of rank p; received[q * L + l] come from rank q
        received = torch.empty_like(counts)
        dist.all_to_all_single(received, counts.contiguous(), group=self.group)
        # the split sizes must be Python ints: on a GPU this is a device-to-host sync
        send = counts.view(ep, per_rank).sum(1).tolist()
        by_source = received.view(ep, per_rank)  # [source rank, local expert]
        recv = by_source.sum(1).tolist()
        self.traffic.add(send, self.rank, self.ranks_per_node,
                         x_sorted.shape[1] * x_sorted.element_size())
        # 2. dispatch: the copies to the ranks that hold their experts (arrive rank-major)
        x_recv = AllToAll.apply(x_sorted, recv, send, self.group)
        # 3. each local expert once on everything it received, results back in rank-major order
        y_recv = self._local_experts(x_recv, by_source.flatten().tolist())
        return y_recv, send, recv

    def _local_experts(self, x_recv: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ep, per_rank = self.ep, len(self)
        chunks = x_recv.split(sizes)  # (source, expert) order
        out: list[torch.Tensor] = [x_recv[:0]] * len(chunks)
        for local, expert in enumerate(self.values()):
            mine = [chunks[src * per_rank + local] for src in range(ep)]
            y = expert(torch.cat(mine))  # also on zero rows: the expert stays in the graph
            for src, part in enumerate(y.split([c.shape[0] for c in mine])):
                out[src * per_rank + local] = part
        return torch.cat(out)

    def extra_repr(self) -> str:
        return (f"experts {self.first}..{self.first + len(self) - 1} of {self.n_experts}, "
                f"ep={self.ep}")


def apply_expert_parallel(model: nn.Module, group: dist.ProcessGroup | None = None) -> nn.Module:
    """Keep only this rank's experts in every MoE of ``model`` (in place), dispatched over
    ``group``; the model must hold every expert (same weights on every rank) when called."""
    ep = dist.get_world_size(group)
    for moe in moe_layers(model):
        if not isinstance(moe.experts, RoutedExperts):
            raise TypeError(f"apply_expert_parallel: experts already parallel ({moe.experts!r})")
        moe.experts = ExpertParallel(moe.experts, group, ranks_per_node(ep, moe.gate.n_groups))
    return model


def ranks_per_node(ep: int, n_expert_groups: int) -> int:
    """Ranks of one simulated node: the ranks holding one expert group (at least one rank)."""
    return max(1, ep // max(1, n_expert_groups))


__all__ = ["AllToAll", "ExpertParallel", "InFlight", "StartAllToAll", "Traffic", "WaitAllToAll",
           "apply_expert_parallel", "ranks_per_node"]
