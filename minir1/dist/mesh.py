"""Which rank does what: the layout of data and expert parallelism over a torchrun launch.

DeepSeek-V3 trained with 64-way expert parallelism spanning 8 nodes and ZeRO-1 data parallelism
(V3 §3.2). minir1 lays ``world`` processes out the same way, in two dimensions:

* **data**: every rank is a data-parallel rank and takes ``1 / world`` of the global batch;
* **experts**: the routed experts are split over groups of ``ep`` *consecutive* ranks (an EP group,
  as the GPUs of a node are), each rank holding ``n_routed_experts / ep`` of them. Ranks ``r``
  and ``r'`` hold the same experts when ``r % ep == r' % ep``; those ``world / ep`` replicas of
  an expert form its *expert-data* group, over which its gradients are reduced.

As a ``DeviceMesh`` this is the 2-D grid ``("edp", "ep")`` of shape ``(world / ep, ep)``, with
``ep`` the fastest-varying axis so that an EP group is a block of neighbouring ranks.

Node-limited routing (V3 §2.1.2, each token reaches at most M = 4 of 8 nodes) is simulated by
letting the gate's expert groups play the nodes: a layout must put group boundaries on rank
boundaries, either each group spanning whole ranks or each rank holding whole groups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from minir1.config import ModelConfig

DATA_PARALLEL = ("zero1", "fsdp")  # minir1.dist.data_parallel: V3's ZeRO-1, torch's FSDP2


@dataclass(frozen=True)
class ParallelLayout:
    world: int = 1  # processes; every one is a data-parallel rank
    ep: int = 1  # expert-parallel degree: consecutive ranks that share out the routed experts
    dp: str = "zero1"  # data parallelism: "zero1" (optimiser state divided) or "fsdp" (all of it)

    def __post_init__(self) -> None:
        if self.world < 1:
            raise ValueError(f"world={self.world}: the number of processes must be >= 1")
        if self.ep < 1:
            raise ValueError(f"ep={self.ep}: the expert-parallel degree must be >= 1")
        if self.dp not in DATA_PARALLEL:
            raise ValueError(f"dp={self.dp!r}: data parallelism is one of "
                             f"{', '.join(DATA_PARALLEL)}")
        if self.world % self.ep:
            raise ValueError(f"ep={self.ep} must divide world={self.world}: an expert-parallel "
                             "group is ep consecutive ranks, and every rank is in one")

    @property
    def edp(self) -> int:
        """Replicas of each expert (its expert-data-parallel degree)."""
        return self.world // self.ep

    def check_model(self, cfg: ModelConfig) -> None:
        """Raise a ``ValueError`` naming the rule if ``cfg``'s experts cannot be laid out so."""
        if self.ep == 1:
            return
        if cfg.n_routed_experts % self.ep:
            raise ValueError(f"ep={self.ep} must divide n_routed_experts={cfg.n_routed_experts}: "
                             "each rank of an expert-parallel group holds the same number of "
                             "experts")
        groups = cfg.n_expert_groups
        if groups > 1 and self.ep % groups and groups % self.ep:
            raise ValueError(f"ep={self.ep} and n_expert_groups={groups}: one must divide the "
                             "other, so that each expert group (a simulated node of node-limited "
                             "routing) spans whole ranks or each rank holds whole groups")

    def expert_rank(self, rank: int) -> int:
        """Position of ``rank`` inside its expert-parallel group."""
        return rank % self.ep

    def local_experts(self, rank: int, n_experts: int) -> range:
        """Global indices of the routed experts ``rank`` holds."""
        per_rank = n_experts // self.ep
        first = self.expert_rank(rank) * per_rank
        return range(first, first + per_rank)


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (or anything else that sets its variables)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def init_distributed(ep: int = 1, cfg: ModelConfig | None = None, dp: str = "zero1",
                     ) -> tuple[ParallelLayout, DeviceMesh | None]:
    """Join the process group torchrun set up and build the mesh; ``(layout, None)`` without it.

    NCCL on CUDA (one GPU per local rank; gloo beside it for CPU tensors), gloo on the CPU. The
    layout is checked against the model before any collective runs, so a bad launch fails at once
    on every rank with the rule.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    layout = ParallelLayout(world, ep, dp)
    if cfg is not None:
        layout.check_model(cfg)
    if not launched_by_torchrun():
        return layout, None
    kind = device_type()
    if kind == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        # the small bookkeeping tensors (token counts, metrics) stay on the CPU: gloo carries
        # them beside NCCL; rank 0's evaluations can keep the others waiting for minutes
        dist.init_process_group("cpu:gloo,cuda:nccl" if kind == "cuda" else "gloo",
                                timeout=timedelta(minutes=60))
    return layout, build_mesh(layout, kind)


def build_mesh(layout: ParallelLayout, kind: str | None = None) -> DeviceMesh:
    """The ``("edp", "ep")`` mesh of an initialised process group (``ep`` innermost)."""
    if dist.get_world_size() != layout.world:
        raise ValueError(f"layout.world={layout.world} but the process group has "
                         f"{dist.get_world_size()} ranks")
    return init_device_mesh(kind or device_type(), (layout.edp, layout.ep),
                            mesh_dim_names=("edp", "ep"))


__all__ = ["DATA_PARALLEL", "ParallelLayout", "build_mesh", "device_type", "init_distributed",
           "launched_by_torchrun"]
