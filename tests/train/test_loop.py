"""The training loop: schedule, logs, periodic evaluation, bit-exact resume, NaN stop."""

import json

import pytest
import torch

from minir1.train.loop import TrainConfig, Trainer, lr_at
from tests.conftest import TOK, small_model, stream
from tests.train.conftest import cfg


def test_periodic_evaluation_rows(tmp_path):
    calls = []

    def check(model):
        calls.append(model.training)
        return {"val_loss": 1.0}

    c = TrainConfig(steps=7, batch_size=4, seq_len=48, lr=3e-3, warmup_steps=2, log_every=5,
                    eval_every=3)
    trainer = Trainer(small_model(), stream(), c, out_dir=tmp_path, tokenizer=TOK, eval_fn=check,
                      progress=False)
    history = trainer.fit()
    # rows at the log steps (5, 7) and the eval steps (3, 6), evaluated at 3, 6 and the last step
    assert [r["step"] for r in history] == [3, 5, 6, 7]
    assert [r["step"] for r in history if "val_loss" in r] == [3, 6, 7] and len(calls) == 3
    assert "val_loss" in (tmp_path / "metrics.csv").read_text().splitlines()[0]


def test_lr_schedule():
    c = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(0.1) and lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(10, c) == pytest.approx(1.0)
    assert lr_at(55, c) == pytest.approx(0.55)  # halfway through the cosine
    assert lr_at(100, c) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


def test_training_reduces_loss_and_logs(tmp_path):
    trainer = Trainer(small_model(), stream(), cfg(steps=30), out_dir=tmp_path, tokenizer=TOK,
                      progress=False)
    history = trainer.fit()
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    assert {"lm_loss", "mtp_loss", "balance_loss", "lr", "grad_norm", "maxvio"} <= set(rows[0])
    assert (tmp_path / "metrics.csv").read_text().startswith("step,loss")


def test_resume_is_bit_exact(tmp_path):
    straight = Trainer(small_model(), stream(), cfg(steps=6), out_dir=tmp_path / "a", tokenizer=TOK,
                       progress=False)
    straight.fit()
    first = Trainer(small_model(), stream(), cfg(steps=3), out_dir=tmp_path / "b", tokenizer=TOK,
                    progress=False)
    first.fit()
    resumed = Trainer(small_model(seed=99), stream(), cfg(steps=6), out_dir=tmp_path / "b",
                      tokenizer=TOK, progress=False)
    resumed.fit(resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_nan_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    trainer = Trainer(small_model(), stream(), cfg(steps=4, ckpt_every=2), out_dir=tmp_path,
                      tokenizer=TOK, progress=False)
    trainer.cfg.steps = 2
    trainer.fit()
    saved = (tmp_path / "checkpoint" / "model.safetensors").read_bytes()
    trainer.cfg.steps = 4
    with torch.no_grad():
        trainer.model.layers[0].attn.wo.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"step 2.*last good checkpoint"):
        trainer.fit(resume=False)
    assert (tmp_path / "checkpoint" / "model.safetensors").read_bytes() == saved


def test_eval_keys_that_collide_with_training_metrics_are_refused():
    c = TrainConfig(steps=1, batch_size=4, seq_len=48, warmup_steps=0, eval_every=1)
    trainer = Trainer(small_model(), stream(), c, eval_fn=lambda m: {"lm_loss": 0.0},
                      progress=False)
    with pytest.raises(ValueError, match=r"\['lm_loss'\].*another name"):
        trainer.fit()


def test_the_loop_trains_in_memory_without_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = TrainConfig(steps=3, batch_size=4, seq_len=48, warmup_steps=1, log_every=1)
    trainer = Trainer(small_model(), stream(), c, progress=False)
    history = trainer.fit()
    assert [r["step"] for r in history] == [1, 2, 3] and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no out_dir"):
        trainer.save()
    with pytest.raises(ValueError, match="out_dir needs the tokenizer"):
        Trainer(small_model(), stream(), c, out_dir=tmp_path / "run")


