"""Expert parallelism on 1, 2 and 4 gloo processes equals the single-process MoE."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.distributed as dist
from torch import nn

from minir1.config import ModelConfig
from minir1.dist.expert_parallel import (
    AllToAll,
    ExpertParallel,
    apply_expert_parallel,
    ranks_per_node,
)
from minir1.dist.mesh import ParallelLayout, build_mesh
from minir1.model.moe import MoE, RoutedExperts, permute, unpermute
from tests.dist.harness import run

N_TOKENS = 24  # per rank
# one worker runs this file's tests, so each world size is launched once (``launch``)
pytestmark = pytest.mark.xdist_group("expert_parallel")


def moe_cfg(**kw) -> ModelConfig:
    return ModelConfig.preset("tiny", dim=32, moe_inter_dim=16, **{
        "n_routed_experts": 8, "n_activated_experts": 2, "n_expert_groups": 4,
        "n_limited_groups": 2, **kw})


# ------------------------------------------------------------------------- checks on each rank

def all_to_all_rank(rank: int, world: int) -> dict:
    """Rank r sends r + p + 1 rows to rank p (none to itself on even ranks), values naming both."""
    send = [0 if (rank % 2 == 0 and p == rank) else rank + p + 1 for p in range(world)]
    x = torch.cat([torch.full((n, 3), 10.0 * rank + p) for p, n in enumerate(send)])
    x.requires_grad_(True)
    recv = [0 if (q % 2 == 0 and q == rank) else q + rank + 1 for q in range(world)]
    y = AllToAll.apply(x, recv, send, None)
    upstream = torch.arange(y.numel(), dtype=torch.float32).view_as(y)
    y.backward(upstream)
    # the gradient comes back through the reverse all-to-all: what rank p received from us
    back = AllToAll.apply(upstream, send, recv, None)
    return {"y": y.detach(), "recv": recv, "grad": x.grad, "back": back}


def identity_rank(rank: int, world: int, route: str) -> dict:
    """Identity experts, weights 1/K: the layer returns its input and passes gradients through."""
    E, K, dim = 8, 2, 5
    experts = ExpertParallel(RoutedExperts(nn.Identity() for _ in range(E)))
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(N_TOKENS, dim, generator=gen, requires_grad=True)
    if route == "first-rank":  # every token to experts 0 and 1 (rank 0's at ep 2 and 4)
        indices = torch.tensor([[0, 1]] * N_TOKENS)
    else:  # random, but expert 5 never chosen
        pool = torch.tensor([0, 1, 2, 3, 4, 6, 7])
        indices = torch.stack([pool[torch.randperm(7, generator=gen)[:K]]
                               for _ in range(N_TOKENS)])
    weights = torch.full((N_TOKENS, K), 1.0 / K)
    x_sorted, order, counts = permute(x, indices, E)
    out = unpermute(experts(x_sorted, counts), order, weights)
    upstream = torch.randn(out.shape, generator=gen)
    out.backward(upstream)
    return {"x": x.detach(), "out": out.detach(), "grad": x.grad, "upstream": upstream}


def grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)).clone()
            for n, p in module.named_parameters()}


def moe_parity_rank(rank: int, world: int, silence_last_rank: bool, ep: int | None = None) -> dict:
    """The same MoE weights on every rank; the reference runs the global batch in one process.

    With ``ep < world`` the experts are split within EP groups of the ``("edp", "ep")`` mesh, and
    each expert's gradient sums over its ``world / ep`` replicas (its edp group).
    """
    cfg, ep = moe_cfg(), ep or world
    layout = ParallelLayout(world, ep)
    mesh = build_mesh(layout, "cpu") if ep < world else None
    torch.manual_seed(0)
    ref = MoE(cfg).train()
    with torch.no_grad():  # routing that visibly depends on the bias (Eq. 16)
        ref.gate.bias.normal_(std=0.05)
        if silence_last_rank:  # rank world-1 holds experts nobody selects
            per_rank = cfg.n_routed_experts // ep
            ref.gate.bias[-per_rank:] = -1e3
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(world, N_TOKENS // 4, 4, cfg.dim, generator=gen)  # (rank, B, T, dim)
    G = torch.randn(X.shape, generator=gen)  # upstream gradient

    ep_moe = apply_expert_parallel(copy.deepcopy(ref),
                                   mesh["ep"].get_group() if mesh is not None else None)
    out, _ = ref(X.flatten(0, 1))
    (out * G.flatten(0, 1)).sum().backward()

    mine, _ = ep_moe(X[rank])
    (mine * G[rank]).sum().backward()
    shared = {n: g for n, g in grads(ep_moe).items() if ".experts." not in "." + n}
    for g in shared.values():  # the replicated parameters' gradients sum over the data ranks
        dist.all_reduce(g)
    expert_grads = grads(ep_moe.experts)
    if mesh is not None:  # ... and each expert's over the ranks holding the same experts
        for g in expert_grads.values():
            dist.all_reduce(g, group=mesh["edp"].get_group())
    load = ep_moe.load.clone()
    dist.all_reduce(load)
    return {
        "out": (mine.detach(), out.detach().view(X.shape)[rank]),
        "experts": (expert_grads, {k: v for k, v in grads(ref.experts).items()
                                   if int(k.split(".")[0])
                                   in layout.local_experts(rank, cfg.n_routed_experts)}),
        "shared": (shared, {n: g for n, g in grads(ref).items()
                            if not n.startswith("experts.")}),
        "load": (load, ref.load.clone()),
        "keys": sorted(ep_moe.experts.state_dict()),
        "no_grad": [n for n, p in ep_moe.experts.named_parameters() if p.grad is None],
    }


def traffic_rank(rank: int, world: int) -> dict:
    """Rows each dispatch sends to itself, its simulated node and other nodes, against the routing,
    for 2 groups (nodes of 2 ranks, M = 1) and 4 groups (a node per rank, M = 2)."""
    found = {}
    for groups, limit in ((2, 1), (4, 2)):
        cfg = moe_cfg(n_expert_groups=groups, n_limited_groups=limit)
        torch.manual_seed(0)
        moe = MoE(cfg).train()
        with torch.no_grad():
            moe.gate.bias.normal_(std=0.05)
        apply_expert_parallel(moe)
        x = torch.randn(N_TOKENS // 4, 4, cfg.dim, generator=torch.Generator().manual_seed(rank))
        moe(x)
        _, idx, _ = moe.gate(x.flatten(0, 1))
        per_node = ranks_per_node(world, groups)
        dst = idx // (cfg.n_routed_experts // world)
        t = moe.experts.traffic
        found[groups] = {
            "counted": (t.local, t.node, t.cross),
            "expected": (int((dst == rank).sum()),
                         int(((dst != rank) & (dst // per_node == rank // per_node)).sum()),
                         int((dst // per_node != rank // per_node).sum())),
            "nodes_per_token": max(len(set(row)) for row in (dst // per_node).tolist()),
            "bytes": t.bytes("cross"), "row_bytes": cfg.dim * 4, "to_rank": t.to_rank,
            "expected_to_rank": torch.bincount(dst.flatten(), minlength=world).tolist()}
    return found


def all_checks(rank: int, world: int) -> dict:
    """One launch per world size runs every check (starting processes costs seconds each)."""
    return {"all_to_all": all_to_all_rank(rank, world) if world > 1 else None,
            "identity": {route: identity_rank(rank, world, route)
                         for route in ("first-rank", "random")},
            "parity": moe_parity_rank(rank, world, silence_last_rank=world > 1),
            "mesh": moe_parity_rank(rank, world, False, ep=2) if world == 4 else None,
            "traffic": traffic_rank(rank, world) if world == 4 else None}


@functools.cache
def launch(world: int) -> list[dict]:
    return run(all_checks, world)


# ------------------------------------------------------------------------------------- tests

def assert_close_normwise(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-6) -> None:
    """max |actual - expected| <= tol * max |expected|: fp32 rounding of sums taken in another
    order, relative to the tensor's scale rather than to each (possibly tiny) element."""
    err, scale = (actual - expected).abs().max().item(), expected.abs().max().item()
    assert err <= tol * scale, f"max |diff| {err:.3g} > {tol:g} * max |expected| {scale:.3g}"


