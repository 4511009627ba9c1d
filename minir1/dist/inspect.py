"""Look inside one sharded training step: where every parameter lives, and which rank sends how
many token copies to which (V3 §3.2, §3.2.2).

DeepSeek-V3 trained with 64-way expert parallelism over 8 nodes and ZeRO-1 data parallelism
(V3 §3.2); its dispatch all-to-all sends each token to at most M = 4 nodes over InfiniBand, once
per node, and NVLink fans it out to the GPUs inside a node (V3 §3.2.2). This module runs one
forward and backward of a small MoE model under torchrun, sharded as the Trainer shards it
(``minir1.dist.parallel.Parallel.shard``: expert parallelism, then ZeRO-1 or FSDP2), and rank 0
writes what it saw as JSON::

    python -m torch.distributed.run --standalone --nproc_per_node=4 \\
        -m minir1.dist.inspect --ep 2 --groups 2 --limit 1 --dp fsdp --out inspect.json

* ``placement``: per rank, every parameter's name, global and local shape and kind
  (``"fsdp shard"``: a 1/world slice of a parameter every rank shares; ``"expert (this rank's)"``:
  a whole routed expert only this rank of its EP group holds; under ZeRO-1 ``"whole, state
  here"`` for a parameter whose AdamW moments this rank keeps, ``"whole"`` for the others);
* ``moe``: per MoE layer, the world x world matrix of rows the dispatch all-to-all sent (row =
  source rank, column = destination; each rank's ``Traffic.to_rank`` placed at its EP group's
  ranks), the rows kept ``local``, sent within a simulated ``node`` and ``cross`` nodes and their
  bytes (minir1's all-to-all: a copy per expert), then the tokens each rank routed, how many nodes
  each reached, and what V3's dispatch would send for the same routing: ``node_sends`` across
  nodes, one per token and remote node, and NVLink ``forwards`` inside them (``nodes_reached``).

The gate's expert groups play the nodes (``minir1.dist.expert_parallel.ranks_per_node``); a node
is ``ranks_per_node`` consecutive ranks, so rank ``r`` is on node ``r // ranks_per_node``.
``node_traffic(report)`` turns the JSON into per-node byte totals.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from minir1.config import ModelConfig
from minir1.dist.mesh import DATA_PARALLEL
from minir1.model.moe import MoE
from minir1.model.transformer import Transformer

if TYPE_CHECKING:
    from minir1.dist.mesh import ParallelLayout

FSDP_SHARD = "fsdp shard"
EXPERT = "expert (this rank's)"
ZERO_OWNED, ZERO_WHOLE = "whole, state here", "whole"  # ZeRO-1: who keeps the moments


def build_model(groups: int = 2, limit: int = 1, seed: int = 0, n_layers: int = 3) -> Transformer:
    """The lesson's ``tiny`` MoE (16 routed experts, top-4) with ``groups`` expert groups of which
    a token may use ``limit``: the same weights on every rank (same seed), as sharding needs."""
    cfg = ModelConfig.preset("tiny", n_layers=n_layers, n_expert_groups=groups,
                             n_limited_groups=limit, max_seq_len=64, original_seq_len=64)
    torch.manual_seed(seed)
    return Transformer(cfg)


def global_batch(vocab_size: int, batch: int = 8, seq_len: int = 32,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """The fixed random batch every rank draws (and takes its rows of): ``tokens`` and their
    next tokens ``targets``, (batch, seq_len) each."""
    gen = torch.Generator().manual_seed(seed)
    data = torch.randint(0, vocab_size, (batch, seq_len + 1), generator=gen)
    return {"tokens": data[:, :-1], "targets": data[:, 1:]}


def placement(model: nn.Module, shapes: Mapping[str, Sequence[int]]) -> list[dict[str, Any]]:
    """This rank's parameters of a sharded ``model``: name, global shape (``shapes``, taken before
    sharding), local shape, elements held and kind."""
    from torch.distributed.tensor import DTensor

    from minir1.dist.data_parallel import expert_parameters
    from minir1.dist.zero import ZeroOne

    experts = {id(p) for p in expert_parameters(model)}
    zero_one = ZeroOne.of(model)
    rows = []
    for name, p in model.named_parameters():
        if isinstance(p, DTensor):
            local, kind = p.to_local(), FSDP_SHARD
        elif id(p) in experts:
            local, kind = p, EXPERT
        elif zero_one is not None:
            local, kind = p, ZERO_OWNED if zero_one.owns(p) else ZERO_WHOLE
        else:
            local, kind = p, "replicated"
        rows.append({"name": name, "global_shape": list(shapes[name]),
                     "local_shape": list(local.shape), "numel": local.numel(), "kind": kind})
    return rows


class _Routes:
    """Forward hooks on every gate: the experts each token of this rank chose, per MoE."""

    def __init__(self, model: nn.Module) -> None:
        self.indices: dict[str, list[torch.Tensor]] = {}
        self.handles = []
        for name, module in model.named_modules():
            if isinstance(module, MoE):
                self.indices[name] = []
                self.handles.append(module.gate.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: Any, out: tuple[torch.Tensor, ...]) -> None:
            self.indices[name].append(out[1].detach().cpu())
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def nodes_reached(indices: torch.Tensor, n_experts: int, ep: int, rank: int,
                  ranks_per_node: int) -> dict[str, Any]:
    """Where the tokens of EP rank ``rank`` go (``indices``: (tokens, K) chosen experts), counted
    as V3's dispatch would send them (V3 §3.2.2): once over InfiniBand to each remote node a token
    reaches, to the GPU with the same in-node index, which forwards it over NVLink to the other
    GPUs of that node holding its experts (inside its own node the token starts at that index).

    Returns the ``tokens``, a histogram ``nodes_per_token`` over 1..nodes, the InfiniBand
    ``node_sends`` and the NVLink ``forwards`` (one per token and GPU reached, however many of
    its experts that GPU holds)."""
    per_rank = n_experts // ep
    n_nodes = max(1, ep // ranks_per_node)
    ranks = torch.zeros(indices.shape[0], ep, dtype=torch.bool)
    ranks.scatter_(1, indices // per_rank, True)  # (tokens, ep): the GPUs a token must reach
    nodes = ranks.view(-1, n_nodes, ep // n_nodes).any(-1)  # (tokens, nodes)
    reached = nodes.sum(1)
    remote = reached - nodes[:, rank // ranks_per_node].long()
    # every node's GPU at this rank's in-node index receives the token first; the others by NVLink
    landing = torch.arange(ep) % ranks_per_node == rank % ranks_per_node
    hist = torch.bincount(reached, minlength=n_nodes + 1)[1:]
    return {"tokens": int(indices.shape[0]), "nodes_per_token": hist.tolist(),
            "node_sends": int(remote.sum()), "forwards": int(ranks[:, ~landing].sum())}


def run(ep: int, groups: int, limit: int, batch: int = 8, seq_len: int = 32, seed: int = 0,
        dp: str = "zero1") -> dict[str, Any] | None:
    """One sharded forward + backward under the current torchrun launch; the report on rank 0
    (None on the others). Every rank must call it."""
    import torch.distributed as dist

    from minir1.dist import parallel
    from minir1.dist.expert_parallel import ranks_per_node
    from minir1.dist.mesh import device_type

    launch = parallel.active() or parallel.init(ep, dp=dp)
    if launch is None:
        raise SystemExit("minir1.dist.inspect runs under torchrun: python -m "
                         "torch.distributed.run --standalone --nproc_per_node=N -m "
                         "minir1.dist.inspect ...")
    layout, device = launch.layout, torch.device(device_type())
    model = build_model(groups, limit, seed).to(device)
    cfg = model.cfg
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    launch.shard(model)
    routes = _Routes(model)
    mine = launch.local_rows(global_batch(cfg.vocab_size, batch, seq_len, seed))
    model.train()
    out = model(mine["tokens"].to(device), targets=mine["targets"].to(device))
    # equal token counts on every rank: each rank's share of the global loss is its mean / world
    (out.loss / layout.world).backward()
    launch.finish_gradients(model)
    routes.remove()
    loss = launch.sum(out.loss.detach() / layout.world)

    rpn = ranks_per_node(layout.ep, groups)
    moes = [_layer(name, module, torch.cat(routes.indices[name]), launch.rank, layout, rpn)
            for name, module in model.named_modules() if isinstance(module, MoE)]
    gathered: list[dict[str, Any] | None] = [None] * layout.world
    dist.all_gather_object(gathered, {"placement": placement(model, shapes), "moe": moes})
    if not launch.is_main:
        return None
    ranks = [g for g in gathered if g is not None]
    return {
        "world": layout.world, "ep": layout.ep, "edp": layout.edp, "dp": layout.dp,
        "groups": groups, "limit": limit, "ranks_per_node": rpn, "top_k": cfg.n_activated_experts,
        "n_routed_experts": cfg.n_routed_experts, "dim": cfg.dim, "batch": batch,
        "seq_len": seq_len, "loss": float(loss),
        "params": {name: list(shape) for name, shape in shapes.items()},
        "placement": [r["placement"] for r in ranks],
        "moe": [_merge([r["moe"][i] for r in ranks]) for i in range(len(ranks[0]["moe"]))],
    }


def _layer(name: str, moe: MoE, indices: torch.Tensor, rank: int, layout: ParallelLayout,
           rpn: int) -> dict[str, Any]:
    """One rank's view of one MoE: its row of the dispatch matrix (rows sent to every rank of
    the launch) and the traffic counters."""
    from minir1.dist.expert_parallel import ExpertParallel, Traffic

    if isinstance(moe.experts, ExpertParallel):
        traffic, experts = moe.experts.traffic, [int(k) for k in moe.experts]
    else:  # no expert parallelism: every copy stays on its rank
        n = indices.numel()
        traffic = Traffic(local=n, to_rank=[n], row_bytes=moe.gate.weight.shape[1]
                          * torch.empty(0).element_size())
        experts = list(range(moe.n_routed_experts))
    row = [0] * layout.world
    first = rank - layout.expert_rank(rank)  # the first rank of this rank's EP group
    for p, rows in enumerate(traffic.to_rank):
        row[first + p] = int(rows)
    return {"name": name, "row": row, "local": traffic.local, "node": traffic.node,
            "cross": traffic.cross, "row_bytes": traffic.row_bytes, "experts": experts,
            **nodes_reached(indices, moe.n_routed_experts, layout.ep, layout.expert_rank(rank),
                            rpn)}


def _merge(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """One MoE layer's rows from every rank -> the layer's matrix, totals and per-rank lists."""
    keys = ("local", "node", "cross", "tokens", "node_sends", "forwards")
    merged: dict[str, Any] = {"name": per_rank[0]["name"], "row_bytes": per_rank[0]["row_bytes"],
                              "matrix": [r["row"] for r in per_rank],
                              "experts": [r["experts"] for r in per_rank],
                              "nodes_per_token": [r["nodes_per_token"] for r in per_rank]}
    for key in keys:
        merged[f"{key}_per_rank"] = [r[key] for r in per_rank]
        merged[key] = sum(r[key] for r in per_rank)
    for where in ("local", "node", "cross"):
        merged[f"{where}_bytes"] = merged[where] * merged["row_bytes"]
    return merged


def node_of(rank: int, report: Mapping[str, Any]) -> int:
    """The simulated node of ``rank``: ranks_per_node consecutive ranks per node."""
    return rank // report["ranks_per_node"]


def node_traffic(report: Mapping[str, Any], layers: Sequence[str] | None = None,
                 ) -> list[dict[str, int]]:
    """Per simulated node, the dispatch bytes summed over MoE layers (``layers``: names, default
    every one): kept on a rank (``local``), sent to another rank of the node (``nvlink``), sent to
    and received from other nodes (``ib_out``, ``ib_in``). The combine sends the same bytes
    back."""
    world = report["world"]
    n_nodes = node_of(world - 1, report) + 1
    totals = [{"node": n, "local": 0, "nvlink": 0, "ib_out": 0, "ib_in": 0}
              for n in range(n_nodes)]
    for moe in report["moe"]:
        if layers is not None and moe["name"] not in layers:
            continue
        for src, row in enumerate(moe["matrix"]):
            for dst, rows in enumerate(row):
                b = rows * moe["row_bytes"]
                a, z = node_of(src, report), node_of(dst, report)
                if src == dst:
                    totals[a]["local"] += b
                elif a == z:
                    totals[a]["nvlink"] += b
                else:
                    totals[a]["ib_out"] += b
                    totals[z]["ib_in"] += b
    return totals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minir1.dist.inspect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ep", type=int, default=2, help="expert-parallel degree")
    p.add_argument("--groups", type=int, default=2,
                   help="expert groups of the gate (the simulated nodes)")
    p.add_argument("--limit", type=int, default=1, help="groups a token may use (M)")
    p.add_argument("--batch", type=int, default=8, help="global batch (sequences)")
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dp", choices=DATA_PARALLEL, default="zero1", help="data parallelism")
    p.add_argument("--out", default="inspect.json", help="JSON file rank 0 writes")
    args = p.parse_args(argv)
    from minir1.dist import parallel
    from minir1.dist.mesh import launched_by_torchrun

    if not launched_by_torchrun():
        p.error("launch it with torchrun: python -m torch.distributed.run --standalone "
                "--nproc_per_node=N -m minir1.dist.inspect ...")

    torch.set_num_threads(1)
    try:
        report = run(args.ep, args.groups, args.limit, args.batch, args.seq_len, args.seed,
                     args.dp)
        if report is not None:
            Path(args.out).write_text(json.dumps(report, indent=1))
    finally:
        parallel.shutdown()
    return 0


__all__ = ["EXPERT", "FSDP_SHARD", "ZERO_OWNED", "ZERO_WHOLE", "build_model", "global_batch",
           "node_of", "node_traffic", "nodes_reached", "placement", "run"]

if __name__ == "__main__":
    sys.exit(main())