def test_a_micro_batch_without_targets_adds_nothing():
    """Its cross-entropy mean is 0/0; its share of the step's loss is zero, not NaN: 2
    micro-batches, the second fully masked, train like the first alone."""
    from minir1.model.transformer import IGNORE_INDEX

    class HalfMasked:
        def __init__(self, inner):
            self.inner = inner

        def batch(self, i):
            b = self.inner.batch(i // 2)
            if i % 2:
                b = {**b, "targets": torch.full_like(b["targets"], IGNORE_INDEX)}
            return b

    torch.manual_seed(0)
    masked = Trainer(small_model(), HalfMasked(stream()), cfg(steps=3, grad_accum=2),
                     progress=False)
    torch.manual_seed(0)
    alone = Trainer(small_model(), stream(), cfg(steps=3), progress=False)
    a, b = masked.train_step(), alone.train_step()
    assert a["lm_loss"] == pytest.approx(b["lm_loss"], rel=1e-6)
    # later steps differ a little (the masked rows still route, so the expert biases move
    # differently) but stay finite
    assert all(torch.isfinite(torch.tensor(masked.train_step()["loss"])) for _ in range(2))


def test_fit_reads_the_metrics_from_the_device_only_on_logging_steps(monkeypatch):
    """``train_step(read=False)`` leaves the metrics as device tensors; ``fit`` reads them only on
    logging steps (one transfer), and the rows are those ``train_step()`` returns."""
    from minir1.train import loop

    c = TrainConfig(steps=4, batch_size=4, seq_len=48, warmup_steps=1, log_every=2)
    torch.manual_seed(0)
    lazy = Trainer(small_model(), stream(), c, progress=False)
    raw = lazy.train_step(read=False)
    assert all(isinstance(raw[k], torch.Tensor) for k in ("loss", "grad_norm", "maxvio"))
    reads = []
    real = loop.read_metrics
    monkeypatch.setattr(loop, "read_metrics", lambda m: reads.append(1) or real(m))
    lazy.step = 0
    history = lazy.fit()
    assert [r["step"] for r in history] == [2, 4] and len(reads) == 2
    torch.manual_seed(0)
    eager = Trainer(small_model(), stream(), c, progress=False)
    eager.train_step()
    eager.step = 0
    monkeypatch.setattr(loop, "read_metrics", real)
    rows = [eager.train_step() for _ in range(4)]
    for got, want in zip(history, (rows[1], rows[3]), strict=True):
        assert {k: got[k] for k in ("loss", "lm_loss", "grad_norm", "maxvio")} == {
            k: want[k] for k in ("loss", "lm_loss", "grad_norm", "maxvio")}


@pytest.mark.gpu
def test_training_on_cuda_in_bf16_autocast_keeps_fp32_master_weights():
    """The trainer on CUDA: bf16 autocast, fp32 weights and AdamW state, a fused AdamW, the loss
    falling, and the first step's loss that of the CPU within bf16 precision."""
    c = TrainConfig(steps=8, batch_size=8, seq_len=48, warmup_steps=2, lr=3e-3, device="cuda",
                    log_every=1)
    torch.manual_seed(0)
    cpu_first = Trainer(small_model(), stream(8), TrainConfig(
        steps=1, batch_size=8, seq_len=48, warmup_steps=2, lr=3e-3, device="cpu"),
        progress=False).train_step()["loss"]
    torch.manual_seed(0)
    t = Trainer(small_model(), stream(8), c, progress=False)
    assert t.optimizer.defaults.get("fused") or t.optimizer.defaults.get("foreach")
    history = t.fit()
    assert abs(history[0]["loss"] - cpu_first) < 2e-2 * cpu_first
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(p.dtype == torch.float32 and p.is_cuda for p in t.model.parameters())
    state = next(iter(t.optimizer.state.values()))
    assert state["exp_avg"].dtype == torch.float32


@pytest.mark.parametrize("device", [pytest.param("cpu", marks=pytest.mark.slow),
                                    pytest.param("cuda", marks=pytest.mark.gpu)])
def test_the_compiled_bf16_step_is_one_graph_that_stops_recompiling(device, monkeypatch):
    """``compile=True`` on the accelerator's path (bf16 autocast, the routed experts as one grouped
    GEMM, so no host sync on the expert counts): no graph break, nothing compiled after the second
    step, and the losses of the eager step within bf16 precision. A CPU runs the same path under
    its own bf16 autocast with the grouped experts forced (several minutes to compile: slow)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from minir1.model.grouped import grouped_support
    from minir1.model.moe import set_expert_impl

    model = small_model()
    w1 = model.moe_layers()[0].experts[0].w1.weight
    if why := grouped_support(torch.device(device), torch.bfloat16, tuple(w1.shape)):
        pytest.skip(why)
    if device == "cpu":  # the trainer keeps a CPU in fp32; the test wants the accelerator's path
        monkeypatch.setattr(Trainer, "_autocast",
                            lambda self: torch.autocast("cpu", dtype=torch.bfloat16))
    c = dict(steps=8, batch_size=4, seq_len=48, warmup_steps=2, device=device)
    losses = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = small_model()
        set_expert_impl(model, "grouped")
        trainer = Trainer(model, stream(), TrainConfig(**c, compile=compiled), progress=False)
        torch._dynamo.reset()
        counters.clear()
        losses[compiled] = [trainer.train_step()["loss"] for _ in range(2)]
        graphs = counters["stats"]["unique_graphs"]
        losses[compiled] += [trainer.train_step()["loss"] for _ in range(3)]
    assert counters["graph_break"] == {}, dict(counters["graph_break"])
    assert 1 <= graphs <= 2 and counters["stats"]["unique_graphs"] == graphs
    for eager, comp in zip(losses[False], losses[True], strict=True):
        assert abs(comp - eager) < 2e-2 * eager, (losses[False], losses[True])