@pytest.mark.parametrize("world", [2, 4])
def test_all_to_all_sends_rows_and_returns_gradients(world):
    for rank, r in enumerate(ranks["all_to_all"] for ranks in launch(world)):
        expected = torch.cat([torch.full((n, 3), 10.0 * q + rank) for q, n in enumerate(r["recv"])])
        assert torch.equal(r["y"], expected)
        assert torch.equal(r["grad"], r["back"])


@pytest.mark.parametrize("world", [1, 2, 4])
@pytest.mark.parametrize("route", ["first-rank", "random"])
def test_dispatcher_identity(world, route):
    """Megatron's dispatcher test: with identity experts and weights 1/K the layer is the identity,
    forward and backward, including ranks that receive nothing and an expert that gets nothing."""
    for r in (ranks["identity"][route] for ranks in launch(world)):
        torch.testing.assert_close(r["out"], r["x"], rtol=0, atol=1e-6)
        torch.testing.assert_close(r["grad"], r["upstream"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_moe_layer_parity(world):
    """EP 1, 2, 4 vs one process on the global batch: outputs, expert, router and shared-expert
    gradients, and per-expert loads agree in fp32; rank world-1 receives no tokens."""
    results = [ranks["parity"] for ranks in launch(world)]
    E = moe_cfg().n_routed_experts
    for rank, r in enumerate(results):
        torch.testing.assert_close(*r["out"], rtol=0, atol=1e-6)
        ep_grads, ref_grads = r["experts"]
        assert sorted(ep_grads) == sorted(ref_grads)  # global indices
        for name in ref_grads:
            torch.testing.assert_close(ep_grads[name], ref_grads[name], rtol=0, atol=1e-6)
        ep_shared, ref_shared = r["shared"]
        assert sorted(ep_shared) == sorted(ref_shared) and "gate.weight" in ref_shared
        for name in ref_shared:  # summed over ranks, in another order than one matmul sums them
            assert_close_normwise(ep_shared[name], ref_shared[name])
        assert torch.equal(*r["load"])
        first = rank * (E // world)
        assert r["keys"][0].startswith(f"{first}.")
        assert r["no_grad"] == []  # every local expert has a gradient, tokens or not
    if world > 1:  # the last rank's experts got no tokens at all
        load = results[0]["load"][1]
        assert load[-(E // world):].sum() == 0 and load.sum() == world * N_TOKENS * 2


def test_moe_layer_parity_on_a_2d_mesh():
    """world 4 = 2 EP groups of 2 ranks: experts split within a group, replicated across groups;
    with each expert's gradient summed over its replicas, everything equals one process."""
    for rank, r in enumerate(ranks["mesh"] for ranks in launch(4)):
        torch.testing.assert_close(*r["out"], rtol=0, atol=1e-6)
        ep_grads, ref_grads = r["experts"]
        assert sorted(ep_grads) == sorted(ref_grads)
        assert r["keys"][0].startswith(f"{(rank % 2) * 4}.")  # experts 0-3 or 4-7
        for name in ref_grads:
            assert_close_normwise(ep_grads[name], ref_grads[name])
        for name, g in r["shared"][0].items():
            assert_close_normwise(g, r["shared"][1][name])
        assert torch.equal(*r["load"])


def test_traffic_by_simulated_node():
    """Node-limited routing, simulated: the rows counted to the rank itself, within its node and
    across nodes match the routing, and no token reaches more than M nodes (but some reach M)."""
    results = launch(4)
    for ranks in results:
        for groups, limit in ((2, 1), (4, 2)):
            r = ranks["traffic"][groups]
            assert r["counted"] == r["expected"]
            assert r["nodes_per_token"] <= limit
            assert r["bytes"] == r["counted"][2] * r["row_bytes"]
            assert r["to_rank"] == r["expected_to_rank"]  # a row of the rank x rank matrix
    assert max(ranks["traffic"][4]["nodes_per_token"] for ranks in results) == 2
    # nodes of two ranks: some copies stay on the node, some cross it
    assert all(min(ranks["traffic"][2]["counted"][1:]) > 0 for ranks in results)


def test_layout_rules_name_the_field():
    with pytest.raises(ValueError, match="ep=3 must divide world=4"):
        ParallelLayout(4, 3)
    with pytest.raises(ValueError, match="n_routed_experts=6"):
        ParallelLayout(4, 4).check_model(moe_cfg(n_routed_experts=6, n_expert_groups=1,
                                                 n_limited_groups=1))
    with pytest.raises(ValueError, match="n_expert_groups=4"):
        ParallelLayout(6, 6).check_model(moe_cfg(n_routed_experts=12, n_expert_groups=4))
    ParallelLayout(4, 2).check_model(moe_cfg())  # 8 experts, 4 groups: 2 whole groups per rank
    assert list(ParallelLayout(4, 2).local_experts(3, 8)) == [4, 5, 6, 7]
