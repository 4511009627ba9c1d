import json
import subprocess
import sys
from pathlib import Path

import pytest

from minir1.cli import main

COMMANDS = ["demo", "params", "data", "pretrain", "sft", "eval"]


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

    monkeypatch.setenv("MINIR1_RUNS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="minir1 pretrain --profile ci"):
        pt.load_base("ci", train_if_missing=False)
    monkeypatch.setitem(pt.RECIPES, "ci", replace(pt.RECIPES["ci"], steps=2, eval_n=1, eval_every=0))
    model, _, meta = pt.load_base("ci", progress=False)
    assert meta["step"] == 2 and (tmp_path / "base-ci" / "checkpoint").exists()
    again, _, _ = pt.load_base("ci", train_if_missing=False)
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


def test_demo_runs_end_to_end(tmp_path, capsys, monkeypatch):
    from dataclasses import replace

    from minir1.train import pretrain as pt

    monkeypatch.setattr(pt, "DEMO_RECIPE", replace(pt.DEMO_RECIPE, eval_n=1, eval_every=0, n_docs=500))
    main(["demo", "--steps", "2", "--out", str(tmp_path / "demo"), "--data", str(tmp_path / "data")])
    out = capsys.readouterr().out
    assert "rebuilt" in out and "== 3/3 evaluate" in out and "task  level" in out
    assert out.index("trained in") < out.index("== 3/3")  # training output comes before the evaluation
    assert json.loads((tmp_path / "demo" / "eval.json").read_text())["reason"]["add_L1"] in (0.0, 1.0)
