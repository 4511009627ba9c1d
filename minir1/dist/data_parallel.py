"""Data parallelism, ZeRO-1 or FSDP2, beside expert parallelism (V3 §3.2).

Every rank takes ``1 / world`` of the global batch. ``apply_data_parallel`` spreads the model over
all ranks one of two ways:

* ``"zero1"`` (the default; ``minir1.dist.zero``): DeepSeek-V3's choice (§3.2). Every rank keeps
  the whole weights and gradients and owns the AdamW state of ``1 / world`` of the parameters;
  gradients are reduce-scattered to their owners after backward, and the updated weights
  all-gathered after the optimiser step: two collectives per step. V3 could afford whole weights
  because its 16-way pipeline had already cut them sixteen ways; at minir1's sizes they fit anyway.
* ``"fsdp"``: torch's FSDP2 (``fully_shard`` on each block, each MTP module and the rest), full
  sharding (ZeRO-3): weights, gradients and optimiser state stored as ``1 / world`` shards, a
  block's weights all-gathered for its forward and again for its backward, its gradients
  reduce-scattered. It is the layout that lets a model outgrow one device without a pipeline.

ZeRO-1 is the default because it is V3's and because it is the cheaper one where the weights fit:
one reduce-scatter and one all-gather of the model per step, against FSDP2's all-gather of every
block in forward and again in backward besides the reduce-scatter, its per-block hooks and an
optimiser step over sharded tensors. On the tiny preset, two one-thread processes on a 2-core CPU,
global batch 16 (``benchmarks/dist.py``, two runs, each the median of 3), ZeRO-1 trained at 97% and
112% of one two-thread process's tokens/s, FSDP2 at 88% and 80%. (The trainers also keep a whole
copy of the model on every rank beside what they train, to evaluate, sample and save from: right
for these sizes, and the first thing to drop for a big model.)

Gradients are **summed** over the ranks, never averaged: each rank's loss is already its share of
the global loss (a sum over its tokens divided by the global token count,
``minir1.train.loop.step_loss``), so the sum of the ranks' gradients is the one-process gradient,
whatever the topology and however unevenly the target tokens fall. FSDP's averaging is switched off
(a divide factor of 1, which also sidesteps gloo's reduce-scatter averaging, a known source of
silently scaled gradients).

Under expert parallelism the routed experts differ between ranks, so FSDP must leave them alone
(``ignored_params``); ``finish_gradients`` completes theirs. The combine all-to-all already brought
every rank of the EP group's contribution back to the expert's owner, so its gradient is the sum
over its EP group's tokens; summing it over the ``world / ep`` replicas of the expert (its edp
group) adds the rest. Dividing by ``ep`` or ``world`` here, or averaging, is the classic
"x EP expert gradients" bug in one direction or the other. ZeRO-1 leaves the experts alone in the
same way, and sums the other gradients in its reduce-scatter.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, fully_shard

from minir1.dist import zero
from minir1.dist.expert_parallel import ExpertParallel
from minir1.dist.mesh import DATA_PARALLEL, ParallelLayout
from minir1.model.moe import moe_layers


def expert_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of every expert-parallel experts container of ``model``."""
    return [p for m in model.modules() if isinstance(m, ExpertParallel) for p in m.parameters()]


def apply_data_parallel(model: nn.Module, mesh: DeviceMesh, dp: str = "zero1") -> nn.Module:
    """Data parallelism over the 1-D ``mesh`` of every rank, in place: ``"zero1"`` (the optimiser
    state divided) or ``"fsdp"`` (``fully_shard`` every block and MTP module, then the whole
    model). Expert-parallel experts are left to ``finish_gradients`` either way."""
    if mesh.ndim != 1 or mesh.size() != dist.get_world_size():
        raise ValueError(f"apply_data_parallel: mesh must be 1-D over all "
                         f"{dist.get_world_size()} ranks, got shape {tuple(mesh.shape)}")
    if dp not in DATA_PARALLEL:
        raise ValueError(f"dp={dp!r}: data parallelism is one of {', '.join(DATA_PARALLEL)}")
    if dp == "zero1":
        return zero.attach(model, {id(p) for p in expert_parameters(model)}, mesh.get_group())
    ignored = set(expert_parameters(model)) or None
    for module in model.mtp:
        # its final norm runs outside the module's forward (Transformer.forward), so it needs
        # its own FSDP unit to be gathered when called
        fully_shard(module.norm, mesh=mesh, ignored_params=ignored)
    for module in [*model.layers, *model.mtp]:
        fully_shard(module, mesh=mesh, ignored_params=ignored)
    fully_shard(model, mesh=mesh, ignored_params=ignored)
    # an expert that got no tokens on one rank still joins the reduce-scatter (with zeros), so
    # every rank sends the same collective; finish_gradients drops the globally idle ones
    model.set_reduce_scatter_unused_params(True)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            # a plain sum (the losses are shares already), as SUM: gloo has no pre-multiplied sum
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
    return model


@torch.no_grad()
def finish_gradients(model: nn.Module, layout: ParallelLayout,
                     mesh: DeviceMesh | None = None) -> None:
    """After backward, before the optimiser step (every rank calls it).

    ZeRO-1: the gradients reduce-scattered to the ranks that own them. Expert-parallel experts:
    sum each one's gradient over its replicas (edp). Then every expert that no rank sent a token to
    this step loses its gradient, so the optimiser leaves it alone exactly as in one process (where
    it never ran); FSDP and expert parallelism gave it zeros to keep the collectives matched.
    """
    if (zero_one := zero.ZeroOne.of(model)) is not None:
        zero_one.reduce_gradients()
    group = mesh["edp"].get_group() if mesh is not None and layout.edp > 1 else None
    if group is not None:
        for p in expert_parameters(model):
            if p.grad is not None:
                dist.all_reduce(p.grad, group=group)
    moes = moe_layers(model)
    if not moes:
        return
    loads = torch.stack([moe.load for moe in moes])  # (n_moe, n_routed_experts): one collective
    dist.all_reduce(loads)
    idle = (loads == 0).tolist()  # one device-to-host copy, not one per expert
    for moe, idle_here in zip(moes, idle, strict=True):
        experts = (moe.experts.items() if isinstance(moe.experts, ExpertParallel)
                   else enumerate(moe.experts))
        for index, expert in experts:
            if idle_here[int(index)]:
                for p in expert.parameters():
                    p.grad = None


def finish_step(model: nn.Module) -> None:
    """After the optimiser step (every rank calls it): under ZeRO-1 the updated weights go from
    their owners to every rank; FSDP2 needs nothing (each rank updated its shards in place)."""
    if (zero_one := zero.ZeroOne.of(model)) is not None:
        zero_one.gather_parameters()


__all__ = ["apply_data_parallel", "expert_parameters", "finish_gradients", "finish_step"]
