"""The ``minir1`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from minir1.config import PRESETS


def _demo(args: argparse.Namespace) -> None:
    from dataclasses import replace

    import torch

    from minir1 import ModelConfig, count_params
    from minir1.data.testsets import verify_test_sets, write_test_sets
    from minir1.data.tokenizer import Tokenizer
    from minir1.train.evaluate import accuracy_table
    from minir1.train.pretrain import DEMO_RECIPE, model_config, pretrain, run_evaluation, write_summary

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    print("== 1/4 data: the fixed held-out test sets ==")
    problems = verify_test_sets(args.data)
    if problems:
        write_test_sets(args.data)
        print(f"rebuilt {args.data}/ ({problems[0]})")
    print(f"{args.data}/test: 16 sets of 200 problems (4 tasks x 4 levels), checksums verified")
    recipe = DEMO_RECIPE if args.steps is None else replace(DEMO_RECIPE, steps=args.steps)
    v3, tiny = count_params(ModelConfig.preset("v3")), count_params(model_config(recipe, Tokenizer()))
    print(f"\n== 2/4 pretrain the tiny DeepSeek-V3 ({tiny.total:,} parameters; the real V3 counted on the meta "
          f"device: {v3.total / 1e9:.1f}B, {v3.activated / 1e9:.1f}B active) ==")
    if args.fast:
        print("skipped with --fast: the pipeline below starts from the cpu base model (`minir1 pretrain --profile "
              "cpu`, 5,000 steps: runs/base-cpu if you trained it, else the copy shipped in data/base-cpu)")
    else:
        print(f"{recipe.steps} steps of {recipe.batch_size} x {recipe.seq_len} tokens: a short version of "
              "`minir1 pretrain` (the lessons' base model trains longer)")
        trainer = pretrain(args.out, replace(recipe, eval_n=0), seed=args.seed)
        last = trainer.history[-1]
        print(f"trained in {time.perf_counter() - t0:.0f}s; final loss {last['loss']:.3f} at "
              f"{last['tokens_per_s']:,.0f} tokens/s; checkpoint {args.out}/checkpoint")
        print(f"greedy accuracy on {recipe.eval_n} held-out problems per task and level (free = the model chooses; "
              "direct = forced to answer at once; reason = forced to work it out first)")
        results = run_evaluation(trainer.model, trainer.tokenizer, recipe.eval_n)
        write_summary(Path(args.out) / "eval.json", results)
        print(accuracy_table(results))
    _r1_and_distill("fast" if args.fast else "cpu", Path(args.out), step="3/4", t0=t0)
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")


def _print_row(stage: str, row: dict) -> None:
    print(f"  {stage:<20} pass@1 {row['pass1']:6.1%}   maj@{row['k']} {row['majk']:6.1%}   "
          f"reasons first {row['reasoning']:4.0%}   mean length {row['length']:5.1f} tokens   "
          f"({row['train_seconds']:.0f}s)", flush=True)


def _rejection_line(rs: dict) -> str:
    return (f"rejection sampling: {rs['sampled']} samples, {rs['correct']} correct, kept {rs['kept']} "
            f"(dropped {rs['dropped']}) from {rs['prompts_kept']}/{rs['prompts']} prompts")


def _r1_and_distill(recipe_name: str, out: Path, step: str = "1/2", t0: float | None = None,
                    distill: bool = True) -> None:
    from minir1.rl.distill import DISTILL_RECIPES, run_distillation
    from minir1.rl.pipeline import PIPELINE_RECIPES, format_results, run_r1_pipeline

    t0 = time.perf_counter() if t0 is None else t0
    recipe = PIPELINE_RECIPES[recipe_name]
    print(f"\n== {step} the R1 pipeline ({recipe_name} recipe): base -> R1-Zero, and cold start -> reasoning RL -> "
          "rejection sampling + SFT -> final RL ==")
    print(f"each stage scored on {recipe.eval_n} held-out problems per task and level, {recipe.eval_k} samples each "
          f"at T={recipe.eval_temperature}, top-p {recipe.eval_top_p} (R1's protocol)")
    pipe = run_r1_pipeline(recipe_name, out / "r1", recipe, on_stage=_print_row)
    rs = pipe.summary["rejection"]
    print("  " + _rejection_line(rs))
    rows = dict(pipe.rows)
    if distill:
        nxt = f"{int(step[0]) + 1}/{step.split('/')[1]}"
        print(f"\n== {nxt} distillation: the dense student SFT'd on those {rs['kept']} traces vs the same student "
              "trained by RL alone ==")
        dist = run_distillation(recipe_name, out / "distill", DISTILL_RECIPES[recipe_name], traces=pipe.rejection.docs,
                                on_stage=_print_row)
        rows |= dist.rows
    print("\n" + format_results(rows, f"held-out results ({pipe.summary['eval_problems']} problems; "
                                      f"{time.perf_counter() - t0:.0f}s so far)"))
    (out / "results.md").write_text(format_results(rows) + "\n")
    print(f"written to {out}/results.md; stage checkpoints and logs under {out}/")


def _params(args: argparse.Namespace) -> None:
    from minir1 import ModelConfig, count_params

    counts = count_params(ModelConfig.preset(args.preset))
    print(counts.table())
    print(f"KV cache per token: {counts.kv_bytes_absorbed:,} B latent (absorbed), {counts.kv_bytes_naive:,} B "
          "expanded (naive), bf16")


def _data(args: argparse.Namespace) -> None:
    from minir1.data.testsets import verify_test_sets, write_test_sets

    manifest = write_test_sets(args.out)
    problems = verify_test_sets(args.out)
    if problems:
        raise SystemExit("\n".join(problems))
    print(f"wrote {len(manifest)} test sets and MANIFEST.json to {args.out} (checksums verified)")


def _pretrain(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from minir1 import profile
    from minir1.train.pretrain import RECIPES, STUDENT_RECIPES, base_dir, pretrain

    name = args.profile or profile.current()
    recipe = (STUDENT_RECIPES if args.student else RECIPES)[name]
    args.out = args.out or str(base_dir(name, "student" if args.student else "base"))
    if args.preset:
        recipe = replace(recipe, preset=args.preset)
    if args.steps:
        recipe = replace(recipe, steps=args.steps)
    if args.eval_n:
        recipe = replace(recipe, eval_n=args.eval_n)
    if args.compile:
        recipe = replace(recipe, compile=True)
    t0 = time.perf_counter()
    trainer = pretrain(args.out, recipe, seed=args.seed, resume=args.resume)
    last = trainer.history[-1]
    print(f"pretrained {recipe.preset} for {trainer.step} steps in {time.perf_counter() - t0:.0f}s "
          f"(final loss {last['loss']:.3f}, {last['tokens_per_s']:,.0f} tokens/s); checkpoint: {args.out}/checkpoint")


def _eval(args: argparse.Namespace) -> None:
    from minir1.train.evaluate import accuracy_table
    from minir1.train.loop import load_model
    from minir1.train.pretrain import base_dir, run_evaluation, write_summary

    args.ckpt = args.ckpt or str(base_dir(args.profile) / "checkpoint")
    model, tok, meta = load_model(args.ckpt)
    modes = tuple(m.strip() for m in args.modes.split(","))
    results = run_evaluation(model, tok, args.n, modes=modes)
    if args.out:
        write_summary(args.out, results)
    print(f"checkpoint {args.ckpt} (step {meta['step']}), {args.n} held-out problems per task and level")
    print("free = the model chooses; direct = forced to answer at once; reason = forced to work it out first")
    print(accuracy_table(results))


def _sft(args: argparse.Namespace) -> None:
    from minir1.data.datasets import CorpusConfig, corpus_documents
    from minir1.train.pretrain import base_dir, sft

    corpus = CorpusConfig(template="chat", worked_fraction=1.0)
    docs = corpus_documents(corpus, args.n_docs, seed=args.seed)
    init = args.init or str(base_dir(args.profile) / "checkpoint")
    trainer = sft(init, args.out, docs, steps=args.steps, lr=args.lr, seed=args.seed)
    print(f"SFT: {trainer.step} steps on {len(docs)} worked chat samples (loss on completions only, samples "
          f"isolated by sample masking); final loss {trainer.history[-1]['loss']:.3f}; "
          f"checkpoint {args.out}/checkpoint")


def _r1_zero(args: argparse.Namespace) -> None:
    from minir1 import profile
    from minir1.rl.r1zero import format_summary, run_r1_zero

    name = args.profile or profile.current()

    def show(row: dict[str, float]) -> None:
        if "heldout_accuracy" in row:
            print(f"step {int(row['step']):>4}: held-out accuracy {row['heldout_accuracy']:.1%}, reasons first "
                  f"{row['heldout_reasoning']:.1%}, mean length {row['heldout_length']:.1f} tokens", flush=True)

    tasks = tuple(t.strip() for t in args.tasks.split(",")) if args.tasks else None
    levels = tuple(int(v) for v in args.levels.split(",")) if args.levels else None
    result = run_r1_zero(name, out=args.out, steps=args.steps, on_log=show, tasks=tasks, levels=levels)
    out = args.out or f"runs/r1zero-{name}"
    print(format_summary(result.summary))
    print(f"log {out}/grpo.jsonl, samples {out}/samples.json, checkpoint {out}/checkpoint")


def _r1(args: argparse.Namespace) -> None:
    from minir1 import profile
    from minir1.rl.pipeline import PIPELINE_RECIPES, format_results, run_r1_pipeline

    name = "fast" if args.fast else (args.profile or profile.current())
    out = Path(args.out or f"runs/r1-{name}")
    result = run_r1_pipeline(name, out, PIPELINE_RECIPES[name], on_stage=_print_row)
    print(_rejection_line(result.summary["rejection"]))
    print(format_results(result.rows))
    print(f"results {out}/results.json, traces {out}/traces.jsonl, one directory per stage under {out}/")


def _distill(args: argparse.Namespace) -> None:
    from minir1 import profile
    from minir1.rl.distill import DISTILL_RECIPES, run_distillation
    from minir1.rl.pipeline import format_results, load_traces

    name = "fast" if args.fast else (args.profile or profile.current())
    traces = load_traces(args.traces) if args.traces else None
    out = Path(args.out or f"runs/distill-{name}")
    result = run_distillation(name, out, DISTILL_RECIPES[name], traces=traces, on_stage=_print_row)
    print(f"{result.summary['traces']} teacher traces from {result.summary['traces_from']}, "
          f"{result.summary['sft_steps']} SFT steps")
    print(format_results(result.rows))
    print(f"results {out}/results.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minir1", description="DeepSeek-V3 and R1 in miniature.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="data -> pretrain the tiny model -> the R1 pipeline and distillation -> results "
                                    "table (~20 min on 2 cores; --fast: ~4)")
    p.add_argument("--out", default="runs/demo", help="output directory")
    p.add_argument("--fast", action="store_true",
                   help="skip the pre-training demo (start from the shipped base model) and run short RL stages")
    p.add_argument("--data", default="data", help="where the test sets live (rebuilt if missing or changed)")
    p.add_argument("--steps", type=int, default=None, help="override the demo's step count")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
    p = sub.add_parser("params", help="parameter table and KV-cache size of a preset")
    p.add_argument("--preset", default="v3", choices=sorted(PRESETS))
    p.set_defaults(func=_params)
    p = sub.add_parser("data", help="(re)build the fixed held-out test sets and their checksum manifest")
    p.add_argument("--out", default="data", help="directory to write test/ and MANIFEST.json into")
    p.set_defaults(func=_data)
    p = sub.add_parser("pretrain", help="pre-train the base model on the reasoning corpus")
    p.add_argument("--profile", choices=["ci", "cpu", "gpu"], default=None,
                   help="run size (default: MINIR1_PROFILE, else gpu with CUDA, else cpu)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS), help="model preset (default: the profile's)")
    p.add_argument("--steps", type=int, default=None, help="override the profile's step count")
    p.add_argument("--out", default=None,
                   help="output directory (checkpoint, metrics, eval.json); default runs/base-PROFILE, where the "
                        "lessons look for the base model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if it exists")
    p.add_argument("--eval-n", type=int, default=None, help="held-out problems per task and level in the final eval")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow to start on CPU)")
    p.add_argument("--student", action="store_true",
                   help="pre-train the distillation student (STUDENT_RECIPES; default out runs/student-PROFILE)")
    p.set_defaults(func=_pretrain)
    p = sub.add_parser("sft", help="supervised fine-tuning on worked solutions in the chat format")
    p.add_argument("--profile", choices=["ci", "cpu", "gpu"], default=None,
                   help="whose base model to start from (default: MINIR1_PROFILE, else gpu with CUDA, else cpu)")
    p.add_argument("--init", default=None, help="checkpoint to start from (default: the profile's base model, "
                                                "runs/base-PROFILE/checkpoint)")
    p.add_argument("--out", default="runs/sft", help="output directory")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-docs", type=int, default=5000, help="worked samples to draw")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_sft)
    p = sub.add_parser("eval", help="accuracy per task and level, answering directly vs reasoning")
    p.add_argument("--profile", choices=["ci", "cpu", "gpu"], default=None,
                   help="whose base model to evaluate (default: MINIR1_PROFILE, else gpu with CUDA, else cpu)")
    p.add_argument("--out", default=None, help="also write the accuracies as JSON to this file")
    p.add_argument("--ckpt", default=None, help="checkpoint directory (default: the profile's base model, "
                                                "runs/base-PROFILE/checkpoint)")
    p.add_argument("--n", type=int, default=50, help="held-out problems per task and level (<= 200)")
    p.add_argument("--modes", default="free,direct,reason", help="comma-separated subset of free,direct,reason")
    p.set_defaults(func=_eval)
    p = sub.add_parser("r1-zero", help="R1-Zero: GRPO with rule rewards straight from the base model")
    p.add_argument("--profile", choices=["ci", "cpu", "gpu"], default=None,
                   help="run size and whose base model (default: MINIR1_PROFILE, else gpu with CUDA, else cpu)")
    p.add_argument("--out", default=None, help="output directory (default runs/r1zero-PROFILE)")
    p.add_argument("--steps", type=int, default=None, help="override the profile's GRPO step count")
    p.add_argument("--tasks", default=None, help="comma-separated tasks to train and evaluate on (default add,sub,mul)")
    p.add_argument("--levels", default=None, help="comma-separated levels (default 3,4)")
    p.set_defaults(func=_r1_zero)
    p = sub.add_parser("r1", help="the R1 pipeline: cold start, reasoning RL, rejection sampling + SFT, final RL "
                                  "(and R1-Zero beside it), scored stage by stage")
    p.add_argument("--profile", choices=["ci", "cpu", "gpu"], default=None,
                   help="run size and whose base model (default: MINIR1_PROFILE, else gpu with CUDA, else cpu)")
    p.add_argument("--fast", action="store_true", help="the short recipe `minir1 demo --fast` runs")
    p.add_argument("--out", default=None, help="output directory (default runs/r1-PROFILE)")
    p.set_defaults(func=_r1)
    p = sub.add_parser("distill", help="a smaller dense student: SFT on the teacher's traces vs RL alone")
    p.add_argument("--profile", choices=["ci", "cpu", "gpu"], default=None,
                   help="run size and whose student (default: MINIR1_PROFILE, else gpu with CUDA, else cpu)")
    p.add_argument("--fast", action="store_true", help="the short recipe `minir1 demo --fast` runs")
    p.add_argument("--traces", default=None, help="teacher traces (JSON lines; default runs/r1-PROFILE/traces.jsonl, "
                                                  "else the shipped data/r1-traces-cpu.jsonl)")
    p.add_argument("--out", default=None, help="output directory (default runs/distill-PROFILE)")
    p.set_defaults(func=_distill)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
