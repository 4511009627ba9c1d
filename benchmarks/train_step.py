"""One full training step (forward, backward, AdamW) of minir1 and of transformers'
DeepseekV3ForCausalLM.

Both models get the identical configuration and the identical weights (loaded from one another), the
same batch, and alternate inside one process so that machine noise hits both alike. Prints tokens/s
for each, the ratio, and minir1's achieved GFLOP/s against a same-process fp32 matmul peak.

    python benchmarks/train_step.py [--steps 10] [--warmup 3] [--threads N]
                                    [--experts auto|loop|grouped]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch

from minir1 import ModelConfig, Transformer
from minir1 import hf as mhf
from minir1.model.moe import set_expert_impl
from minir1.model.params import train_flops_per_token

# The configuration the issue fixes: hidden 256, 4 layers (1 dense), 4 heads, q_lora 128,
# kv_lora 64, nope/rope/v 32/16/32, 16 routed experts in 4 groups (top-2 groups), 4 active +
# 1 shared, expert width 128, dense width 512, vocab 512, batch 16 x 128.
CFG = dict(vocab_size=512, dim=256, inter_dim=512, moe_inter_dim=128, n_layers=4, n_dense_layers=1,
           n_heads=4, n_routed_experts=16, n_shared_experts=1, n_activated_experts=4,
           n_expert_groups=4, n_limited_groups=2, score_func="sigmoid", route_scale=1.0,
           q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16,
           v_head_dim=32, max_seq_len=128, original_seq_len=128,
           n_mtp_modules=0, balance_alpha=0.0)  # transformers has neither MTP nor a balance loss
BATCH, SEQ = 16, 128


def matmul_peak(seconds: float = 1.0, n: int = 1024) -> float:
    """Best fp32 GFLOP/s of an n x n matmul in this process."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def build() -> tuple[Transformer, torch.nn.Module, ModelConfig]:
    import transformers

    cfg = ModelConfig(**CFG)
    torch.manual_seed(0)
    ours = Transformer(cfg)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mhf.save_pretrained(ours, tmp)  # identical weights, through the hub layout
        theirs = transformers.DeepseekV3ForCausalLM.from_pretrained(tmp, dtype=torch.float32)
    return ours, theirs.train(), cfg


def step_minir1(model: Transformer, opt: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor) -> float:
    loss = model(x, targets=y).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    model.update_expert_bias()
    return loss.item()


def step_hf(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
            y: torch.Tensor) -> float:
    logits = model(input_ids=x).logits
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice)")
    parser.add_argument("--experts", default="auto", choices=("auto", "loop", "grouped"),
                        help="minir1's routed experts: one call each, or grouped GEMMs "
                             "(minir1.model.grouped; auto = the loop on a CPU)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also profile minir1's step: time by op family, and the "
                             "matrix multiplies' own GFLOP/s")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ours, theirs, cfg = build()
    set_expert_impl(ours, args.experts)
    x = torch.randint(0, cfg.vocab_size, (BATCH, SEQ), generator=torch.Generator().manual_seed(1))
    y = x.roll(-1, dims=1)
    with torch.no_grad():  # same weights, same function: check before timing anything
        diff = (ours(x).logits - theirs(input_ids=x).logits).abs().max().item()
    assert diff < 1e-4, f"minir1 and transformers disagree (max abs logit diff {diff:.2e})"
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                    fused=True)
            for name, m in (("minir1", ours), ("transformers", theirs))}
    steps = {"minir1": lambda: step_minir1(ours, opts["minir1"], x, y),
             "transformers": lambda: step_hf(theirs, opts["transformers"], x, y)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(args.warmup + args.steps):
        for name, fn in steps.items():  # alternate, so drift and noise hit both
            t = time.perf_counter()
            fn()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t)
    peak = matmul_peak()
    tokens = BATCH * SEQ
    flops = train_flops_per_token(cfg, SEQ) * tokens
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"config: dim {cfg.dim}, {cfg.n_layers} layers ({cfg.n_dense_layers} dense), "
          f"{cfg.n_routed_experts} experts top-{cfg.n_activated_experts}, batch {BATCH}x{SEQ}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, experts "
          f"{args.experts}; "
          f"logits agree to {diff:.1e}")
    print(f"{'implementation':<14} {'median step':>12} {'tokens/s':>10} {'GFLOP/s':>9} "
          f"{'% of peak':>9}")
    for name, t in med.items():
        gf = flops / t / 1e9
        print(f"{name:<14} {t * 1e3:>10.1f}ms {tokens / t:>10,.0f} {gf:>9.1f} {gf / peak:>9.1%}")
    print(f"ratio minir1 / transformers: {med['transformers'] / med['minir1']:.2f}x  "
          f"(fp32 matmul peak in this process: {peak:.0f} GFLOP/s; "
          f"{flops / tokens / 1e6:.1f} MFLOP per token)")
    print(f"floor at 100% of peak: {flops / peak / 1e6:.1f} ms per step = "
          f"{tokens * peak * 1e9 / flops:,.0f} tokens/s "
          f"= {med['transformers'] * peak * 1e9 / flops:.2f}x transformers")
    if args.breakdown:
        breakdown(steps["minir1"], peak, flops / peak / 1e6)


