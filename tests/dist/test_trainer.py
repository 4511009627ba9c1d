"""The Trainer under a launch: one process, ZeRO-1 or FSDP(2), alone and x EP(2) with gradient
accumulation, on the same global batches with unevenly masked targets, give the same losses; a
sharded checkpoint resumes at another world size, EP degree and data parallelism (FSDP 2 -> ZeRO-1
4 -> 1, and 1 -> 2) on the same losses, and loads in one process."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest
import torch

from minir1 import ModelConfig, Transformer
from minir1.data.tokenizer import Tokenizer
from minir1.dist.mesh import ParallelLayout
from minir1.dist.parallel import Parallel
from minir1.hf import from_pretrained, save_pretrained
from minir1.model.transformer import IGNORE_INDEX
from minir1.train.checkpoint import load_model
from minir1.train.loop import TrainConfig, Trainer
from tests.dist.harness import run

pytestmark = pytest.mark.xdist_group("trainer")
STEPS, ROWS, SEQ = 10, 8, 32  # ROWS: the global batch of every step, whatever the topology


def cfg() -> ModelConfig:
    return ModelConfig.preset("tiny", vocab_size=Tokenizer().vocab_size, dim=64, n_layers=2,
                              inter_dim=128, moe_inter_dim=32, max_seq_len=64,
                              original_seq_len=64, bias_update_speed=0.01)


class Stream:
    """Step ``s``'s global batch, cut into ``grad_accum`` micro-batches; each row's first targets
    are masked (like SFT's prompts), by a different amount, so ranks hold unequal token counts."""

    def __init__(self, grad_accum: int) -> None:
        self.grad_accum = grad_accum

    def batch(self, i: int) -> dict[str, torch.Tensor]:
        step, micro = divmod(i, self.grad_accum)
        g = torch.Generator().manual_seed(step)
        seq = torch.randint(0, 16, (ROWS, SEQ + 1), generator=g)  # learnable: few symbols
        targets = seq[:, 1:].clone()
        masked = torch.randint(0, SEQ - 4, (ROWS,), generator=g)
        targets[torch.arange(SEQ)[None, :] < masked[:, None]] = IGNORE_INDEX
        per = ROWS // self.grad_accum
        rows = slice(micro * per, (micro + 1) * per)
        return {"tokens": seq[rows, :-1], "targets": targets[rows]}


def trainer(grad_accum: int, out: str | None, parallel: Parallel | None) -> Trainer:
    torch.manual_seed(0)
    train_cfg = TrainConfig(steps=STEPS, batch_size=ROWS // grad_accum, seq_len=SEQ,
                            grad_accum=grad_accum, lr=3e-3, warmup_steps=2, log_every=1,
                            device="cpu")
    return Trainer(Transformer(cfg()), Stream(grad_accum), train_cfg, out_dir=out,
                   tokenizer=Tokenizer(), progress=False, parallel=parallel)


def losses(history: list[dict]) -> dict[int, float]:
    return {int(r["step"]): r["loss"] for r in history}


@functools.cache
def reference() -> tuple[dict[int, float], torch.Tensor]:
    """One process, one micro-batch per step (no process group); and its final logits."""
    t = trainer(1, None, None)
    history = t.fit()
    return losses(history), logits(t.model)


def logits(model: Transformer) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(Stream(1).batch(0)["tokens"]).logits


def rank_fn(rank: int, world: int, ep: int, grad_accum: int, out: str | None,
            stop: int | None, dp: str = "zero1") -> dict:
    """Train (resuming from ``out`` when it holds a checkpoint) to ``stop`` steps, then save."""
    t = trainer(grad_accum, out, Parallel.of_process_group(ParallelLayout(world, ep, dp)))
    if out is not None and (Path(out) / "checkpoint").exists():
        t.resume()
    rows = []
    while t.step < (stop or STEPS):
        rows.append({"step": t.step + 1, **t.train_step()})
    if out is not None:
        t.save()
    return {"losses": losses(rows), "biases": [m.gate.bias.clone() for m in t.module.moe_layers()]}


def copy(src: Path, dst: Path) -> str:
    shutil.copytree(src / "checkpoint", dst / "checkpoint")
    return str(dst)


@pytest.mark.parametrize("dp", ["zero1", "fsdp"])
@pytest.mark.parametrize(("world", "ep", "grad_accum"), [(2, 1, 1), (2, 2, 2)])
def test_trainer_matches_one_process(world, ep, grad_accum, dp):
    """ZeRO-1 or FSDP, over 2 ranks and 2 ranks x EP(2) with 2 micro-batches: the one-process
    losses (1e-5 relative) over 10 steps, equal on every rank, though the ranks hold different
    numbers of targets."""
    ref, _ = reference()
    results = run(rank_fn, world, ep, grad_accum, None, None, dp, timeout=180)
    for r in results:
        assert r["losses"] == pytest.approx(ref, rel=1e-5)
        assert r["losses"] == results[0]["losses"]
    assert ref[STEPS] < ref[1]


def test_gradient_accumulation_matches_one_batch():
    """In one process too: 2 micro-batches of 4 rows are one batch of 8 (token-weighted)."""
    t = trainer(2, None, None)
    assert losses(t.fit()) == pytest.approx(reference()[0], rel=1e-5)


def test_resume_at_other_topologies(tmp_path):
    """Steps 1-4 on FSDP(2) x EP(2), 5-7 on ZeRO-1(4) x EP(2), 8-10 in one process: the losses
    of the straight run; the one-process run's logits; the sharded checkpoint loads in one
    process and exports to a Hugging Face directory."""
    ref, ref_logits = reference()
    a = tmp_path / "a"
    first = run(rank_fn, 2, 2, 1, str(a), 4, "fsdp", timeout=180)[0]
    second = run(rank_fn, 4, 2, 1, copy(a, tmp_path / "b"), 7, "zero1", timeout=180)[0]
    resumed = trainer(1, copy(tmp_path / "b", tmp_path / "c"), None)
    resumed.resume()
    third = losses(resumed.fit(resume=True))
    got = {**first["losses"], **second["losses"], **{s: v for s, v in third.items() if s > 7}}
    assert got == pytest.approx(ref, rel=1e-5)
    model, _, meta = load_model(tmp_path / "b" / "checkpoint")
    assert meta["step"] == 7 and meta["parallel"] == {"world": 4, "ep": 2, "dp": "zero1"}
    assert torch.allclose(logits(resumed.model), ref_logits, rtol=1e-4, atol=1e-4)
    # the sharded run's checkpoint as a Hugging Face directory: the same model back
    save_pretrained(model, tmp_path / "hf")
    again = from_pretrained(tmp_path / "hf")
    torch.testing.assert_close(logits(again), logits(model))


def test_resume_zero1_at_other_world_sizes_and_into_fsdp(tmp_path):
    """Steps 1-4 on ZeRO-1(2), 5-7 on ZeRO-1(4) x EP(2), 8-10 on FSDP(2) x EP(2): each rank finds
    the moments of the parameters it now owns (or its shards of them), and the losses are the
    straight run's."""
    ref, _ = reference()
    first = run(rank_fn, 2, 1, 1, str(tmp_path / "a"), 4, "zero1", timeout=180)[0]
    second = run(rank_fn, 4, 2, 1, copy(tmp_path / "a", tmp_path / "b"), 7, "zero1",
                 timeout=180)[0]
    third = run(rank_fn, 2, 2, 1, copy(tmp_path / "b", tmp_path / "c"), None, "fsdp",
                timeout=180)[0]
    got = {**first["losses"], **second["losses"], **third["losses"]}
    assert got == pytest.approx(ref, rel=1e-5)


def test_resume_one_process_run_sharded(tmp_path):
    """1 -> 2: a one-process checkpoint at step 5 resumes on ZeRO-1(2) x EP(2) to the same
    losses, with the one-process expert biases."""
    ref, _ = reference()
    t = trainer(1, str(tmp_path / "one"), None)
    for _ in range(5):
        t.train_step()
    t.save()
    straight = trainer(1, None, None)
    straight.fit()
    results = run(rank_fn, 2, 2, 1, str(tmp_path / "one"), None, timeout=180)
    for r in results:
        assert r["losses"] == pytest.approx({s: v for s, v in ref.items() if s > 5}, rel=1e-5)
        for mine, expected in zip(r["biases"], straight.model.moe_layers(), strict=True):
            assert torch.equal(mine, expected.gate.bias)


def crash_rank_fn(rank: int, world: int, out: str) -> None:
    """Save at step 2; at step 3 every rank dies inside the save, its shards already written."""
    from minir1.train import checkpoint

    t = trainer(1, out, Parallel.of_process_group(ParallelLayout(world, 2)))
    for _ in range(2):
        t.train_step()
    t.save()
    t.train_step()
    write = checkpoint.save_training_state

    def crash(*args, **kwargs):
        write(*args, **kwargs)
        raise RuntimeError("crash mid-save")

    checkpoint.save_training_state = crash
    t.save()


def test_a_crash_mid_save_leaves_the_last_checkpoint(tmp_path):
    """A launch that dies while writing its step-3 checkpoint leaves the step-2 one in place,
    which resumes (here in one process) on the straight run's losses."""
    with pytest.raises(AssertionError, match="crash mid-save"):
        run(crash_rank_fn, 2, str(tmp_path), timeout=120)
    _, _, meta = load_model(tmp_path / "checkpoint")
    assert meta["step"] == 2
    resumed = trainer(1, str(tmp_path), None)
    resumed.resume()
    assert losses(resumed.fit(resume=True)) == pytest.approx(
        {s: v for s, v in reference()[0].items() if s > 2}, rel=1e-5)
