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
    print("== 1/3 data: the fixed held-out test sets ==")
    problems = verify_test_sets(args.data)
    if problems:
        write_test_sets(args.data)
        print(f"rebuilt {args.data}/ ({problems[0]})")
    print(f"{args.data}/test: 16 sets of 200 problems (4 tasks x 4 levels), checksums verified")
    recipe = DEMO_RECIPE if args.steps is None else replace(DEMO_RECIPE, steps=args.steps)
    v3, tiny = count_params(ModelConfig.preset("v3")), count_params(model_config(recipe, Tokenizer()))
    print(f"\n== 2/3 pretrain the tiny DeepSeek-V3 ({tiny.total:,} parameters; the real V3 counted on the meta "
          f"device: {v3.total / 1e9:.1f}B, {v3.activated / 1e9:.1f}B active) ==")
    print(f"{recipe.steps} steps of {recipe.batch_size} x {recipe.seq_len} tokens: a short version of "
          "`minir1 pretrain` (the lessons' base model trains longer)")
    trainer = pretrain(args.out, replace(recipe, eval_n=0), seed=args.seed)
    last = trainer.history[-1]
    print(f"trained in {time.perf_counter() - t0:.0f}s; final loss {last['loss']:.3f} at "
          f"{last['tokens_per_s']:,.0f} tokens/s; checkpoint {args.out}/checkpoint")
    print(f"\n== 3/3 evaluate: greedy accuracy on {recipe.eval_n} held-out problems per task and level ==")
    print("free = the model chooses; direct = forced to answer at once; reason = forced to work it out first")
    results = run_evaluation(trainer.model, trainer.tokenizer, recipe.eval_n)
    write_summary(Path(args.out) / "eval.json", results)
    print(accuracy_table(results))
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")


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
    from minir1.train.pretrain import RECIPES, base_dir, pretrain

    name = args.profile or profile.current()
    recipe = RECIPES[name]
    args.out = args.out or str(base_dir(name))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minir1", description="DeepSeek-V3 and R1 in miniature.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="data -> pretrain the tiny model (a few minutes) -> accuracy table")
    p.add_argument("--out", default="runs/demo", help="output directory")
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
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
