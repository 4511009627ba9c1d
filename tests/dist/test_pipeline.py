"""Pipeline schedules run for real on gloo processes (``minir1.dist.pipeline``): each of 1F1B,
ZB1P, DualPipe and DualPipeV, in the order ``minir1.plan.schedule`` simulates, gives the losses and
the gradients of one process computing the same step (in float64, to rounding), as the DualPipe
repository checks its own code; and the check fails when the mirrored copies are not summed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minir1.dist import pipeline
from minir1.dist.pipeline import (
    Pipeline,
    build,
    n_ranks,
    rank_of,
    split_transformer,
    stages_on,
)
from minir1.model.transformer import next_token_loss
from minir1.plan.schedule import SCHEDULES, orders, simulate
from tests.dist.harness import run

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- no processes

@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("pp", [2, 4, 6])
def test_every_chunk_of_the_order_runs_where_its_stage_lives(schedule, pp):
    m = 2 * pp
    for rank, order in enumerate(orders(schedule, pp, m)):
        for op in (op for slot in order for op in slot):
            assert rank_of(schedule, pp, op.stage, op.direction) == rank
            assert op.stage in stages_on(schedule, pp, rank)
    placed = [s for r in range(n_ranks(schedule, pp)) for s in stages_on(schedule, pp, r)]
    copies = 2 if schedule == "DualPipe" else 1  # V3 Table 2: DualPipe holds 2x parameters
    assert sorted(placed) == sorted(list(range(pp)) * copies)


def test_the_stages_chained_are_the_model():
    model = build(4, dtype=torch.float64)
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 12))
    for pp in (2, 3, 4):
        x = tokens
        for stage in split_transformer(model, pp):
            x = stage(x)
        torch.testing.assert_close(x, model(tokens).logits, rtol=0, atol=0)
    stages = split_transformer(model, 3)
    assert [len(s.blocks) for s in stages] == [2, 1, 1]
    assert stages[0].embed is model.embed and stages[-1].head is model.head


def test_split_transformer_rejects_what_it_cannot_place():
    model = build(4)
    with pytest.raises(ValueError, match="pp=5 must be between 2 and the model's 4 layers"):
        split_transformer(model, 5)
    from minir1 import ModelConfig, Transformer

    with pytest.raises(ValueError, match="drop_mtp"):
        split_transformer(Transformer(ModelConfig.preset("tiny")), 2)


# ----------------------------------------------------------------------------- on processes

def _check(rank, world, schedule, pp, m, rows, seq_len):
    return pipeline.check(schedule, pp, m, rows=rows, seq_len=seq_len, dtype=torch.float64)


@pytest.mark.parametrize("schedule,pp,m,rows,seq_len", [
    ("DualPipe", 2, 4, 2, 16),
    ("DualPipe", 4, 8, 2, 16),
    ("DualPipe", 4, 12, 1, 2),  # two tokens per micro-batch: some experts see none
    ("DualPipeV", 4, 4, 2, 16),
    ("DualPipeV", 4, 6, 1, 2),
    ("1F1B", 2, 3, 2, 16),
    ("ZB1P", 4, 6, 2, 16),
])
def test_schedule_equals_one_process(schedule, pp, m, rows, seq_len):
    (report, *_) = run(_check, n_ranks(schedule, pp), schedule, pp, m, rows, seq_len)
    assert report["losses_equal"], report
    assert report["grads_mismatched"] == 0, report
    assert report["max_grad_rel_diff"] < 1e-12, report
    # the activations each rank really held peak where the simulated timeline says they do
    timeline = simulate(schedule, pp, m)
    assert report["peak_activations_per_rank"] == [timeline.activations(r)
                                                   for r in range(timeline.ranks)], report


def _unsummed(rank, world):
    """DualPipe with the mirrored copies' gradients left apart: each copy saw half the step."""
    Pipeline._sum_mirrored_gradients = lambda self: None
    return pipeline.check("DualPipe", 2, 4, dtype=torch.float64)


def test_the_check_fails_when_the_mirrored_copies_are_not_summed():
    (report, *_) = run(_unsummed, 2)
    assert report["losses_equal"]  # the forward passes are right
    assert report["max_grad_rel_diff"] > 0.1, report


def _misuse(rank, world):
    model = build(2)
    stages = split_transformer(model, 2)
    shape = (2, 16, model.cfg.dim)
    errors = []
    for kwargs in ({"stages": {rank: stages[rank]}, "schedule": "DualPipe", "m": 4},
                   {"stages": {0: stages[0], 1: stages[1]}, "schedule": "DualPipeV", "m": 4},
                   {"stages": {0: stages[0], 1: stages[1]}, "schedule": "DualPipe", "m": 3},
                   {"stages": {0: stages[0], 1: stages[1]}, "schedule": "GPipe", "m": 4}):
        try:
            Pipeline(kwargs["stages"], kwargs["schedule"], 2, kwargs["m"], next_token_loss, shape)
        except ValueError as e:
            errors.append(str(e))
    pipe = Pipeline({0: stages[0], 1: stages[1]}, "DualPipe", 2, 4, next_token_loss, shape)
    try:
        pipe.step([], [])
    except ValueError as e:
        errors.append(str(e))
    return errors


def test_misuse_is_named():
    errors = run(_misuse, 2)[0]
    assert len(errors) == 5, errors
    assert "was given stages [0]; under DualPipe it holds stages [0, 1]" in errors[0]
    assert "has 2 ranks; DualPipeV with pp=2 runs on 1" in errors[1]
    assert "micro_batches=3 must be >= 4" in errors[2]
    assert "schedule='GPipe' must be one of" in errors[3]
    assert "got 0 inputs and 0 targets" in errors[4]


@pytest.mark.xdist_group("torchrun")
def test_the_command_under_torchrun():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "minir1.dist.pipeline", "--schedule", "DualPipeV", "--pp", "4",
         "--micro-batches", "4"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["stages_per_rank"] == [[0, 3], [1, 2]]
    assert report["losses_equal"] and report["grads_mismatched"] == 0
    assert report["max_grad_rel_diff"] < 1e-5  # float32: the sums run in another order
