"""GRPO under a launch: on the same rollouts, 2 processes (each holding whole groups) make the
one-process update: the same losses, the same new weights."""

from __future__ import annotations

import functools

import pytest
import torch

from minir1 import ModelConfig, Transformer
from minir1.data.tokenizer import Tokenizer
from minir1.dist.mesh import ParallelLayout
from minir1.dist.parallel import Parallel
from minir1.rl.trainer import GRPOConfig, GRPOTrainer
from tests.dist.harness import run

pytestmark = pytest.mark.xdist_group("grpo")
PROMPTS, GROUP, UPDATES = 4, 4, 3
TOK = Tokenizer()


def rollout() -> dict:
    """A fixed rollout: prompts and completions of uneven lengths, rewards that vary in groups."""
    g = torch.Generator().manual_seed(0)
    prompts, completions = [], []
    for _i in range(PROMPTS):
        prompt = torch.randint(4, 40, (int(torch.randint(3, 9, (1,), generator=g)),),
                               generator=g).tolist()
        for _ in range(GROUP):
            prompts.append(prompt)
            n = int(torch.randint(1, 12, (1,), generator=g))
            completions.append(torch.randint(4, 40, (n,), generator=g).tolist())
    rewards = torch.randint(0, 3, (PROMPTS * GROUP,), generator=g).float()
    return {"prompts": prompts, "completions": completions, "rewards": rewards}


def groups_of(roll: dict, rank: int, world: int) -> dict:
    per = len(roll["prompts"]) // world
    rows = slice(rank * per, (rank + 1) * per)
    return {"prompts": roll["prompts"][rows], "completions": roll["completions"][rows],
            "rewards": roll["rewards"][rows]}


def trainer(aggregation: str, parallel: Parallel | None) -> GRPOTrainer:
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", vocab_size=TOK.vocab_size, dim=64, n_layers=2,
                             inter_dim=128, moe_inter_dim=32, max_seq_len=64, original_seq_len=64)
    grpo = GRPOConfig(prompts_per_step=PROMPTS, group_size=GROUP, kl_beta=0.05,
                      aggregation=aggregation)
    t = GRPOTrainer(Transformer(cfg), TOK, grpo, parallel=parallel)
    # plain SGD, so the update is the gradient itself: AdamW's first steps are +-lr whatever a
    # gradient's size, which would turn float noise in near-zero gradients into full-size steps
    t.optimizer = torch.optim.SGD(t.module.parameters(), lr=1.0)
    return t


def updates(t: GRPOTrainer, roll: dict) -> list[float]:
    """UPDATES policy updates on the same rollout (from the second on, ratio and KL move)."""
    losses = []
    for _ in range(UPDATES):
        t.sync_model()
        _, _, _, stats = t.update(roll)
        losses.append(stats[0].loss.detach())
    return losses


@functools.cache
def reference(aggregation: str) -> tuple[list[float], dict[str, torch.Tensor]]:
    t = trainer(aggregation, None)
    losses = updates(t, rollout())
    return [x.item() for x in losses], t.model.state_dict()


def rank_fn(rank: int, world: int, ep: int, aggregation: str, dp: str) -> dict:
    parallel = Parallel.of_process_group(ParallelLayout(world, ep, dp))
    t = trainer(aggregation, parallel)
    losses = updates(t, groups_of(rollout(), rank, world))
    # the global loss of each update: the ranks' shares summed
    shares = [parallel.sum(x.reshape(1) * t.loss_share(torch.ones(1, 1))).item()
              if aggregation != "token" else None for x in losses]
    return {"shares": shares, "state": parallel.full_state_dict(t.module)}


@pytest.mark.parametrize(("ep", "aggregation", "dp"), [(1, "sequence", "zero1"),
                                                      (2, "token", "zero1"), (2, "token", "fsdp")])
def test_grpo_update_matches_one_process(ep, aggregation, dp):
    """2 processes (ZeRO-1(2), ZeRO-1(2) x EP(2), FSDP(2) x EP(2)), each with 2 of the 4 groups:
    after 3 updates on the same rollout every weight equals the one-process run's (1e-5), and the
    sequence-mean loss, summed over the ranks' shares, is the one-process loss."""
    ref_losses, ref_state = reference(aggregation)
    results = run(rank_fn, 2, ep, aggregation, dp, timeout=180)
    state = results[0]["state"]
    assert state.keys() == ref_state.keys()
    for name, value in ref_state.items():
        torch.testing.assert_close(state[name], value, rtol=1e-5, atol=1e-6, msg=name)
    if aggregation == "sequence":
        # the first update starts at ratio 1 with advantages summing to 0: a loss of ~1e-8
        assert results[0]["shares"] == pytest.approx(ref_losses, rel=1e-5, abs=1e-7)
    moved = trainer(aggregation, None).model.state_dict()
    assert any(not torch.equal(moved[k], v) for k, v in ref_state.items())  # it did update
