"""The ``minir1`` command line."""

from __future__ import annotations

import argparse
import sys
import time

from minir1.config import PRESETS


def _demo(args: argparse.Namespace) -> None:
    import torch

    from minir1 import ModelConfig, Transformer, count_params
    from minir1.infer import generate

    torch.manual_seed(args.seed)
    cfg = ModelConfig.preset(args.preset)
    print(f"== minir1 demo: the {args.preset!r} DeepSeek-V3 model ==")
    counts = count_params(cfg)
    print(counts.table())
    v3 = count_params(ModelConfig.preset("v3"))
    print(f"\nThe real DeepSeek-V3 (counted on the meta device): {v3.total / 1e9:.1f}B parameters, "
          f"{v3.activated / 1e9:.1f}B activated per token; latent KV cache {v3.kv_bytes_absorbed:,} B/token "
          f"vs {v3.kv_bytes_naive:,} B/token expanded ({v3.kv_bytes_naive / v3.kv_bytes_absorbed:.0f}x).")
    model = Transformer(cfg)
    prompt = torch.randint(0, cfg.vocab_size, (2, 8))
    t0 = time.perf_counter()
    out = generate(model, prompt, max_new_tokens=args.tokens)
    dt = time.perf_counter() - t0
    print(f"\nGenerated {args.tokens} tokens x 2 sequences through the latent cache in {dt:.2f}s "
          f"(untrained weights, so the tokens are noise):")
    for row in out.tolist():
        print("  ", row)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minir1", description="DeepSeek-V3 and R1 in miniature.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="build the tiny model, print its parameters and the V3 count, generate")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--tokens", type=int, default=16, help="tokens to generate")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
    p = sub.add_parser("params", help="parameter table and KV-cache size of a preset")
    p.add_argument("--preset", default="v3", choices=sorted(PRESETS))
    p.set_defaults(func=_params)
    p = sub.add_parser("data", help="(re)build the fixed held-out test sets and their checksum manifest")
    p.add_argument("--out", default="data", help="directory to write test/ and MANIFEST.json into")
    p.set_defaults(func=_data)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
