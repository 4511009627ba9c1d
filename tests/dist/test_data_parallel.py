"""FSDP2, alone and with expert parallelism, trains exactly like one process on the global batch."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from minir1 import ModelConfig, Transformer
from minir1.dist.data_parallel import apply_data_parallel, finish_gradients
from minir1.dist.expert_parallel import apply_expert_parallel
from minir1.dist.mesh import ParallelLayout, build_mesh
from tests.dist.harness import run

pytestmark = pytest.mark.xdist_group("data_parallel")
STEPS, BATCH, SEQ = 10, 4, 32  # the global batch: every topology trains on the same tokens


def cfg() -> ModelConfig:
    return ModelConfig.preset("tiny", dim=64, n_layers=2, inter_dim=128, moe_inter_dim=32,
                              max_seq_len=64, original_seq_len=64, bias_update_speed=0.01)


def train(model: Transformer, tokens: torch.Tensor, after_backward=None) -> list[float]:
    """AdamW steps with the aux-loss-free bias update, as the Trainer does."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
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


def topology_rank(rank: int, world: int, ep: int) -> dict:
    model, tokens = setup()

    layout = ParallelLayout(world, ep)
    layout.check_model(cfg())
    mesh = build_mesh(layout, "cpu") if ep > 1 else None
    if mesh is not None:
        apply_expert_parallel(model, mesh["ep"].get_group())
    hook = functools.partial(finish_gradients, model, layout, mesh)
    apply_data_parallel(model, init_device_mesh("cpu", (world,)))
    per_rank = BATCH // world
    losses = train(model, tokens[:, rank * per_rank:(rank + 1) * per_rank], hook)
    return {"losses": losses, "biases": biases(model)}


@functools.cache
def launch(world: int, ep: int) -> list[dict]:
    return run(topology_rank, world, ep, timeout=180)


@pytest.mark.parametrize(("world", "ep"), [(2, 1), (2, 2), (4, 2)])
def test_training_matches_one_process(world, ep):
    """FSDP(2), FSDP(2) x EP(2), FSDP(4) x EP(2) vs one process: the same losses to 1e-5
    relative over 10 steps, and the same expert biases on every rank as in one process."""
    ref, ref_biases = reference()
    for r in launch(world, ep):
        assert r["losses"] == pytest.approx(ref, rel=1e-5)
        for mine, expected in zip(r["biases"], ref_biases, strict=True):
            assert torch.equal(mine, expected)
    assert ref[-1] < ref[0]  # and it trained
