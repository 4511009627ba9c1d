"""ZeRO-1 and FSDP2, alone and with expert parallelism, train exactly like one process on the
global batch."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from minir1 import ModelConfig, Transformer
from minir1.dist.data_parallel import apply_data_parallel, finish_gradients, finish_step
from minir1.dist.expert_parallel import apply_expert_parallel
from minir1.dist.mesh import ParallelLayout, build_mesh
from minir1.dist.zero import owners
from tests.dist.harness import run

pytestmark = pytest.mark.xdist_group("data_parallel")
STEPS, BATCH, SEQ = 10, 4, 32  # the global batch: every topology trains on the same tokens


def cfg() -> ModelConfig:
    return ModelConfig.preset("tiny", dim=64, n_layers=2, inter_dim=128, moe_inter_dim=32,
                              max_seq_len=64, original_seq_len=64, bias_update_speed=0.01)


def train(model: Transformer, tokens: torch.Tensor, after_backward=None,
          after_step=None, opt=None) -> list[float]:
    """AdamW steps with the aux-loss-free bias update, as the Trainer does."""
    opt = opt or torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for batch in tokens:
        out = model(batch[:, :-1], targets=batch[:, 1:])
        # every rank holds as many tokens: its share of the global mean loss (gradients are summed)
        world = dist.get_world_size() if dist.is_initialized() else 1
        (out.loss / world).backward()
        if after_backward is not None:
            after_backward()
        opt.step()
        opt.zero_grad()
        if after_step is not None:
            after_step()
        model.update_expert_bias()
        loss = out.loss.detach().clone()
        if dist.is_initialized():
            dist.all_reduce(loss)
            loss /= dist.get_world_size()
        losses.append(loss.item())
    return losses


def biases(model: Transformer) -> list[torch.Tensor]:
    return [m.gate.bias.clone() for m in model.moe_layers()]


def setup() -> tuple[Transformer, torch.Tensor]:
    torch.manual_seed(0)
    return Transformer(cfg()), torch.randint(0, cfg().vocab_size, (STEPS, BATCH, SEQ + 1),
                                             generator=torch.Generator().manual_seed(1))


@functools.cache
def reference() -> tuple[list[float], list[torch.Tensor]]:
    """One process, the whole batch (run by the test itself: no process group)."""
    model, tokens = setup()
    return train(model, tokens), biases(model)


def topology_rank(rank: int, world: int, ep: int, dp: str) -> dict:
    model, tokens = setup()

    layout = ParallelLayout(world, ep, dp)
    layout.check_model(cfg())
    mesh = build_mesh(layout, "cpu") if ep > 1 else None
    if mesh is not None:
        apply_expert_parallel(model, mesh["ep"].get_group())
    hook = functools.partial(finish_gradients, model, layout, mesh)
    apply_data_parallel(model, init_device_mesh("cpu", (world,)), dp)
    per_rank = BATCH // world
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = train(model, tokens[:, rank * per_rank:(rank + 1) * per_rank], hook,
                   functools.partial(finish_step, model), opt)
    return {"losses": losses, "biases": biases(model),
            "state_numel": sum(p.numel() for p in opt.state),  # parameters with AdamW moments
            "numel": sum(p.numel() for p in model.parameters()),
            "weights": {k: v.clone() for k, v in model.state_dict().items()} if dp == "zero1"
            else None}


@functools.cache
def launch(world: int, ep: int, dp: str) -> list[dict]:
    return run(topology_rank, world, ep, dp, timeout=180)


@pytest.mark.parametrize(("world", "ep", "dp"), [(2, 1, "fsdp"), (2, 2, "fsdp"), (4, 2, "fsdp"),
                                                 (2, 1, "zero1"), (4, 2, "zero1")])
def test_training_matches_one_process(world, ep, dp):
    """FSDP(2), FSDP(2) x EP(2), FSDP(4) x EP(2), ZeRO-1(2) and ZeRO-1(4) x EP(2) vs one process:
    the same losses to 1e-5 relative over 10 steps, and the same expert biases on every rank as
    in one process; under ZeRO-1 every rank ends with the same whole weights."""
    ref, ref_biases = reference()
    ranks = launch(world, ep, dp)
    if dp == "zero1":
        if ep == 1:  # the moments divided: each rank about 1 / world of them, all of them once
            assert sum(r["state_numel"] for r in ranks) == ranks[0]["numel"]
            assert max(r["state_numel"] for r in ranks) < 0.7 * ranks[0]["numel"]
        for r in ranks[1:]:  # the ranks of an EP group hold different experts
            same = [k for k in r["weights"] if ".experts." not in k or ep == 1]
            assert all(torch.equal(r["weights"][k], ranks[0]["weights"][k]) for k in same)
    for r in ranks:
        assert r["losses"] == pytest.approx(ref, rel=1e-5)
        for mine, expected in zip(r["biases"], ref_biases, strict=True):
            assert torch.equal(mine, expected)
    assert ref[-1] < ref[0]  # and it trained


def test_zero1_owners_balance():
    """Whole parameters to ranks, largest first to the least loaded: the segments differ by at
    most the largest parameter, every parameter has one owner, and the split is deterministic."""
    sizes = [p.numel() for p in Transformer(cfg()).parameters()]
    for world in (2, 3, 4):
        owner = owners(sizes, world)
        loads = [sum(n for n, r in zip(sizes, owner, strict=True) if r == k) for k in range(world)]
        assert sum(loads) == sum(sizes) and min(loads) > 0
        assert max(loads) - min(loads) <= max(sizes)
        assert owner == owners(sizes, world)
    assert owners([5, 3, 3], 2) == [0, 1, 1]
