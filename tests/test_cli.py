import json
import subprocess
import sys
from pathlib import Path

import pytest

from minir1.cli import main

COMMANDS = ["demo", "params", "plan", "data", "pretrain", "sft", "eval", "r1-zero", "r1",
            "distill", "chat", "serve"]


def test_the_command_list_is_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "minir1.cli", "--help"], capture_output=True,
                         text=True).stdout
    listed = out[out.index("{") + 1:out.index("}")].split(",")
    assert sorted(listed) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    out = subprocess.run([sys.executable, "-m", "minir1.cli", command, "--help"],
                         capture_output=True, text=True)
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
    rows = [json.loads(line)
            for line in (tmp_path / "base" / "metrics.jsonl").read_text().splitlines()]
    # the held-out check ran at the end
    assert {"val_loss", "direct_acc", "reason_acc"} <= set(rows[-1])
    assert "val_loss" in (tmp_path / "base" / "metrics.csv").read_text().splitlines()[0]
    main(["eval", "--ckpt", str(tmp_path / "base" / "checkpoint"), "--n", "1", "--modes", "direct",
          "--out", str(tmp_path / "eval" / "acc.json")])
    assert set(json.loads((tmp_path / "eval" / "acc.json").read_text())["direct"]) >= {
        "add_L1", "expr_L4"}
    out = capsys.readouterr().out
    assert "task  level   direct" in out and "add       1" in out
    main(["sft", "--init", str(tmp_path / "base" / "checkpoint"), "--out", str(tmp_path / "sft"),
          "--steps", "2", "--n-docs", "20"])
    assert "SFT: 2 steps" in capsys.readouterr().out


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


def test_demo_runs_end_to_end(tmp_path, capsys, monkeypatch, micro):
    from dataclasses import replace

    from minir1 import demo
    from minir1.rl import distill, pipeline

    monkeypatch.setattr(demo, "DEMO_RECIPE",
                        replace(demo.DEMO_RECIPE, eval_n=1, eval_every=0, n_docs=500))
    monkeypatch.setitem(pipeline.PIPELINE_RECIPES, "cpu", micro.pipeline)
    monkeypatch.setitem(distill.DISTILL_RECIPES, "cpu", micro.distill)
    main(["demo", "--steps", "2", "--out", str(tmp_path / "demo"),
          "--data", str(tmp_path / "data")])
    out = capsys.readouterr().out
    assert "rebuilt" in out and "== 3/4 the R1 pipeline" in out and "task  level" in out
    assert out.index("trained in") < out.index("== 3/4") < out.index("== 4/4 distillation")
    assert json.loads((tmp_path / "demo" / "eval.json").read_text())["reason"]["add_L1"] in (
        0.0, 1.0)
    table = (tmp_path / "demo" / "results.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == [
        "| base", "| r1-zero", "| dev1-cold-start", "| dev2-reasoning-rl", "| dev3-rejection-sft",
        "| r1", "| student base", "| student distilled", "| student RL-only"]
