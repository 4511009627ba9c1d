"""The report card (``minir1.report``): built from a fake run directory written by the same writers
the pipeline uses, then once from a real (micro) ``minir1 r1`` run."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from minir1.data.tasks import Problem
from minir1.eval.greedy import EvalResult
from minir1.eval.sampled import format_results
from minir1.report import relative_command, write_report
from minir1.rl.pipeline import STAGES, save_samples
from minir1.train.log import MetricsLog

GOOD = "<think>7+9=16,4+8+1=13,3+5+1=9</think><answer>936</answer>"
BAD = "<think></think><answer>935</answer>"
RL = {"r1-zero": "r1_zero", "dev2-reasoning-rl": "chat", "r1": "chat"}


def row(stage: str, template: str, pass1: float) -> dict:
    """A results row as ``Scoreboard.record`` makes it."""
    return {"stage": stage, "template": template, "train_seconds": 12.5, "pass1": pass1,
            "majk": pass1, "passk": pass1, "k": 4, "format": 1.0, "reasoning": 0.5,
            "length": 30.0, "pass1_by_task": {"add": pass1, "expr": pass1 / 2}}


def fake_part(part: Path, stages: list[str], command: str, timed: bool = True) -> dict:
    """A run part as ``run_r1_pipeline`` writes it: ``results.json``, and for the RL stages
    ``grpo.jsonl`` (``MetricsLog``) and ``samples.json`` (``save_samples``)."""
    problem = Problem("add", 3, "357+579", 936, ("7+9=16",))
    for stage in stages:
        if stage.removeprefix("student ").lower() not in ("r1-zero", "dev2-reasoning-rl", "r1",
                                                          "rl-only"):
            continue
        out = part / stage.removeprefix("student ").lower()
        log = MetricsLog(out / "grpo.jsonl")
        log.append({"step": 0, "heldout_accuracy": 0.1, "heldout_length": 8.0})
        log.append({"step": 1, "reward": 1.2, "accuracy": 0.3, "length": 20.0,
                    "heldout_accuracy": 0.4, "heldout_length": 25.0, "step_s": 1.0})
        results = [EvalResult(problem, "free", text, ok, True, ok)
                   for text, ok in ((GOOD, True), (BAD, False))]
        save_samples(out / "samples.json", SimpleNamespace(samples={1: [("357+579", GOOD, 2.0)]}),
                     [results, results])
    rows = {s: row(s, RL.get(s, "r1_zero" if "base" in s or "RL" in s else "chat"),
                   0.1 + 0.1 * i) for i, s in enumerate(stages)}
    summary = {"profile": "ci", "recipe": {"eval_k": 4, "eval_temperature": 0.6,
                                           "eval_top_p": 0.95},
               "eval_problems": 8, "rows": rows, "command": command}
    if timed:
        summary |= {"stage_seconds": {s: 20.0 + i for i, s in enumerate(stages)},
                    "wall_seconds": 200.0}
    (part / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    return rows


def links(text: str) -> list[str]:
    return re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)


def check_card(path: Path, run_dir: Path) -> str:
    """The checks every report passes: sections, valid PNGs beside it, no absolute path."""
    text = path.read_text()
    assert path == run_dir / "report.md"
    for section in ("## Environment", "## Command", "## Time", "## Results", "## Figures",
                    "## Sample transcripts"):
        assert section in text, section
    assert "torch" in text and "profile | ci" in text
    assert links(text) and all(not Path(link).is_absolute() for link in links(text))
    for link in links(text):
        assert (run_dir / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    assert str(run_dir) not in text and str(run_dir.resolve()) not in text
    assert not re.search(r"(?<![\w.])/(tmp|home|work|root|Users|usr|var)/", text)
    return text


def test_report_of_an_r1_run(tmp_path):
    rows = fake_part(tmp_path, list(STAGES), "minir1 r1 --profile ci")
    text = check_card(write_report(tmp_path), tmp_path)
    assert format_results(rows) in text  # the results table, exactly
    assert "```sh\nminir1 r1 --profile ci\n```" in text
    assert "| r1-zero | 12 | 21 |" in text  # training and wall seconds
    assert sorted(links(text)) == ["report-r1-zero.png", "report-results.png",
                                   "report-rl-curves.png"]
    # a right and a wrong transcript per RL stage, after the stage's prompt, tags shown
    for stage in RL:
        block = text[text.index(f"### {stage}:"):]
        assert block.index("**right**") < block.index("**wrong**")
    assert "Think in <think></think>" in text  # R1-Zero's template
    assert f"User: 357+579\nAssistant: {GOOD}" in text and f"Assistant: {BAD}" in text


def test_report_of_a_demo_run(tmp_path):
    run = tmp_path / "demo"
    (run / "r1").mkdir(parents=True)
    (run / "distill").mkdir()
    rows = fake_part(run / "r1", list(STAGES), "minir1 r1 --fast")
    rows |= fake_part(run / "distill", ["student base", "student distilled", "student RL-only"],
                      "minir1 distill --fast", timed=False)
    seconds = {"data": 1.0, "R1 pipeline": 200.0, "distillation": 50.0, "total": 251.0}
    path = write_report(run, command=f"minir1 demo --fast --out {run} --data {tmp_path / 'data'}",
                        seconds=seconds)
    text = check_card(path, run)
    assert format_results(rows) in text
    assert "```sh\nminir1 demo --fast --out . --data ../data\n```" in text
    assert "| distillation | 50 |" in text and "| student distilled | 12 | — |" in text
    assert "### student RL-only:" in text


def test_report_without_samples_shows_the_kept_traces(tmp_path):
    fake_part(tmp_path, ["base", "dev1-cold-start"], "minir1 r1")
    (tmp_path / "traces.jsonl").write_text(json.dumps(
        {"question": "357+579", "task": "add", "level": 3, "answer": 936, "completion": GOOD}))
    text = write_report(tmp_path).read_text()
    assert "rejection-sampled traces" in text and f"Assistant: {GOOD}" in text
    assert "report-r1-zero.png" not in text  # no R1-Zero stage, no curves


def test_report_needs_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"results\.json"):
        write_report(tmp_path)


def test_relative_command(tmp_path):
    assert relative_command(f"minir1 r1 --out {tmp_path / 'x'}", tmp_path) == \
        "minir1 r1 --out x"


@pytest.mark.slow
def test_minir1_r1_writes_its_report(tmp_path, capsys, monkeypatch, micro):
    from minir1.cli import main
    from minir1.rl import pipeline

    monkeypatch.setitem(pipeline.PIPELINE_RECIPES, "ci", micro.pipeline)
    main(["r1", "--profile", "ci", "--out", str(tmp_path)])
    assert f"report: {tmp_path / 'report.md'}" in capsys.readouterr().out
    text = check_card(tmp_path / "report.md", tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert list(saved["stage_seconds"]) == list(STAGES)
    assert format_results(saved["rows"]) in text
    samples = json.loads((tmp_path / "r1-zero" / "samples.json").read_text())
    assert set(samples) == {"train", "heldout_before", "heldout_after"}
    assert "### r1-zero:" in text
