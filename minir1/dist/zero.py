"""ZeRO-1: whole weights and gradients on every rank, the optimiser state divided (V3 §3.2).

DeepSeek-V3 trained with ZeRO-1 data parallelism (§3.2; stage 1 of the ZeRO paper, Rajbhandari et
al. 2020): every data-parallel rank keeps the whole weights, computes gradients for its rows of the
batch, and owns the AdamW moments of only ``1 / world`` of the parameters. After backward the
gradients are **reduce-scattered**: each rank receives the sum over the ranks for the parameters
it owns, and nothing for the others. Each rank steps its own parameters, then the updated weights
are **all-gathered** so that every rank holds all of them again. The two collectives carry as
much as one ring all-reduce of the gradients (what plain data parallelism sends; NCCL's ring
all-reduce is exactly a reduce-scatter then an all-gather), so dividing the state costs no extra
traffic there; what ZeRO-1 does not divide is the weights and gradients themselves, which
full sharding (FSDP2, ``minir1.dist.data_parallel``) also divides, at the price of an all-gather
per block in forward and again in backward.

Here a rank owns whole parameters (assigned greedily, largest first, to the least loaded rank),
so AdamW sees exactly the tensors, gradients and step counts it sees in one process: a parameter
whose gradient is absent on every rank (an expert no token reached) keeps no gradient and is
skipped, as in one process. Each rank's parameters sit in one contiguous segment of a flat buffer,
padded to the longest segment, so that each collective is one call. Routed experts under expert
parallelism are left out: they differ between ranks (``finish_gradients`` sums their gradients
over their replicas, and every replica steps them). The flat buffers exist only during their
collective, so between steps a rank holds the whole weights, the gradients of what it owns and
the moments of what it owns: with ``world`` ranks about ``(1 + 3 / world)`` model-sized tensors in
place of AdamW's usual four (weights, gradients, two moments).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

# torch 2.13 renamed the flat collectives (the old names warn); torch 2.4 has only the old ones
_reduce_scatter = getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)
_all_gather = getattr(dist, "all_gather_single", dist.all_gather_into_tensor)
_ATTR = "_minir1_zero"  # where a model keeps its ZeroOne (as FSDP2 keeps its state on the module)


class ZeroOne:
    """The ZeRO-1 bookkeeping of one model over the ranks of ``group`` (None: every rank)."""

    def __init__(self, model: nn.Module, ignored: set[int] | None = None,
                 group: dist.ProcessGroup | None = None) -> None:
        self.group = group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        self.ignored = set(ignored or ())  # left out on purpose (expert-parallel experts)
        self.params = [p for p in model.parameters()
                       if p.requires_grad and id(p) not in self.ignored]
        if len({(p.dtype, p.device) for p in self.params}) > 1:
            raise ValueError("ZeroOne: every replicated parameter must have one dtype and device "
                             "(they share one flat buffer)")
        self.owner = owners([p.numel() for p in self.params], self.world)
        self._index = {id(p): i for i, p in enumerate(self.params)}
        loads = [0] * self.world
        self.offset = []  # where each parameter sits inside its owner's segment
        for p, r in zip(self.params, self.owner, strict=True):
            self.offset.append(loads[r])
            loads[r] += p.numel()
        self.segment = max(loads, default=0)  # every rank's segment padded to the longest
        # the flat buffers live only inside a collective: kept between steps, the whole-model
        # one would cost more memory than the optimiser state ZeRO-1 divides
        self._like = self.params[0] if self.params else torch.zeros(())

    @classmethod
    def of(cls, model: nn.Module) -> ZeroOne | None:
        """The ZeroOne ``attach`` gave ``model``, if any."""
        return getattr(model, _ATTR, None)

    def owns(self, p: nn.Parameter) -> bool:
        """Whether this rank keeps ``p``'s optimiser state: one it owns, or one left out on
        purpose (an expert, kept by every replica). A parameter frozen when the model was
        sharded belongs to nobody."""
        i = self._index.get(id(p))
        return id(p) in self.ignored if i is None else self.owner[i] == self.rank

    def _slot(self, i: int) -> slice:
        start = self.owner[i] * self.segment + self.offset[i]
        return slice(start, start + self.params[i].numel())

    @torch.no_grad()
    def reduce_gradients(self) -> None:
        """After backward: each owned parameter's gradient summed over the ranks; the others'
        dropped. A gradient absent on every rank stays absent (AdamW then skips the parameter)."""
        present = torch.tensor([p.grad is not None for p in self.params], dtype=torch.int32,
                               device=self._like.device)
        dist.all_reduce(present, group=self.group)
        flat = self._like.new_zeros(self.world * self.segment)  # the padding stays zero
        for i, p in enumerate(self.params):
            if p.grad is not None:
                flat[self._slot(i)].copy_(p.grad.reshape(-1))
                p.grad = None  # freed as it is copied: the peak stays one model's worth
        mine = self._like.new_empty(self.segment)  # this rank's summed gradients
        _reduce_scatter(mine, flat, group=self.group)  # a sum
        del flat
        for i, (p, any_grad) in enumerate(zip(self.params, present.tolist(), strict=True)):
            if self.owner[i] == self.rank and any_grad:
                p.grad = mine[self.offset[i]:self.offset[i] + p.numel()].view_as(p)

    @torch.no_grad()
    def gather_parameters(self) -> None:
        """After the optimiser step: every rank's updated parameters to every rank."""
        send = self._like.new_zeros(self.segment)
        for i, p in enumerate(self.params):
            if self.owner[i] == self.rank:
                send[self.offset[i]:self.offset[i] + p.numel()].copy_(p.reshape(-1))
        flat = self._like.new_empty(self.world * self.segment)
        _all_gather(flat, send, group=self.group)
        for i, p in enumerate(self.params):
            if self.owner[i] != self.rank:
                p.copy_(flat[self._slot(i)].view_as(p))

def owners(sizes: list[int], world: int) -> list[int]:
    """The rank that owns each parameter: largest first, each to the least loaded rank (ties to
    the lowest rank), so that the segments come out nearly equal."""
    loads = [0] * world
    owner = [0] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        r = min(range(world), key=lambda r: (loads[r], r))
        owner[i] = r
        loads[r] += sizes[i]
    return owner


def owns(model: nn.Module, p: nn.Parameter) -> bool:
    """Whether this rank keeps the optimiser state of ``model``'s parameter ``p`` (always, but
    under ZeRO-1)."""
    zero_one = ZeroOne.of(model)
    return zero_one is None or zero_one.owns(p)


def attach(model: nn.Module, ignored: set[int] | None = None,
           group: dist.ProcessGroup | None = None) -> nn.Module:
    """Give ``model`` ZeRO-1 over ``group`` (parameters whose ids are in ``ignored`` left out)."""
    setattr(model, _ATTR, ZeroOne(model, ignored, group))
    return model


__all__ = ["ZeroOne", "attach", "owners", "owns"]
