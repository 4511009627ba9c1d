"""A report card: one run of ``minir1 demo`` or ``minir1 r1`` on one page a student can share (in
the spirit of nanochat's ``report.md``).

``write_report(run_dir)`` only reads what the run wrote: the R1 pipeline's ``results.json``
(``run_dir`` itself for ``minir1 r1``, ``run_dir/r1`` for the demo), the distillation's
(``run_dir/distill``), every RL stage's ``grpo.jsonl`` and ``samples.json``. It writes
``run_dir/report.md`` with PNG figures beside it (drawn by ``minir1.viz`` on matplotlib's Agg
canvas, no display): the environment, the command, every stage's time, the results table (R1
Tables 2 and 6), the R1-Zero curves (R1 Fig. 2-3) and a few held-out transcripts, tags shown.
Every path in it is relative to the run directory.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from minir1.data.templates import prompt_for
from minir1.dist import parallel as dist_parallel
from minir1.eval.sampled import format_results
from minir1.train.log import read_jsonl
from minir1.viz.pipeline import render_rl_curves, render_stages
from minir1.viz.rollouts import render_r1_zero_curves

PARTS = (".", "r1", "distill")  # where a run keeps a results.json: r1 alone, or the demo's parts


def run_parts(run_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Each part of the run (its directory, its ``results.json``), in the order they ran."""
    files = [run_dir / part / "results.json" for part in PARTS]
    parts = [(f.parent, json.loads(f.read_text())) for f in files if f.exists()]
    if not parts:
        raise FileNotFoundError(f"{run_dir}: no results.json (run `minir1 r1` or `minir1 demo`)")
    return parts


def stage_dir(part: Path, stage: str) -> Path:
    """The directory a stage wrote (``r1-zero``; the distillation's ``student RL-only`` wrote
    ``rl-only``)."""
    return part / stage.removeprefix("student ").lower()


def environment(profile_name: str) -> dict[str, str]:
    """Versions, hardware and threads of this machine, and the run's profile."""
    try:
        version = metadata.version("minir1")
    except metadata.PackageNotFoundError:
        version = "not installed"
    gpu = (f"{torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
           if torch.cuda.is_available() else "none")
    return {"minir1": version, "python": platform.python_version(), "torch": torch.__version__,
            "platform": f"{platform.system()} {platform.machine()}", "CPU": cpu_name(),
            "CPU cores": str(os.cpu_count()), "torch threads": str(torch.get_num_threads()),
            "GPU": gpu, "profile": profile_name}


def cpu_name() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def relative_command(command: str, run_dir: Path) -> str:
    """``command`` with every absolute path in it made relative to ``run_dir``."""
    words = [os.path.relpath(w, run_dir.resolve()) if os.path.isabs(w) else w
             for w in command.split()]
    return " ".join(words)


def table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """A markdown table."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in rows)]


def time_section(parts: list[tuple[Path, dict[str, Any]]],
                 seconds: dict[str, float] | None) -> list[str]:
    """The command's parts (``seconds``, when given), then every stage: its training time (the
    results rows' ``train_seconds``) and its wall time with scoring (``stage_seconds``)."""
    lines = ["## Time", ""]
    if seconds:
        lines += [*table(("part", "wall (s)"), [(k, f"{v:.0f}") for k, v in seconds.items()]), ""]
    rows = []
    for _, summary in parts:
        walls = summary.get("stage_seconds", {})
        rows += [(stage, f"{row['train_seconds']:.0f}",
                  f"{walls[stage]:.0f}" if stage in walls else "—")
                 for stage, row in summary["rows"].items()]
    lines += table(("stage", "training (s)", "wall, scoring included (s)"), rows)
    return [*lines, "", "Training excludes the held-out checks; the wall time of a stage counts "
            "from the previous stage's row (the base row: loading the model).", ""]


def save_figure(fig: Figure, run_dir: Path, name: str) -> str:
    """``fig`` as ``run_dir/name`` (PNG); the markdown image link to it."""
    fig.savefig(run_dir / name, dpi=110)
    return f"![{name.removesuffix('.png')}]({name})"


