"""The prepared check of minir1 on one GPU: everything the `gpu` profile relies on, measured in one
run (sized for ≤ 5 minutes on one H200; not yet run on one) and written to
``benchmarks/results/gpu-<date>.json`` plus a markdown summary beside it.

1. the environment (torch, CUDA, GPU, driver);
2. the tests marked ``gpu`` (every GPU path against its CPU reference at small sizes);
3. the ``small`` preset's training throughput and MFU (FLOPs per token from
   ``minir1.model.params.train_flops_per_token``, the formula the planner uses, against the GPU's
   dense bf16 peak), eager and compiled, bf16 autocast with fp32 master weights;
4. rollout tokens/s of minir1's sampler against transformers' ``generate`` on the same weights and
   prompts (the model exported through ``minir1.hf``), greedy outputs compared first;
5. the FP8 GEMM against a bf16 matmul at 4096³ and its distance from the simulation
   (``minir1.fp8.speed``);
6. a short R1-Zero run with the ``gpu`` profile's recipe: held-out accuracy before and after.

It prints each target as PASS or FAIL: training MFU ≥ 40% (compiled, bf16), rollouts ≥ 5x
transformers, FP8 ≥ 1.5x bf16 within 1e-2 of the simulation.

    python benchmarks/gpu_check.py [--out DIR]      # on a CUDA machine
    python benchmarks/gpu_check.py --dry-run        # the same code on the CPU at tiny sizes

``--dry-run`` runs every section at toy sizes in well under a minute and writes into a temporary
folder (or ``--out``); its numbers measure nothing, and its targets read "n/a". A section that
fails is recorded with its error and the others still run; the exit status is 1 if any did.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minir1 import ModelConfig, Transformer  # noqa: E402
from minir1.plan.hardware import GPUS  # noqa: E402

# Dense bf16 tensor-core peaks (FP32 accumulation), TFLOP/s, matched against the CUDA device name.
# H100/H800/RTX: minir1.plan.hardware (sources there). H200: the same GH100 SMs and clocks as the
# H100 SXM, 1,979 TFLOP/s "with sparsity" in NVIDIA's H200 datasheet, i.e. 989.4 dense. A100:
# 312 TFLOP/s BF16 dense, NVIDIA A100 datasheet (624 with sparsity).
PEAKS: dict[str, float] = {"H200": 989.4, "H100": GPUS["h100"].bf16_tflops,
                           "H800": GPUS["h800"].bf16_tflops, "A100": 312.0,
                           "RTX 4090": GPUS["rtx4090"].bf16_tflops,
                           "RTX 3080": GPUS["rtx3080"].bf16_tflops}
TARGETS = {"mfu": 0.40, "rollout_ratio": 5.0, "fp8_speedup": 1.5, "fp8_rel_err": 1e-2}


@dataclass(frozen=True)
class Sizes:
    preset: str = "small"
    model: tuple[tuple[str, Any], ...] = ()  # overrides of the preset
    batch: int = 64  # the gpu pretraining recipe: 64 x 256
    seq: int = 256
    warmup: int = 3
    steps: int = 10
    compile_backend: str = "inductor"
    rollout_batch: int = 512  # the gpu R1-Zero recipe: 32 prompts x 16 samples
    rollout_new: int = 128
    rollout_repeats: int = 3
    fp8_n: int = 4096
    fp8_repeats: int = 20
    r1_profile: str = "gpu"
    r1_steps: int = 10


FULL = Sizes()
# dynamo without inductor's code generation: the same tracing, seconds instead of a minute on a CPU
DRY = Sizes(preset="tiny", model=(("dim", 64), ("n_layers", 2), ("inter_dim", 128),
                                  ("moe_inter_dim", 32)),
            batch=4, seq=64, warmup=1, steps=2, compile_backend="eager", rollout_batch=8,
            rollout_new=16, rollout_repeats=1, fp8_n=256, fp8_repeats=2, r1_profile="ci",
            r1_steps=1)


def sync(device: torch.device) -> None:
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


# ----------------------------------------------------------------------------------- sections
def environment(device: torch.device) -> dict[str, Any]:
    import transformers

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "transformers": transformers.__version__, "cuda": torch.version.cuda,
                           "device": str(device), "cpu_threads": torch.get_num_threads()}
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True,
                                       capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        env["commit"] = None
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        env["gpu_memory_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
        try:
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                text=True, capture_output=True, check=True).stdout.strip().splitlines()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            env["driver"] = None
    return env


def peak_tflops(name: str | None) -> tuple[str | None, float | None]:
    """The PEAKS entry whose key the device name contains (longest key first)."""
    for key in sorted(PEAKS, key=len, reverse=True):
        if name and key.replace(" ", "").lower() in name.replace(" ", "").lower():
            return key, PEAKS[key]
    return None, None


def gpu_tests(out: Path) -> dict[str, Any]:
    """Every test marked ``gpu``, in a subprocess (they skip without CUDA)."""
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                   if "mark.gpu" in p.read_text())
    xml = out / "gpu-tests.xml"
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p",
                          "no:cacheprovider", f"--junitxml={xml}", *files], cwd=ROOT, text=True,
                         capture_output=True, env=env)
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    cases = []
    for case in suite.iter("testcase"):
        status = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "status": status})
    counts = {key: sum(c["status"] == status for c in cases) for key, status in
              (("passed", "passed"), ("failed", "failure"), ("errors", "error"),
               ("skipped", "skipped"))}
    return {"files": files, "returncode": run.returncode, "seconds": time.perf_counter() - t0,
            **counts, "cases": cases, "tail": run.stdout[-2000:]}


def _model_config(sizes: Sizes) -> tuple[ModelConfig, Any]:
    from minir1.data.tokenizer import Tokenizer
    from minir1.train.pretrain import PRETRAIN_RECIPES, model_config

    tok = Tokenizer()
    recipe = replace(PRETRAIN_RECIPES["gpu"], preset=sizes.preset)
    return model_config(recipe, tok, **dict(sizes.model)), tok


def training(sizes: Sizes, device: torch.device, peak: float | None) -> dict[str, Any]:
    """Optimiser steps of the Trainer (bf16 autocast on an accelerator, fused AdamW): tokens/s
    and MFU, eager then compiled."""
    from minir1.data.datasets import CorpusConfig, PackedStream, corpus_documents, pack_documents
    from minir1.model.params import count_params, train_flops_per_token
    from minir1.train.loop import TrainConfig, Trainer, read_metrics

    cfg, tok = _model_config(sizes)
    tokens, learned = pack_documents(tok, corpus_documents(CorpusConfig(), 2000, seed=0))
    flops_per_token = train_flops_per_token(cfg, sizes.seq)
    result: dict[str, Any] = {"preset": sizes.preset, "params": count_params(cfg).total,
                              "active_params": count_params(cfg).activated,
                              "batch": sizes.batch, "seq": sizes.seq,
                              "flops_per_token": flops_per_token, "peak_tflops": peak}
    for mode in ("eager", "compiled"):
        torch.manual_seed(0)
        stream = PackedStream(tokens, sizes.batch, sizes.seq, learned=learned)
        tc = TrainConfig(steps=sizes.warmup + sizes.steps, batch_size=sizes.batch,
                         seq_len=sizes.seq, device=str(device),
                         compile=mode == "compiled" and sizes.compile_backend == "inductor")
        try:
            trainer = Trainer(Transformer(cfg), stream, tc, progress=False)
            if mode == "compiled" and sizes.compile_backend != "inductor":
                trainer.forward = torch.compile(trainer.module, backend=sizes.compile_backend)
            t0 = time.perf_counter()
            for _ in range(sizes.warmup):
                read_metrics(trainer.train_step(read=False))
            warm = time.perf_counter() - t0
            sync(device)
            t0 = time.perf_counter()
            for _ in range(sizes.steps):
                metrics = trainer.train_step(read=False)
            last = read_metrics(metrics)  # waits for the last step
            seconds = time.perf_counter() - t0
        except Exception as err:
            result[mode] = {"error": f"{type(err).__name__}: {err}"[:500]}
            continue
        tps = sizes.steps * sizes.batch * sizes.seq / seconds
        achieved = tps * flops_per_token
        result[mode] = {"tokens_per_s": tps, "step_ms": seconds / sizes.steps * 1e3,
                        "warmup_s": warm, "tflops": achieved / 1e12, "loss": last["loss"],
                        "mfu": achieved / (peak * 1e12) if peak else None}
    return result


def rollouts(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """minir1's ``sample`` against transformers' ``generate``, alternating, on one model (the
    trained ``gpu`` base if there is one, else the preset at random init) and the same prompts:
    temperature 1, stop at ``</answer>`` or end-of-sequence, bf16 on a GPU."""
    import transformers

    from minir1 import hf as mhf
    from minir1.infer.generate import sample
    from minir1.train.checkpoint import load_model
    from minir1.train.runs import base_dir

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from generate import generated_lengths, hf_batch, prompts_for

    transformers.logging.set_verbosity_error()
    ckpt = base_dir("gpu") / "checkpoint"
    if sizes.preset == "small" and ckpt.exists():
        model, tok, _ = load_model(ckpt)
        weights = str(ckpt)
    else:
        cfg, tok = _model_config(sizes)
        torch.manual_seed(0)
        model, weights = Transformer(cfg), f"{sizes.preset} preset, random init"
    dtype = torch.bfloat16 if device.type != "cpu" else torch.float32
    model = model.eval()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mhf.save_pretrained(model, tmp)
        theirs = transformers.DeepseekV3ForCausalLM.from_pretrained(tmp, dtype=dtype)
    theirs = theirs.to(device).eval()
    model = model.to(device, dtype)
    stops = [tok.token_id("</answer>"), tok.eos_id]
    prompts = prompts_for(tok, sizes.rollout_batch)
    ids, mask = hf_batch(prompts, tok.pad_id)
    ids, mask = ids.to(device), mask.to(device)

    def ours(greedy: bool, seed: int) -> tuple[list[list[int]], int]:
        s = sample(model, prompts, sizes.rollout_new, temperature=0.0 if greedy else 1.0,
                   stop_ids=stops, pad_id=tok.pad_id, generator=torch.Generator().manual_seed(seed))
        return s.completions(), int(s.lengths.sum())

    def hf(greedy: bool, seed: int) -> tuple[list[list[int]], int]:
        torch.manual_seed(seed)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = theirs.generate(input_ids=ids, attention_mask=mask,
                                  max_new_tokens=sizes.rollout_new, do_sample=not greedy,
                                  temperature=None if greedy else 1.0, top_k=None, top_p=None,
                                  eos_token_id=stops, pad_token_id=tok.pad_id)
        new = out[:, ids.shape[1]:].cpu()
        lengths = generated_lengths(new, stops)
        return [row[:n] for row, n in zip(new.tolist(), lengths, strict=True)], sum(lengths)

    check = min(16, len(prompts))
    agree = sum(a == b for a, b in zip(ours(True, 0)[0][:check], hf(True, 0)[0][:check],
                                       strict=True))
    rates: dict[str, list[float]] = {"minir1": [], "transformers": []}
    for r in range(sizes.rollout_repeats):
        for name, fn in (("minir1", ours), ("transformers", hf)):
            sync(device)
            t0 = time.perf_counter()
            _, n = fn(False, r + 1)
            sync(device)
            rates[name].append(n / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"weights": weights, "dtype": str(dtype), "batch": len(prompts),
            "max_new_tokens": sizes.rollout_new, "greedy_agree": f"{agree}/{check}",
            "minir1_tokens_per_s": med["minir1"], "transformers_tokens_per_s": med["transformers"],
            "ratio": med["minir1"] / med["transformers"], "repeats": rates}


def fp8(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    from minir1.fp8.speed import compare_with_bf16

    return compare_with_bf16(sizes.fp8_n, device, repeats=sizes.fp8_repeats)


def r1_zero(sizes: Sizes, device: torch.device, out: Path) -> dict[str, Any]:
    """``run_r1_zero`` with the profile's recipe for a few steps, from the trained ``gpu`` base if
    there is one, else the shipped ``cpu`` base (the ``gpu`` base is a 3,000-step pre-training,
    more than this check's budget)."""
    from minir1.rl.r1zero import run_r1_zero
    from minir1.train.checkpoint import load_model
    from minir1.train.runs import base_dir, shipped_base_dir

    ckpt = base_dir("gpu") / "checkpoint"
    src = ckpt if sizes.r1_profile == "gpu" and ckpt.exists() else shipped_base_dir()
    model, tok, _ = load_model(src)
    result = run_r1_zero(sizes.r1_profile, out=out / "r1zero", steps=sizes.r1_steps,
                         model=model.to(device), tok=tok, progress=False)
    s = result.summary
    return {"profile": sizes.r1_profile, "base": str(src), "steps": s["steps"],
            "heldout_problems": s["heldout_problems"], "wall_seconds": s["wall_seconds"],
            "accuracy_before": s["before"]["heldout_accuracy"],
            "accuracy_after": s["after"]["heldout_accuracy"],
            "length_before": s["before"]["heldout_length"],
            "length_after": s["after"]["heldout_length"]}


# --------------------------------------------------------------------------------- the report
def targets(report: dict[str, Any], dry: bool) -> list[dict[str, Any]]:
    """Each target with its measured value and PASS/FAIL (None: not measured, or a dry run)."""
    s = report["sections"]
    mfu = s.get("training", {}).get("compiled", {}).get("mfu")
    ratio = s.get("rollouts", {}).get("ratio")
    fast = [(b["speedup"], name) for name, b in s.get("fp8", {}).get("backends", {}).items()
            if "speedup" in b and b["rel_err"] <= TARGETS["fp8_rel_err"]]
    speedup, backend = max(fast) if fast else (None, None)
    rows = [("small preset MFU, compiled bf16", f">= {TARGETS['mfu']:.0%}", mfu, TARGETS["mfu"]),
            ("rollouts / transformers generate", f">= {TARGETS['rollout_ratio']:g}x", ratio,
             TARGETS["rollout_ratio"]),
            (f"FP8 GEMM / bf16 at {s.get('fp8', {}).get('n', '?')}³ ({backend}, rel err <= "
             f"{TARGETS['fp8_rel_err']:g})", f">= {TARGETS['fp8_speedup']:g}x", speedup,
             TARGETS["fp8_speedup"])]
    return [{"target": name, "rule": rule, "value": value,
             "pass": None if dry or value is None else value >= bar}
            for name, rule, value, bar in rows]


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "—" if x is None else format(x, spec) if isinstance(x, float) else str(x)


def _rows(section: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A section's values as (name, value) rows, nested dicts as ``outer.inner``."""
    rows: list[tuple[str, Any]] = []
    for k, v in section.items():
        if k in ("cases", "tail", "repeats", "files"):
            continue
        if isinstance(v, dict):
            rows += _rows(v, f"{prefix}{k}.")
        else:
            rows.append((f"{prefix}{k}", v))
    return rows


def markdown(report: dict[str, Any]) -> str:
    env, s = report["environment"], report["sections"]
    lines = [f"# minir1 GPU check, {report['date']}" + (" (DRY RUN on CPU: toy sizes, not a "
                                                      "measurement)" if report["dry_run"] else ""),
             "", f"Command: `{report['command']}`; {report['seconds']:.0f} s in all.", "",
             "| environment | |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in env.items()]
    lines += ["", "## Targets", "", "| target | rule | measured | result |", "|---|---|---|---|"]
    for t in report["targets"]:
        verdict = "n/a" if t["pass"] is None else "PASS" if t["pass"] else "FAIL"
        lines.append(f"| {t['target']} | {t['rule']} | {_fmt(t['value'])} | {verdict} |")
    for name, sec in s.items():
        lines += ["", f"## {name}", ""]
        if "error" in sec:
            lines += ["```", sec["error"][-1500:], "```"]
            continue
        lines += ["| | |", "|---|---|"]
        for k, v in _rows(sec):
            lines.append(f"| {k} | {_fmt(v)} |")
        failed = [c["test"] for c in sec.get("cases", []) if c["status"] in ("failure", "error")]
        lines += [f"- failed: `{t}`" for t in failed]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="the same sections on the CPU at toy sizes (no measurement)")
    parser.add_argument("--out", default=None, help="folder for the JSON and markdown "
                        "(default: benchmarks/results, or a temporary folder with --dry-run)")
    parser.add_argument("--skip", nargs="*", default=(),
                        choices=("tests", "training", "rollouts", "fp8", "r1zero"))
    parser.add_argument("--r1-steps", type=int, default=None,
                        help=f"GRPO steps of the R1-Zero run (default {FULL.r1_steps})")
    args = parser.parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        parser.error("no CUDA device here: run with --dry-run, or on a GPU machine")
    device = torch.device("cpu" if dry else "cuda")
    if dry:  # toy sizes on a CPU that may be shared: more threads only contend
        torch.set_num_threads(1)
    sizes = DRY if dry else FULL
    if args.r1_steps is not None:
        sizes = replace(sizes, r1_steps=args.r1_steps)
    out = Path(args.out or (tempfile.mkdtemp(prefix="gpu-check-") if dry
                            else ROOT / "benchmarks" / "results"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-work-"))
    start = time.perf_counter()
    env = environment(device)
    peak_name, peak = peak_tflops(env.get("gpu"))
    env["peak_bf16_tflops"] = f"{peak} ({peak_name})" if peak else None
    sections = {"tests": lambda: gpu_tests(work),
                "training": lambda: training(sizes, device, peak),
                "rollouts": lambda: rollouts(sizes, device),
                "fp8": lambda: fp8(sizes, device),
                "r1zero": lambda: r1_zero(sizes, device, work)}
    report: dict[str, Any] = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                              "dry_run": dry,
                              "command": " ".join(["python benchmarks/gpu_check.py",
                                                   *(sys.argv[1:] if argv is None else argv)]),
                              "environment": env, "sizes": sizes.__dict__, "sections": {}}
    failed = False
    for name, run in sections.items():
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        print(f"[gpu-check] {name} ...", flush=True)
        try:
            report["sections"][name] = {**run(), "section_seconds": time.perf_counter() - t0}
        except Exception:
            failed = True
            report["sections"][name] = {"error": traceback.format_exc()[-3000:]}
        print(f"[gpu-check] {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    tests = report["sections"].get("tests", {})
    failed |= bool(tests.get("failed") or tests.get("errors"))
    report["seconds"] = time.perf_counter() - start
    report["targets"] = targets(report, dry)
    stem = "gpu-" + report["date"][:10] + ("-dry-run" if dry else "")
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    md_path.write_text(markdown(report))
    for t in report["targets"]:
        verdict = "n/a" if t["pass"] is None else "PASS" if t["pass"] else "FAIL"
        print(f"{verdict:>4}  {t['target']}: {_fmt(t['value'])} (target {t['rule']})")
    print(f"wrote {json_path} and {md_path.name} in {report['seconds']:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