# Op families for ``--breakdown``: the first family whose pattern an aten op's name matches
FAMILIES = [
    ("matrix multiplies", ("aten::mm", "aten::bmm", "aten::addmm", "aten::_grouped_mm")),
    ("attention (SDPA kernels)", ("scaled_dot_product",)),
    ("MoE routing and dispatch", ("topk", "sort", "index_select", "index_add", "scatter",
                                  "gather", "masked_fill", "sigmoid")),
    ("copies and concatenation", ("aten::cat", "copy_", "clone", "contiguous", "stack")),
    ("optimizer (fused AdamW)", ("adam",)),
    ("loss (log-softmax, NLL)", ("softmax", "nll_loss", "cross_entropy")),
    ("elementwise and reductions", ("mul", "add", "sub", "div", "pow", "silu", "sum", "mean",
                                    "rsqrt", "neg", "sign", "fill_", "zero", "where", "exp")),
]


def family(op: str) -> str:
    """The op family of an aten op name (``FAMILIES``); "other" for the rest (views, autograd's
    bookkeeping, ...)."""
    return next((name for name, keys in FAMILIES if any(k in op for k in keys)), "other")


def breakdown(step, peak: float, floor_ms: float, n: int = 3) -> None:
    """Where minir1's step time goes, by op family (each op's own time under the profiler), and
    how fast its matrix multiplies run against the 1024^3 matmul peak."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step()
    ms: dict[str, float] = {}
    for e in prof.key_averages():
        # autograd nodes and Python-side optimizer records: bookkeeping around the kernels
        name = family(e.key) if e.key.startswith("aten::") else "other"
        ms[name] = ms.get(name, 0.0) + e.self_cpu_time_total / n / 1e3
    # FLOPs from a separate pass: counting them records shapes, which inflates the op times
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        step()
    mm_flops = sum(e.flops for e in prof.key_averages() if family(e.key) == "matrix multiplies")
    total = sum(ms.values())
    print(f"\nminir1's step by op family ({total:.1f} ms of op time per step under the "
          f"profiler; floor {floor_ms:.1f} ms):")
    print(f"{'family':<28} {'ms/step':>8} {'share':>6} {'x floor':>8}")
    for name, t in sorted(ms.items(), key=lambda kv: -kv[1]):
        print(f"{name:<28} {t:>8.1f} {t / total:>6.0%} {t / floor_ms:>8.2f}")
    mm_ms = ms.get("matrix multiplies", 0.0)
    rate = mm_flops / (mm_ms / 1e3) / 1e9 if mm_ms else 0.0
    print(f"matrix multiplies: {mm_flops / 1e9:.3g} GFLOP per step at {rate:.0f} GFLOP/s "
          f"({rate / peak:.0%} of the {peak:.0f} GFLOP/s peak): alone "
          f"{mm_ms / floor_ms:.2f}x the floor")


if __name__ == "__main__":
    main()
