import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minir1.cli import main

COMMANDS = ["demo", "params", "data", "pretrain", "sft", "eval", "r1-zero", "r1", "distill"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    out = subprocess.run([sys.executable, "-m", "minir1.cli", command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: minir1" in out.stdout


def test_params(capsys):
    main(["params", "--preset", "v2-lite"])
    assert "15,706,484,224" in capsys.readouterr().out


def test_data_rebuilds_the_committed_sets(tmp_path, capsys):
    main(["data", "--out", str(tmp_path)])
    committed = Path(__file__).resolve().parents[1] / "data" / "MANIFEST.json"
    assert json.loads((tmp_path / "MANIFEST.json").read_text()) == json.loads(committed.read_text())
    assert "checksums verified" in capsys.readouterr().out


def test_pretrain_then_eval_and_sft(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINIR1_PROFILE", "ci")
    main(["pretrain", "--steps", "3", "--eval-n", "1", "--out", str(tmp_path / "base")])
    assert (tmp_path / "base" / "checkpoint" / "model.safetensors").exists()
    assert "free" in json.loads((tmp_path / "base" / "eval.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "base" / "metrics.jsonl").read_text().splitlines()]
    assert {"val_loss", "direct_acc", "reason_acc"} <= set(rows[-1])  # the held-out check ran at the end
    assert "val_loss" in (tmp_path / "base" / "metrics.csv").read_text().splitlines()[0]
    main(["eval", "--ckpt", str(tmp_path / "base" / "checkpoint"), "--n", "1", "--modes", "direct",
          "--out", str(tmp_path / "eval" / "acc.json")])
    assert set(json.loads((tmp_path / "eval" / "acc.json").read_text())["direct"]) >= {"add_L1", "expr_L4"}
    out = capsys.readouterr().out
    assert "task  level   direct" in out and "add       1" in out
    main(["sft", "--init", str(tmp_path / "base" / "checkpoint"), "--out", str(tmp_path / "sft"), "--steps", "2",
          "--n-docs", "20"])
    assert "SFT: 2 steps" in capsys.readouterr().out


def test_load_base_trains_once_then_loads(tmp_path, monkeypatch):
    from dataclasses import replace

    from minir1.train import pretrain as pt
    from minir1.train import runs

    monkeypatch.setenv("MINIR1_RUNS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="minir1 pretrain --profile ci"):
        runs.load_base("ci", train_if_missing=False)
    monkeypatch.setitem(pt.PRETRAIN_RECIPES, "ci",
                        replace(pt.PRETRAIN_RECIPES["ci"], steps=2, eval_n=1, eval_every=0))
    model, _, meta = runs.load_base("ci", progress=False)
    assert meta["step"] == 2 and (tmp_path / "base-ci" / "checkpoint").exists()
    again, _, _ = runs.load_base("ci", train_if_missing=False)
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


def test_load_student_base_trains_the_student_preset(tmp_path, monkeypatch):
    from dataclasses import replace

    from minir1.train import pretrain as pt
    from minir1.train import runs

    monkeypatch.setenv("MINIR1_RUNS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="minir1 pretrain --student --profile ci"):
        runs.load_base("ci", train_if_missing=False, kind="student")
    monkeypatch.setitem(pt.STUDENT_RECIPES, "ci", replace(pt.STUDENT_RECIPES["ci"], steps=2, eval_n=0, eval_every=0))
    model, _, meta = runs.load_base("ci", progress=False, kind="student")
    assert meta["step"] == 2 and (tmp_path / "student-ci" / "checkpoint").exists()
    assert model.cfg.n_dense_layers == model.cfg.n_layers and not model.moe_layers() and model.cfg.n_mtp_modules == 0
    with pytest.raises(ValueError, match="kind='teacher'"):
        runs.base_dir("ci", kind="teacher")


def test_shipped_student_is_in_the_repository_and_smaller_than_the_base():
    from minir1 import count_params
    from minir1.train.runs import load_rl_base, shipped_base_dir

    meta = json.loads((shipped_base_dir("student") / "config.json").read_text())
    assert meta["extra"]["stored_dtype"] == "float16" and meta["extra"]["shipped_from"].startswith(
        "minir1 pretrain --student")
    student = count_params(load_rl_base("ci", progress=False, kind="student")[0].cfg)
    teacher = count_params(load_rl_base("ci", progress=False)[0].cfg)
    assert student.total < teacher.activated < teacher.total


def test_r1_and_distill_commands(tmp_path, capsys, monkeypatch, micro):
    from minir1.rl import distill, pipeline

    monkeypatch.setitem(pipeline.PIPELINE_RECIPES, "ci", micro.pipeline)
    monkeypatch.setitem(distill.DISTILL_RECIPES, "ci", micro.distill)
    main(["r1", "--profile", "ci", "--out", str(tmp_path / "r1")])
    out = capsys.readouterr().out
    assert "rejection sampling:" in out and "| dev3-rejection-sft |" in out
    traces = tmp_path / "r1" / "traces.jsonl"
    main(["distill", "--profile", "ci", "--traces", str(traces), "--out", str(tmp_path / "d")])
    out = capsys.readouterr().out
    assert f"{len(traces.read_text().splitlines())} teacher traces from given" in out
    assert "| student RL-only |" in out and (tmp_path / "d" / "results.json").exists()


def test_ship_base_stores_float16_and_load_rl_base_prefers_a_trained_run(tmp_path, monkeypatch):
    from minir1 import ModelConfig, Transformer
    from minir1.data.tokenizer import Tokenizer
    from minir1.train import runs
    from minir1.train.checkpoint import save_checkpoint

    tok = Tokenizer()
    torch.manual_seed(0)
    model = Transformer(ModelConfig.preset("tiny", vocab_size=tok.vocab_size, dim=64, n_layers=2))
    save_checkpoint(tmp_path / "trained", model, tok, step=7)
    shipped = runs.ship_base(tmp_path / "trained", tmp_path / "shipped")
    assert safetensors_dtypes(shipped / "model.safetensors") == {"F16"}
    monkeypatch.setattr(runs, "shipped_base_dir", lambda kind="base": shipped)
    monkeypatch.setenv("MINIR1_RUNS", str(tmp_path / "runs"))  # no runs/base-cpu: the shipped copy is used
    loaded, _, meta = runs.load_rl_base("ci")
    assert meta["step"] == 7 and meta["extra"]["stored_dtype"] == "float16"
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert b.dtype == a.dtype and torch.equal(a.half().to(a.dtype), b), name
    save_checkpoint(tmp_path / "runs" / "base-cpu" / "checkpoint", model, tok, step=9)  # a trained run wins
    assert runs.load_rl_base("cpu")[2]["step"] == 9


def safetensors_dtypes(path):
    header = json.loads(path.read_bytes()[8:8 + int.from_bytes(path.read_bytes()[:8], "little")])
    return {v["dtype"] for k, v in header.items() if k != "__metadata__" and v["dtype"].startswith("F")}


def test_shipped_base_model_is_in_the_repository():
    from minir1.train.runs import shipped_base_dir

    meta = json.loads((shipped_base_dir() / "config.json").read_text())
    assert meta["step"] == 5000 and meta["extra"]["stored_dtype"] == "float16"
    assert safetensors_dtypes(shipped_base_dir() / "model.safetensors") == {"F16"}


def test_demo_runs_end_to_end(tmp_path, capsys, monkeypatch, micro):
    from dataclasses import replace

    from minir1 import demo
    from minir1.rl import distill, pipeline

    monkeypatch.setattr(demo, "DEMO_RECIPE", replace(demo.DEMO_RECIPE, eval_n=1, eval_every=0, n_docs=500))
    monkeypatch.setitem(pipeline.PIPELINE_RECIPES, "cpu", micro.pipeline)
    monkeypatch.setitem(distill.DISTILL_RECIPES, "cpu", micro.distill)
    main(["demo", "--steps", "2", "--out", str(tmp_path / "demo"), "--data", str(tmp_path / "data")])
    out = capsys.readouterr().out
    assert "rebuilt" in out and "== 3/4 the R1 pipeline" in out and "task  level" in out
    assert out.index("trained in") < out.index("== 3/4") < out.index("== 4/4 distillation")
    assert json.loads((tmp_path / "demo" / "eval.json").read_text())["reason"]["add_L1"] in (0.0, 1.0)
    table = (tmp_path / "demo" / "results.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == [
        "| base", "| r1-zero", "| dev1-cold-start", "| dev2-reasoning-rl", "| dev3-rejection-sft", "| r1",
        "| student base", "| student distilled", "| student RL-only"]
