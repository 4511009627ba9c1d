"""One training launch over many processes: what the Trainer asks of torch.distributed.

``init(ep)`` joins the process group torchrun set up (``minir1.dist.mesh``) and returns the
launch's ``Parallel``, which the ``Trainer`` picks up (``active()``); without torchrun it returns
None and nothing changes. ``Parallel`` shards a model (expert parallelism, then ZeRO-1 or FSDP2,
``minir1.dist.data_parallel``), gives each
rank its rows of the global batch, sums what the ranks computed, clips the global gradient norm
and gathers the whole model back into one process (for evaluation and the single-file checkpoint).

The loss is made independent of the topology by its normalisation, not by averaging: each rank's
loss is the sum over *its* target tokens divided by the token count of the *global* batch
(``minir1.train.loop.step_loss``), so the ranks' losses add up to the one-process loss and their
gradients are summed, never averaged. That holds for uneven counts too (SFT masks prompts and
padding, so ranks hold different numbers of target tokens): a mean of per-rank means would not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from minir1.config import ModelConfig
from minir1.dist.mesh import (
    ParallelLayout,
    build_mesh,
    device_type,
    init_distributed,
    launched_by_torchrun,
)

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh

# FSDP and DTensor take about a second to import: the methods import them, so that a
# one-process run (every Trainer asks ``active()``) never pays for them.

_ACTIVE: Parallel | None = None
T = TypeVar("T")


@dataclass
class Parallel:
    """The layout of one launch and its meshes; every method is called by every rank."""

    layout: ParallelLayout
    rank: int
    mesh: DeviceMesh  # ("edp", "ep")
    world_mesh: DeviceMesh  # 1-D over every rank: FSDP's data axis

    @classmethod
    def of_process_group(cls, layout: ParallelLayout, mesh: DeviceMesh | None = None) -> Parallel:
        """The launch of an initialised process group laid out as ``layout`` (``mesh``: its
        ``build_mesh``, if already built)."""
        from torch.distributed.device_mesh import init_device_mesh

        world_mesh = init_device_mesh(device_type(), (layout.world,), mesh_dim_names=("dp",))
        return cls(layout, dist.get_rank(), mesh or build_mesh(layout), world_mesh)

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the metrics, the checkpoint's single files and the evaluation."""
        return self.rank == 0

    def shard(self, model: nn.Module) -> nn.Module:
        """Expert parallelism (when ``ep > 1``), then the layout's data parallelism (ZeRO-1 or
        FSDP2) over every rank; in place."""
        from minir1.dist.data_parallel import apply_data_parallel
        from minir1.dist.expert_parallel import apply_expert_parallel

        self.layout.check_model(model.cfg)
        if self.layout.ep > 1:
            apply_expert_parallel(model, self.mesh["ep"].get_group())
        return apply_data_parallel(model, self.world_mesh, self.layout.dp)

    def share(self, n: int) -> slice:
        """This rank's contiguous ``1 / world`` of ``n`` items (rows of a batch, prompts)."""
        if n % self.layout.world:
            raise ValueError(f"{n} items must be divisible by world={self.layout.world}: "
                             "every rank takes an equal share")
        per = n // self.layout.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def local_rows(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This rank's ``1 / world`` of a global batch (contiguous rows)."""
        rows = self.share(next(iter(batch.values())).shape[0])
        return {k: v[rows] for k, v in batch.items()}

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` summed over every rank (a new tensor)."""
        x = x.clone()
        dist.all_reduce(x)
        return x

    def finish_gradients(self, model: nn.Module) -> None:
        """After backward, before clipping and the optimiser step."""
        from minir1.dist.data_parallel import finish_gradients

        finish_gradients(model, self.layout, self.mesh)

    def finish_step(self, model: nn.Module) -> None:
        """After the optimiser step (ZeRO-1: every rank gets the weights the others updated)."""
        from minir1.dist.data_parallel import finish_step

        finish_step(model)

    @torch.no_grad()
    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_`` over the whole distributed model (after
        ``finish_gradients``): the FSDP shards, or the parameters ZeRO-1 ranks own, are disjoint
        (squares summed over every rank), an expert lives on one rank of each EP group (summed
        over the group)."""
        from torch.distributed.tensor import DTensor

        from minir1.dist.data_parallel import expert_parameters
        from minir1.dist.zero import ZeroOne

        experts = {id(p) for p in expert_parameters(model)}
        zero_one = ZeroOne.of(model)
        sharded, local = [], []  # disjoint over the world; over the EP group (local tensors)
        for p in model.parameters():
            if p.grad is None:
                continue
            if id(p) in experts:
                local.append(p.grad)
            elif isinstance(p.grad, DTensor):
                sharded.append(p.grad.to_local())
            elif zero_one is not None and zero_one.owns(p):
                sharded.append(p.grad)
            else:
                raise RuntimeError("clip_grad_norm: a gradient is neither a shard, nor a ZeRO-1 "
                                   "owner's, nor an expert's; shard the model with "
                                   "Parallel.shard and call finish_gradients first")
        sq = torch.stack([_sum_sq(sharded), _sum_sq(local)])
        dist.all_reduce(sq[0:1])
        if self.layout.ep > 1:
            dist.all_reduce(sq[1:2], group=self.mesh["ep"].get_group())
        total = sq.sum().sqrt()
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in sharded + local:  # in place: to_local() is the DTensor's own storage
            g.mul_(coef.to(g.dtype))
        return total

    def full_state_dict(self, model: nn.Module,
                        everywhere: bool = False) -> dict[str, torch.Tensor] | None:
        """The one-process ``state_dict`` of a sharded model on rank 0 (None on the others;
        ``everywhere``: on every rank): FSDP shards all-gathered, every EP rank's experts under
        their global names."""
        from torch.distributed.tensor import DTensor

        from minir1.dist.expert_parallel import ExpertParallel

        state: dict[str, torch.Tensor] = {}
        experts: dict[str, torch.Tensor] = {}
        expert_prefixes = tuple(f"{name}." for name, m in model.named_modules()
                                if isinstance(m, ExpertParallel))
        for name, value in model.state_dict().items():
            if isinstance(value, DTensor):
                value = value.full_tensor()
            target = experts if expert_prefixes and name.startswith(expert_prefixes) else state
            target[name] = value.detach().cpu()
        if expert_prefixes:
            gathered: list[dict[str, torch.Tensor] | None] = [None] * self.layout.world
            dist.all_gather_object(gathered, experts)
            for part in gathered:
                state.update(part or {})
        return state if self.is_main or everywhere else None

    def gather_into(self, whole: nn.Module, sharded: nn.Module) -> nn.Module:
        """Load the shards of ``sharded`` into the unsharded copy ``whole``, on every rank."""
        whole.load_state_dict(self.full_state_dict(sharded, everywhere=True))
        return whole

    def barrier(self) -> None:
        dist.barrier()


def split_sharded(groups: list[dict]) -> list[dict]:
    """Optimiser param groups with a sharded model's FSDP parameters (DTensors) and its experts
    (plain tensors) apart, each with its group's settings: a fused or foreach kernel takes one
    kind at a time."""
    from torch.distributed.tensor import DTensor

    return [{**g, "params": part} for g in groups
            for part in ([p for p in g["params"] if isinstance(p, DTensor)],
                         [p for p in g["params"] if not isinstance(p, DTensor)]) if part]


def _sum_sq(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The sum of squares, on the CPU (the collective carries it): one copy from the device."""
    if not tensors:
        return torch.zeros((), dtype=torch.float32)
    return sum(t.float().pow(2).sum() for t in tensors).cpu()


def init(ep: int = 1, cfg: ModelConfig | None = None, dp: str = "zero1") -> Parallel | None:
    """Join a torchrun launch with expert-parallel degree ``ep`` and data parallelism ``dp``
    (``"zero1"`` or ``"fsdp"``) and make it the active one (which the ``Trainer`` uses); None
    outside torchrun (``ep`` must then be 1).

    The layout is checked (against ``cfg`` when given) before any collective runs."""
    global _ACTIVE
    if not launched_by_torchrun():
        if ep != 1:
            raise ValueError(f"--ep {ep} needs several processes: launch with torchrun "
                             f"--nproc_per_node=N (N a multiple of {ep})")
        return None
    layout, mesh = init_distributed(ep, cfg, dp)
    _ACTIVE = Parallel.of_process_group(layout, mesh)
    return _ACTIVE


def active() -> Parallel | None:
    """The launch ``init`` joined, if any."""
    return _ACTIVE


def is_main() -> bool:
    """Whether this process writes a run's files: rank 0 of the active launch, or the only one."""
    return _ACTIVE is None or _ACTIVE.is_main


def on_main(fn: Callable[[], dict], parallel: Parallel | None) -> dict:
    """``fn()`` on rank 0 (or the only process) while the other ranks wait; ``{}`` on them."""
    result = fn() if parallel is None or parallel.is_main else {}
    if parallel is not None:
        parallel.barrier()
    return result


def from_main(fn: Callable[[], T]) -> T:
    """``fn()`` computed on rank 0 and sent to every rank (one process: ``fn()``): for values
    that decide what the ranks do next, which must not differ between them."""
    if _ACTIVE is None:
        return fn()
    box = [fn() if _ACTIVE.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def shutdown() -> None:
    """Leave the process group (the end of a launch)."""
    global _ACTIVE
    if dist.is_initialized():
        dist.destroy_process_group()
    _ACTIVE = None


__all__ = ["Parallel", "active", "from_main", "init", "is_main", "on_main", "shutdown",
           "split_sharded"]
