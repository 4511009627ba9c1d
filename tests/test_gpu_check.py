"""benchmarks/gpu_check.py: its dry run on the CPU (so the script cannot rot before a GPU runs it),
its peak table and its verdicts."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, benchmark_module

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    with benchmark_module("gpu_check") as module:
        yield module


def test_the_dry_run_runs_every_section_and_writes_its_report(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)],
                         cwd=ROOT, text=True, capture_output=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (report_path,) = tmp_path.glob("gpu-*-dry-run.json")
    report = json.loads(report_path.read_text())
    assert report["dry_run"] and report["environment"]["torch"]
    sections = report["sections"]
    assert set(sections) == {"tests", "training", "rollouts", "fp8", "r1zero"}
    assert [name for name, sec in sections.items() if "error" in sec] == []
    assert sections["tests"]["files"] and sections["tests"]["failed"] == 0
    for mode in ("eager", "compiled"):
        assert sections["training"][mode]["tokens_per_s"] > 0, mode
    assert sections["rollouts"]["greedy_agree"].split("/")[0] == \
        sections["rollouts"]["greedy_agree"].split("/")[1]  # same weights, same greedy tokens
    assert sections["fp8"]["backends"]["scaled_mm"]["rel_err"] < 1e-2
    assert 0 <= sections["r1zero"]["accuracy_after"] <= 1
    assert [t["pass"] for t in report["targets"]] == [None, None, None]  # a dry run claims nothing
    md = report_path.with_suffix(".md").read_text()
    assert "DRY RUN" in md and "| rollouts / transformers generate |" in md
    assert not (ROOT / "benchmarks" / "results" / report_path.name).exists()


def test_peaks_are_found_by_the_device_name(gpu_check):
    assert gpu_check.peak_tflops("NVIDIA H200") == ("H200", 989.4)
    assert gpu_check.peak_tflops("NVIDIA H100 80GB HBM3") == ("H100", 989.4)
    assert gpu_check.peak_tflops("NVIDIA GeForce RTX 4090")[0] == "RTX 4090"
    assert gpu_check.peak_tflops("Tesla T4") == (None, None)
    assert gpu_check.peak_tflops(None) == (None, None)


def test_targets_pass_and_fail_on_measured_values_only(gpu_check):
    report = {"sections": {
        "training": {"compiled": {"mfu": 0.45}},
        "rollouts": {"ratio": 4.0},
        "fp8": {"n": 4096, "backends": {
            "scaled_mm": {"speedup": 0.3, "rel_err": 1e-4},
            "blockwise": {"speedup": 1.8, "rel_err": 2e-2},  # too far from the simulation
        }}}}
    rows = gpu_check.targets(report, dry=False)
    assert [r["pass"] for r in rows] == [True, False, False]
    assert rows[2]["value"] == 0.3 and "scaled_mm" in rows[2]["target"]
    report["sections"]["fp8"]["backends"]["blockwise"]["rel_err"] = 5e-3
    assert gpu_check.targets(report, dry=False)[2]["pass"] is True
    assert [r["pass"] for r in gpu_check.targets({"sections": {}}, dry=False)] == [None] * 3
    assert [r["pass"] for r in gpu_check.targets(report, dry=True)] == [None] * 3
