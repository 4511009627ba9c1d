"""The command line under torchrun: ``torchrun --nproc_per_node=N -m minir1 pretrain --ep E``
trains on the same global batches as one process (the same metrics rows, a checkpoint that loads
in one process), a failing rank brings the whole launch down at once and is named, and a bad
layout fails before any collective."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minir1.train.checkpoint import load_model

pytestmark = pytest.mark.xdist_group("torchrun")
ROOT = Path(__file__).resolve().parents[2]
PRETRAIN = ["pretrain", "--profile", "ci", "--steps", "4", "--eval-n", "0", "--eval-every", "0"]


def launch(nproc: int | None, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m minir1 ARGS`` (``nproc=None``) or torchrun with ``nproc`` processes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    runner = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}"] if nproc else [sys.executable])
    if not args[0].endswith(".py"):
        args = ("-m", "minir1", *args)
    return subprocess.run([*runner, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout)


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@functools.cache
def one_process(tmp: str) -> list[dict]:
    out = Path(tmp) / "one"
    done = launch(None, *PRETRAIN, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return rows(out)


def test_pretrain_under_torchrun_matches_one_process(tmp_path_factory):
    """2 processes x EP 2: the same metric columns and losses (1e-5) per step as one process;
    rank 0 alone wrote the run; its checkpoint loads in one process, with the same logits."""
    tmp = tmp_path_factory.mktemp("torchrun")
    ref = one_process(str(tmp))
    out = tmp / "two"
    done = launch(2, *PRETRAIN, "--ep", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    got = rows(out)
    assert [r.keys() for r in got] == [r.keys() for r in ref]
    for mine, theirs in zip(got, ref, strict=True):
        for key in ("loss", "lm_loss", "mtp_loss", "grad_norm", "maxvio", "lr"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-9), key
    assert done.stdout.count("pretrained tiny for 4 steps") == 1  # rank 0 reports, once
    two, _, meta = load_model(out / "checkpoint")
    one, _, _ = load_model(tmp / "one" / "checkpoint")
    assert meta["parallel"] == {"world": 2, "ep": 2, "dp": "zero1"} and meta["step"] == 4
    x = torch.randint(0, one.cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(two.eval()(x).logits, one.eval()(x).logits,
                                   rtol=1e-4, atol=1e-4)


def test_a_failing_rank_stops_every_rank(tmp_path):
    """Rank 1 raises at step 2 while rank 0 waits in the step's all-reduce: the launch exits
    non-zero well within 60 s, and the output names the failed rank and its error."""
    t0 = time.monotonic()
    done = launch(2, str(ROOT / "tests/dist/faulty_rank.py"), *PRETRAIN, "--out",
                  str(tmp_path / "run"), timeout=120)
    elapsed = time.monotonic() - t0
    assert done.returncode != 0
    assert elapsed < 60, elapsed
    assert "rank 1 of 2 failed: RuntimeError: injected fault" in done.stderr
    assert not (tmp_path / "run" / "checkpoint").exists()


@pytest.mark.parametrize(("nproc", "ep", "message"), [
    (2, 3, "ep=3 must divide world=2"),
    (None, 2, "--ep 2 needs several processes"),
    (3, 1, "TrainConfig.batch_size=16 must be divisible by world=3"),
])
def test_bad_layouts_fail_before_any_collective(tmp_path, nproc, ep, message):
    """A layout that cannot work raises with its rule on every rank alike: before joining the
    process group, or (the recipe's batch, known once the recipe runs) before the model is
    sharded; so no rank waits for a collective that never comes."""
    done = launch(nproc, *PRETRAIN, "--ep", str(ep), "--out", str(tmp_path / "run"), timeout=120)
    assert done.returncode != 0
    assert message in done.stderr
    assert not (tmp_path / "run").exists()
