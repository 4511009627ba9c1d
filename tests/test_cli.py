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
    main(["eval", "--ckpt", str(tmp_path / "base" / "checkpoint"), "--n", "1", "--modes", "direct"])
    out = capsys.readouterr().out
    assert "task  level   direct" in out and "add       1" in out
    main(["sft", "--init", str(tmp_path / "base" / "checkpoint"), "--out", str(tmp_path / "sft"), "--steps", "2",
          "--n-docs", "20"])
    assert "SFT: 2 steps" in capsys.readouterr().out