def curves_of(parts: list[tuple[Path, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Every RL stage's GRPO log (``grpo.jsonl``), by stage."""
    logs = {stage: stage_dir(part, stage) / "grpo.jsonl"
            for part, summary in parts for stage in summary["rows"]}
    return {stage: read_jsonl(path) for stage, path in logs.items() if path.exists()}


def figures_section(run_dir: Path, rows: dict[str, dict[str, Any]],
                    curves: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The results as bars, the R1-Zero curves, every RL stage's held-out curves."""
    lines = ["## Figures", "", save_figure(render_stages(rows, "held-out pass@1 and maj@k"),
                                           run_dir, "report-results.png"), ""]
    if "r1-zero" in curves:
        lines += ["R1-Zero from the base (cf. R1 Fig. 2-3): accuracy and response length against "
                  "the GRPO step.", "",
                  save_figure(render_r1_zero_curves(curves["r1-zero"]), run_dir,
                              "report-r1-zero.png"), ""]
    if curves:
        lines += ["Every RL stage's greedy held-out checks.", "",
                  save_figure(render_rl_curves(curves), run_dir, "report-rl-curves.png"), ""]
    return lines


def transcript(text: str, correct: bool) -> list[str]:
    """One prompt and completion in a fenced block (tags shown), under its verdict."""
    return [f"**{'right' if correct else 'wrong'}**", "", "```text", text, "```", ""]


def transcripts_section(parts: list[tuple[Path, dict[str, Any]]], per_stage: int) -> list[str]:
    """A few greedy held-out completions after each RL stage (``samples.json``): right ones and
    wrong ones, each after its prompt."""
    lines = ["## Sample transcripts", ""]
    for part, summary in parts:
        for stage, row in summary["rows"].items():
            path = stage_dir(part, stage) / "samples.json"
            if not path.exists():
                continue
            done = json.loads(path.read_text()).get("heldout_after", [])
            picked = ([d for d in done if d[2]][:(per_stage + 1) // 2]
                      + [d for d in done if not d[2]][:per_stage // 2])
            lines += [f"### {stage}: held-out, greedy, after its RL", ""]
            for question, completion, correct in picked:
                lines += transcript(prompt_for(question, row["template"]) + completion, correct)
    if len(lines) > 2:
        return lines
    traces = [part / "traces.jsonl" for part, _ in parts if (part / "traces.jsonl").exists()]
    if not traces:
        return [*lines, "(no RL stage wrote samples.json)", ""]
    lines += ["### rejection-sampled traces (what Dev3 was fine-tuned on)", ""]
    for t in read_jsonl(traces[0])[:per_stage]:
        lines += transcript(prompt_for(t["question"], "chat") + t["completion"], True)
    return lines


def write_report(run_dir: str | Path, command: str | None = None,
                 seconds: dict[str, float] | None = None, per_stage: int = 2) -> Path:
    """``run_dir/report.md`` and its figures, from what the run in ``run_dir`` wrote.

    ``command``: what made the run (default: the ``command`` the first ``results.json`` recorded);
    ``seconds``: the wall time of the command's parts (the demo passes data, pretraining, ...);
    ``per_stage``: transcripts per RL stage.
    """
    run_dir = Path(run_dir)
    parts = run_parts(run_dir)
    first = parts[0][1]
    rows = {stage: row for _, summary in parts for stage, row in summary["rows"].items()}
    recipe = first.get("recipe", {})
    command = relative_command(command or first.get("command", "?"), run_dir)
    env = environment(first.get("profile", "?"))
    lines = [f"# minir1 report: `{command}`", "",
             f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.", "", "## Environment", "",
             *table(("", ""), list(env.items())), "", "## Command", "", "```sh", command, "```",
             "", *time_section(parts, seconds), "## Results", "",
             f"{first.get('eval_problems', '?')} held-out problems, "
             f"{recipe.get('eval_k', '?')} samples each at T={recipe.get('eval_temperature', '?')}"
             f", top-p {recipe.get('eval_top_p', '?')} (R1's protocol, R1 §3).", "",
             format_results(rows), "", *figures_section(run_dir, rows, curves_of(parts)),
             *transcripts_section(parts, per_stage)]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def print_report(run_dir: str | Path, **kwargs: Any) -> Path | None:
    """``write_report`` on the process that writes the run's files (rank 0 under torchrun), and
    say where it is."""
    if not dist_parallel.is_main():
        return None
    path = write_report(run_dir, **kwargs)
    print(f"report: {path} (figures beside it)", file=sys.stdout, flush=True)
    return path


__all__ = ["environment", "print_report", "run_parts", "write_report"]
