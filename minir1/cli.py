"""The ``minir1`` command line."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from minir1.config import PRESETS
from minir1.dist.mesh import DATA_PARALLEL
from minir1.profile import PROFILES


def _add_profile(p: argparse.ArgumentParser, what: str) -> None:
    """The ``--profile`` option every training command shares."""
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help=f"{what} (default: MINIR1_PROFILE, else gpu with CUDA, else cpu)")


def _add_parallel(p: argparse.ArgumentParser) -> None:
    """``--ep`` and ``--dp`` for the training commands (torchrun sets the number of processes)."""
    p.add_argument("--ep", type=int, default=1,
                   help="expert-parallel degree under torchrun: the routed experts are split "
                        "over groups of EP consecutive ranks (must divide --nproc_per_node)")
    p.add_argument("--dp", choices=DATA_PARALLEL, default="zero1",
                   help="data parallelism under torchrun: zero1 (whole weights, optimiser state "
                        "divided: DeepSeek-V3's) or fsdp (weights, gradients and state divided)")
    p.set_defaults(parallel=True)


def _demo(args: argparse.Namespace) -> None:
    from minir1.demo import run_demo

    run_demo(args.out, fast=args.fast, data=args.data, steps=args.steps, seed=args.seed)


def _params(args: argparse.Namespace) -> None:
    from minir1.config import ModelConfig
    from minir1.model.params import count_params

    counts = count_params(ModelConfig.preset(args.preset))
    print(counts.table())
    print(f"KV cache per token: {counts.kv_bytes_absorbed:,} B latent (absorbed), "
          f"{counts.kv_bytes_naive:,} B expanded (naive), bf16")


def _plan(args: argparse.Namespace) -> None:
    import json

    from minir1.config import ModelConfig
    from minir1.plan import V3_LAYOUT, Layout, format_plan, get_gpu, plan

    schedule = args.schedule or ("dualpipe" if args.pp > 1 and args.pp % 2 == 0 else "1f1b")
    try:
        layout = Layout(n_gpus=args.gpus, pp=args.pp, ep=args.ep, tp=args.tp,
                        zero1=not args.no_zero1, dualpipe=schedule == "dualpipe",
                        micro_batch_tokens=args.micro_batch_tokens)
        report = plan(ModelConfig.preset(args.preset), args.preset,
                      layout=None if layout == V3_LAYOUT else layout, gpu=get_gpu(args.gpu),
                      tokens=args.tokens, seq_len=args.seq_len, mfu=args.mfu,
                      precision=args.precision, usd_per_gpu_hour=args.usd_per_gpu_hour,
                      context=args.context, reserve_gib=args.reserve_gib)
    except ValueError as err:  # a layout that does not divide, an unknown GPU, ...
        raise SystemExit(f"minir1 plan: {err}") from err
    print(json.dumps(report, indent=1) if args.json else format_plan(report))


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
    from minir1.train.pretrain import PRETRAIN_RECIPES, STUDENT_RECIPES, pretrain
    from minir1.train.runs import base_dir

    name = args.profile or profile.current()
    recipe = (STUDENT_RECIPES if args.student else PRETRAIN_RECIPES)[name]
    args.out = args.out or str(base_dir(name, "student" if args.student else "base"))
    if args.preset:
        recipe = replace(recipe, preset=args.preset)
    if args.steps:
        recipe = replace(recipe, steps=args.steps)
    if args.eval_n is not None:
        recipe = replace(recipe, eval_n=args.eval_n)
    if args.compile:
        recipe = replace(recipe, compile=True)
    if args.eval_every is not None:
        recipe = replace(recipe, eval_every=args.eval_every)
    t0 = time.perf_counter()
    trainer = pretrain(args.out, recipe, seed=args.seed, resume=args.resume)
    last = trainer.history[-1]
    print(f"pretrained {recipe.preset} for {trainer.step} steps in {time.perf_counter() - t0:.0f}s "
          f"(final loss {last['loss']:.3f}, {last['tokens_per_s']:,.0f} tokens/s); "
          f"checkpoint: {args.out}/checkpoint")


def _eval(args: argparse.Namespace) -> None:
    from minir1.eval.greedy import accuracy_table, run_evaluation, write_summary
    from minir1.train.checkpoint import load_model
    from minir1.train.runs import base_dir

    args.ckpt = args.ckpt or str(base_dir(args.profile) / "checkpoint")
    model, tok, meta = load_model(args.ckpt)
    modes = tuple(m.strip() for m in args.modes.split(","))
    results = run_evaluation(model, tok, args.n, modes=modes)
    if args.out:
        write_summary(args.out, results)
    print(f"checkpoint {args.ckpt} (step {meta['step']}), "
          f"{args.n} held-out problems per task and level")
    print("free = the model chooses; direct = forced to answer at once; "
          "reason = forced to work it out first")
    print(accuracy_table(results))


def _sft(args: argparse.Namespace) -> None:
    from minir1.data.datasets import CorpusConfig, corpus_documents
    from minir1.train.runs import base_dir
    from minir1.train.sft import sft

    corpus = CorpusConfig(template="chat", worked_fraction=1.0)
    docs = corpus_documents(corpus, args.n_docs, seed=args.seed)
    init = args.init or str(base_dir(args.profile) / "checkpoint")
    trainer = sft(init, args.out, docs, steps=args.steps, lr=args.lr, seed=args.seed)
    print(f"SFT: {trainer.step} steps on {len(docs)} worked chat samples "
          f"(loss on completions only, samples isolated by sample masking); "
          f"final loss {trainer.history[-1]['loss']:.3f}; checkpoint {args.out}/checkpoint")


def _r1_zero(args: argparse.Namespace) -> None:
    from minir1 import profile
    from minir1.rl.r1zero import format_summary, run_r1_zero

    name = args.profile or profile.current()

    def show(row: dict[str, float]) -> None:
        if "heldout_accuracy" in row:
            print(f"step {int(row['step']):>4}: held-out accuracy {row['heldout_accuracy']:.1%}, "
                  f"reasons first {row['heldout_reasoning']:.1%}, "
                  f"mean length {row['heldout_length']:.1f} tokens", flush=True)

    tasks = tuple(t.strip() for t in args.tasks.split(",")) if args.tasks else None
    levels = tuple(int(v) for v in args.levels.split(",")) if args.levels else None
    result = run_r1_zero(name, out=args.out, steps=args.steps, on_log=show, tasks=tasks,
                         levels=levels)
    if not result.summary:  # another rank than 0 under torchrun: rank 0 reports
        return
    out = args.out or f"runs/r1zero-{name}"
    print(format_summary(result.summary))
    print(f"log {out}/grpo.jsonl, samples {out}/samples.json, checkpoint {out}/checkpoint")


def _r1(args: argparse.Namespace) -> None:
    from minir1 import profile
    from minir1.demo import print_row, rejection_line
    from minir1.eval.sampled import format_results
    from minir1.rl.pipeline import FAST_PIPELINE, PIPELINE_RECIPES, run_r1_pipeline

    # --fast: the short recipe, from the cpu base model (what `minir1 demo --fast` runs)
    name = "cpu" if args.fast else (args.profile or profile.current())
    out = Path(args.out or f"runs/r1-{'fast' if args.fast else name}")
    recipe = FAST_PIPELINE if args.fast else PIPELINE_RECIPES[name]
    result = run_r1_pipeline(name, out, recipe, on_stage=print_row,
                             command="minir1 r1 --fast" if args.fast else None)
    print(rejection_line(result.summary["rejection"]))
    print(format_results(result.rows))
    print(f"results {out}/results.json, traces {out}/traces.jsonl, "
          f"one directory per stage under {out}/")
    from minir1.report import print_report
    print_report(out)


def _distill(args: argparse.Namespace) -> None:
    from minir1 import profile
    from minir1.demo import print_row
    from minir1.eval.sampled import format_results
    from minir1.rl.distill import DISTILL_RECIPES, FAST_DISTILL, run_distillation
    from minir1.rl.rejection import load_traces

    name = "cpu" if args.fast else (args.profile or profile.current())
    traces_file = args.traces
    if traces_file is None and args.fast and Path("runs/r1-fast/traces.jsonl").exists():
        traces_file = "runs/r1-fast/traces.jsonl"  # the traces `minir1 r1 --fast` wrote
    traces = load_traces(traces_file) if traces_file else None
    out = Path(args.out or f"runs/distill-{'fast' if args.fast else name}")
    recipe = FAST_DISTILL if args.fast else DISTILL_RECIPES[name]
    result = run_distillation(name, out, recipe, traces=traces, on_stage=print_row,
                              command="minir1 distill --fast" if args.fast else None)
    print(f"{result.summary['traces']} teacher traces from {result.summary['traces_from']}, "
          f"{result.summary['sft_steps']} SFT steps")
    print(format_results(result.rows))
    print(f"results {out}/results.json")


def _chat(args: argparse.Namespace) -> None:
    from minir1.chat import load_chat, terminal
    from minir1.weights import CheckpointError

    given = {"temperature": args.temperature, "top_p": args.top_p,
             "max_new_tokens": args.max_tokens, "template": args.template, "seed": args.seed}
    try:
        chat = load_chat(args.run, reasoning=not args.no_reason,
                         **{k: v for k, v in given.items() if v is not None})
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        raise SystemExit(f"minir1 chat: {err}") from err
    terminal(chat)


def _serve(args: argparse.Namespace) -> None:
    from minir1.serve import serve
    from minir1.weights import CheckpointError

    given = {"temperature": args.temperature, "top_p": args.top_p}
    try:
        serve(args.run, host=args.host, port=args.port,
              **{k: v for k, v in given.items() if v is not None})
    except (FileNotFoundError, ValueError, CheckpointError, ImportError) as err:
        raise SystemExit(f"minir1 serve: {err}") from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minir1", description="DeepSeek-V3 and R1 in miniature.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="data -> pretrain the tiny model -> the R1 pipeline and "
                                    "distillation -> results table "
                                    "(~20 min on 2 cores; --fast: ~4)")
    p.add_argument("--out", default="runs/demo", help="output directory")
    p.add_argument("--fast", action="store_true",
                   help="skip the pre-training demo (start from the shipped base model) and run "
                        "short RL stages")
    p.add_argument("--data", default="data",
                   help="where the test sets live (rebuilt if missing or changed)")
    p.add_argument("--steps", type=int, default=None, help="override the demo's step count")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
    p = sub.add_parser("params", help="parameter table and KV-cache size of a preset")
    p.add_argument("--preset", default="v3", choices=sorted(PRESETS))
    p.set_defaults(func=_params)
    p = sub.add_parser("plan", help="the real run on paper: GPU-hours and cost, training memory "
                                    "per GPU, which GPU runs which model, all-to-all traffic")
    p.add_argument("--preset", default="v3", choices=sorted(PRESETS))
    p.add_argument("--json", action="store_true", help="print the same numbers as one JSON object")
    p.add_argument("--gpu", default="h800", help="training GPU: rtx3080, rtx4090, h100, h800")
    p.add_argument("--gpus", type=int, default=2048, help="GPUs in the training run")
    p.add_argument("--pp", type=int, default=16, help="pipeline-parallel stages")
    p.add_argument("--ep", type=int, default=64, help="expert-parallel degree")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree (V3 uses none)")
    p.add_argument("--no-zero1", action="store_true",
                   help="keep the whole optimiser state on every data-parallel rank")
    p.add_argument("--schedule", choices=("dualpipe", "1f1b"), default=None,
                   help="pipeline schedule (default: dualpipe when --pp is even, else 1f1b)")
    p.add_argument("--micro-batch-tokens", type=int, default=4096,
                   help="tokens per micro-batch per GPU")
    p.add_argument("--tokens", type=float, default=14.8e12, help="training tokens")
    p.add_argument("--seq-len", type=int, default=4096, help="training context length")
    p.add_argument("--mfu", type=float, default=0.4,
                   help="model-FLOPs utilisation, a fraction of the --precision peak")
    p.add_argument("--precision", choices=("bf16", "fp8"), default="bf16",
                   help="whose dense peak the MFU is measured against")
    p.add_argument("--usd-per-gpu-hour", type=float, default=2.0)
    p.add_argument("--context", type=int, default=131072,
                   help="longest inference context to look for in the which-GPU table")
    p.add_argument("--reserve-gib", type=float, default=None,
                   help="GiB per GPU taken before any tensor (CUDA context, slack; default 1)")
    p.set_defaults(func=_plan)
    p = sub.add_parser("data",
                       help="(re)build the fixed held-out test sets and their checksum manifest")
    p.add_argument("--out", default="data", help="directory to write test/ and MANIFEST.json into")
    p.set_defaults(func=_data)
    p = sub.add_parser("pretrain", help="pre-train the base model on the reasoning corpus")
    _add_profile(p, "run size")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="model preset (default: the profile's)")
    p.add_argument("--steps", type=int, default=None, help="override the profile's step count")
    p.add_argument("--out", default=None,
                   help="output directory (checkpoint, metrics, eval.json); default "
                        "runs/base-PROFILE, where the lessons look for the base model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint if it exists")
    p.add_argument("--eval-n", type=int, default=None,
                   help="held-out problems per task and level in the final eval")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model (slow to start on CPU)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="steps between held-out checks during training (0: none; default: the "
                        "profile's)")
    p.add_argument("--student", action="store_true",
                   help="pre-train the distillation student (STUDENT_RECIPES; default out "
                        "runs/student-PROFILE)")
    _add_parallel(p)
    p.set_defaults(func=_pretrain)
    p = sub.add_parser("sft", help="supervised fine-tuning on worked solutions in the chat format")
    _add_profile(p, "whose base model to start from")
    p.add_argument("--init", default=None,
                   help="checkpoint to start from (default: the profile's base model, "
                        "runs/base-PROFILE/checkpoint)")
    p.add_argument("--out", default="runs/sft", help="output directory")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-docs", type=int, default=5000, help="worked samples to draw")
    p.add_argument("--seed", type=int, default=0)
    _add_parallel(p)
    p.set_defaults(func=_sft)
    p = sub.add_parser("eval", help="accuracy per task and level, answering directly vs reasoning")
    _add_profile(p, "whose base model to evaluate")
    p.add_argument("--out", default=None, help="also write the accuracies as JSON to this file")
    p.add_argument("--ckpt", default=None,
                   help="checkpoint directory (default: the profile's base model, "
                        "runs/base-PROFILE/checkpoint)")
    p.add_argument("--n", type=int, default=50,
                   help="held-out problems per task and level (<= 200)")
    p.add_argument("--modes", default="free,direct,reason",
                   help="comma-separated subset of free,direct,reason")
    p.set_defaults(func=_eval)
    p = sub.add_parser("r1-zero",
                       help="R1-Zero: GRPO with rule rewards straight from the base model")
    _add_profile(p, "run size and whose base model")
    p.add_argument("--out", default=None, help="output directory (default runs/r1zero-PROFILE)")
    p.add_argument("--steps", type=int, default=None, help="override the profile's GRPO step count")
    p.add_argument("--tasks", default=None,
                   help="comma-separated tasks to train and evaluate on (default add,sub,mul)")
    p.add_argument("--levels", default=None, help="comma-separated levels (default 3,4)")
    _add_parallel(p)
    p.set_defaults(func=_r1_zero)
    p = sub.add_parser("r1", help="the R1 pipeline: cold start, reasoning RL, "
                                  "rejection sampling + SFT, final RL (and R1-Zero beside it), "
                                  "scored stage by stage")
    _add_profile(p, "run size and whose base model")
    p.add_argument("--fast", action="store_true", help="the short recipe `minir1 demo --fast` runs")
    p.add_argument("--out", default=None, help="output directory (default runs/r1-PROFILE)")
    _add_parallel(p)
    p.set_defaults(func=_r1)
    p = sub.add_parser("distill",
                       help="a smaller dense student: SFT on the teacher's traces vs RL alone")
    _add_profile(p, "run size and whose student")
    p.add_argument("--fast", action="store_true", help="the short recipe `minir1 demo --fast` runs")
    p.add_argument("--traces", default=None,
                   help="teacher traces (JSON lines; default runs/r1-PROFILE/traces.jsonl, "
                        "else the shipped data/r1-traces-cpu.jsonl)")
    p.add_argument("--out", default=None, help="output directory (default runs/distill-PROFILE)")
    _add_parallel(p)
    p.set_defaults(func=_distill)
    p = sub.add_parser("chat", help="talk to a model: the thinking streamed faint, then the answer "
                                    "(piped: one answer per input line)")
    p.add_argument("--run", default=None,
                   help="a run directory or checkpoint (default: the best there is: runs/r1-*, "
                        "runs/r1zero-*, runs/distill-*, runs/base-*, then data/base-cpu)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature, 0 for greedy (default 0.6, R1's)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus mass (default 0.95, R1's)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="tokens per reply at most (default 160)")
    p.add_argument("--no-reason", action="store_true",
                   help="answer at once, an empty think block (the app's DeepThink off)")
    p.add_argument("--template", choices=("r1_zero", "chat"), default=None,
                   help="prompt template (default: the one the run was trained with)")
    p.add_argument("--seed", type=int, default=None, help="seed the sampling")
    p.set_defaults(func=_chat)
    p = sub.add_parser("serve", help="the model behind an OpenAI-compatible endpoint "
                                     "(/v1/chat/completions, the thinking in reasoning_content) "
                                     "and a chat page at /")
    p.add_argument("--run", default=None, help="a run directory or checkpoint (default: as chat)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--temperature", type=float, default=None,
                   help="the default when a request gives none (default 0.6, R1's)")
    p.add_argument("--top-p", type=float, default=None,
                   help="the default when a request gives none (default 0.95, R1's)")
    p.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    if not getattr(args, "parallel", False):
        args.func(args)
        return 0
    from minir1.dist import parallel

    launch = parallel.init(args.ep, dp=args.dp)  # None without torchrun: one process, as always
    try:
        if launch is not None and not launch.is_main:
            # rank 0 reports; the others' output would only repeat it
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                args.func(args)
        else:
            args.func(args)
    except BaseException as err:
        if launch is not None:  # torchrun then stops the other ranks; say which one failed
            print(f"minir1 {args.command}: rank {launch.rank} of {launch.layout.world} failed: "
                  f"{type(err).__name__}: {err}", file=sys.stderr, flush=True)
        raise
    finally:
        parallel.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
