"""``minir1 plan``: every section of the planner as one JSON-ready dict, and the same numbers as
plain-text tables (``format_plan``), so the two can never disagree."""

from __future__ import annotations

from dataclasses import asdict, replace

from minir1.config import PRESETS, ModelConfig
from minir1.model.params import count_params
from minir1.plan import comm, compute, inference, memory
from minir1.plan.hardware import GIB, GPU, GPUS, H800


def _compute_section(cfg: ModelConfig, cost: compute.TrainingCost,
                     usd_per_gpu_hour: float) -> dict:
    section = {"run": asdict(cost), "excluded": list(compute.EXCLUDED)}
    if cfg == ModelConfig.preset("v3"):  # Table 1 is V3's own bill
        section["table1"] = compute.table1(cfg, usd_per_gpu_hour)
        section["per_trillion"] = compute.per_trillion(cfg)
    return section


def _memory_row(name: str, cfg: ModelConfig, layout: memory.Layout, gpu: GPU) -> dict:
    m = memory.training_memory(cfg, layout)
    return {"name": name, "layout": asdict(layout), "rank": m.rank, "stages": list(m.stages),
            "params": m.params, "in_flight": m.in_flight, "bytes": m.bytes, "total": m.total,
            "fits": m.fits(gpu)}


def _memory_section(cfg: ModelConfig, layout: memory.Layout | None, gpu: GPU) -> dict:
    rows = [] if layout is None else [_memory_row("yours", cfg, layout, gpu)]
    for label, ref in memory.NAIVE_LAYOUTS.items():
        try:
            rows.append(_memory_row(label, cfg, ref, gpu))
        except ValueError as err:  # e.g. EP64 on a preset with 16 experts
            rows.append({"name": label, "layout": asdict(ref), "error": str(err)})
    kinds = (False, True) if cfg.n_moe_layers else (False,)
    return {"gpu": gpu.name, "usable_bytes": (gpu.memory_gib - gpu.reserve_gib) * GIB,
            "activation_bytes_per_token": {"moe_block" if moe else "dense_block":
                                           memory.activation_bytes(cfg, moe) for moe in kinds},
            "layouts": rows}


def _inference_section(cfg: ModelConfig, name: str, gpus: dict[str, GPU], context: int) -> dict:
    models = [inference.served(ModelConfig.preset(p), p) for p in PRESETS]
    if name not in PRESETS:
        models.insert(0, inference.served(cfg, name))
    models += [inference.served(d) for d in inference.DISTILL]
    return {"kv_bytes_per_token": inference.kv_equivalents(cfg),
            "gpus": {key: g.name for key, g in gpus.items()},
            "models": inference.fit_table(models, gpus, cap=context)}


def _comm_section(cfg: ModelConfig, layout: memory.Layout, gpu: GPU, mfu: float,
                  precision: str, seq_len: int) -> dict:
    routes = [comm.traffic(cfg, layout.ep, routing, gpu, mfu, precision, seq_len,
                           layout.gpus_per_node) for routing in comm.ROUTINGS]
    return {"ep": layout.ep, "nodes": max(1, layout.ep // layout.gpus_per_node),
            "row_bytes": comm.row_bytes(cfg),
            "a2a_rows_per_micro_batch": comm.a2a_rows(layout.micro_batch_tokens,
                                                      cfg.n_activated_experts, layout.ep),
            "micro_batch_tokens": layout.micro_batch_tokens,
            "routings": [{**asdict(t), "ratio": t.ratio} for t in routes]}


def plan(cfg: ModelConfig, name: str = "config", layout: memory.Layout | None = None,
         gpu: GPU = H800, tokens: float = compute.V3_TOKENS, seq_len: int = compute.V3_SEQ_LEN,
         mfu: float = 0.4, precision: str = "bf16",
         usd_per_gpu_hour: float = compute.USD_PER_GPU_HOUR,
         context: int = inference.CONTEXTS[-1], reserve_gib: float | None = None) -> dict:
    """Compute and cost, training memory per GPU, inference memory, communication for ``cfg``.

    ``layout`` (default: V3's) is checked strictly; the reference layouts it is compared with are
    reported as not applicable where ``cfg`` breaks one of their rules. ``reserve_gib`` replaces
    every GPU's reserved memory (CUDA context and slack) when given."""
    if context <= 0:
        raise ValueError(f"context={context!r}: must be a positive number of tokens")
    gpus = dict(GPUS)
    if reserve_gib is not None:
        if not 0 <= reserve_gib < gpu.memory_gib:
            raise ValueError(f"reserve_gib={reserve_gib!r}: must be >= 0 and below the "
                             f"{gpu.name}'s {gpu.memory_gib} GiB")
        gpu = replace(gpu, reserve_gib=reserve_gib)
        gpus = {k: replace(g, reserve_gib=reserve_gib) for k, g in gpus.items()}
    counts, chosen = count_params(cfg), layout or memory.V3_LAYOUT
    cost = compute.training_cost(cfg, tokens, seq_len, gpu, chosen.n_gpus, mfu, precision,
                                 usd_per_gpu_hour)
    report = {
        "model": {"name": name, "params": counts.total, "activated": counts.activated,
                  "mtp_params": counts.mtp_total},
        "assumptions": {"gpu": gpu.name, "n_gpus": chosen.n_gpus, "tokens": tokens,
                        "seq_len": seq_len, "mfu": mfu, "precision": precision,
                        "peak_tflops": gpu.peak_flops(precision) / 1e12,
                        "usd_per_gpu_hour": usd_per_gpu_hour, "reserve_gib": gpu.reserve_gib,
                        "context_cap": context},
        "compute": _compute_section(cfg, cost, usd_per_gpu_hour),
        "training_memory": _memory_section(cfg, layout, gpu),
        "inference": _inference_section(cfg, name, gpus, context),
    }
    if cfg.n_moe_layers:
        try:
            report["communication"] = _comm_section(cfg, chosen, gpu, mfu, precision, seq_len)
        except ValueError as err:
            if layout is not None:  # the user's own layout: say which rule it breaks
                raise
            report["communication"] = {"ep": chosen.ep, "error": str(err)}
    return report


# ----------------------------------------------------------------------------------- text
def _k(hours: float) -> str:
    return f"{hours / 1e3:,.0f}K" if hours >= 1e3 else f"{hours:,.2f}"


def _usd(x: float) -> str:
    return f"${x / 1e6:.3f}M" if x >= 1e4 else f"${x:,.2f}"


def _count(n: float) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _tokens(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e12:.1f}T" if n >= 1e12 else f"{n / 1e9:.1f}B"


def _ctx(n: int) -> str:
    return "-" if n == 0 else f"{n // 1024}K"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:  # first column left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    return [line(header), *map(line, rows)]


def _compute_text(r: dict) -> list[str]:
    a, run = r["assumptions"], r["compute"]["run"]
    out = ["== Compute and cost ==",
           f"training FLOPs per token at {run['seq_len']:,} context (forward + backward, active "
           f"experts, MTP): {run['flops_per_token']:.4g}",
           f"{_tokens(run['tokens'])} tokens on {run['n_gpus']:,} {a['gpu']} at {a['mfu']:.0%} of "
           f"the {a['precision'].upper()} peak ({a['peak_tflops']:,.1f} TFLOP/s): "
           f"{_k(run['gpu_hours'])} GPU-hours, {run['days']:.1f} days, {_usd(run['usd'])} "
           f"at ${a['usd_per_gpu_hour']:.2f}/GPU-hour"]
    if "table1" in r["compute"]:
        out += ["", "V3 Table 1: H800 GPU-hours as published, and the MFU they imply"]
        out += _table(["stage", "GPU-hours", "USD", "tokens", "MFU BF16", "MFU FP8"],
                      [[s["stage"], _k(s["gpu_hours"]), _usd(s["usd"]),
                        _tokens(s["tokens"]), _pct(s["mfu_bf16"]), _pct(s["mfu_fp8"])]
                       for s in r["compute"]["table1"]])
        t = r["compute"]["per_trillion"]
        out.append(f"{_k(t['gpu_hours'])} GPU-hours per trillion tokens = {t['days']:.1f} days on "
                   f"2,048 GPUs = {t['tokens_per_gpu_second']:,.0f} tokens/s per GPU "
                   f"(MFU {_pct(t['mfu_bf16'])} of BF16, {_pct(t['mfu_fp8'])} of FP8)")
    out.append("not in the bill: " + "; ".join(r["compute"]["excluded"]))
    return out


def _memory_text(r: dict) -> list[str]:
    m = r["training_memory"]
    out = [f"== Training memory per GPU ({m['gpu']}, {m['usable_bytes'] / GIB:.0f} GiB usable) =="]
    names = next((list(x["bytes"]) for x in m["layouts"] if "bytes" in x), [])
    rows = []
    for x in m["layouts"]:
        if "error" in x:
            rows.append([x["name"], "n/a", *[""] * (len(names) + 2)])
            continue
        rows.append([x["name"], _count(x["params"]),
                     *[f"{x['bytes'][n] / GIB:.1f}" for n in names],
                     f"{x['total'] / GIB:.1f}", "yes" if x["fits"] else "NO"])
    short = [n.split(" (")[0] for n in names]
    out += _table(["layout (GiB on the fullest GPU)", "params", *short, "total", "fits"], rows)
    for x in m["layouts"]:
        if "error" in x:
            out.append(f"  {x['name']}: does not apply ({x['error']})")
    for kind, parts in m["activation_bytes_per_token"].items():
        out.append(f"activations cached per token in one {kind.replace('_', ' ')}: "
                   f"{sum(parts.values()):,.0f} B (V3 recipe: recompute RMSNorm and MLA "
                   "up-projections, FP8 SwiGLU inputs)")
    first = next((x for x in m["layouts"] if "bytes" in x), None)
    if first:
        out.append(f"{first['name']}: the fullest GPU is pipeline rank {first['rank']} (stages "
                   f"{', '.join(map(str, first['stages']))}), holding {first['in_flight']} "
                   f"micro-batches of {first['layout']['micro_batch_tokens']:,} tokens (assumed)")
    out.append("not counted: the reserved GiB per GPU (CUDA context, slack), communication "
               "buffers, the block being recomputed")
    return out


def _inference_text(r: dict) -> list[str]:
    inf, cap = r["inference"], r["assumptions"]["context_cap"]
    kv = inf["kv_bytes_per_token"]
    out = ["== Inference ==", "KV cache per token (BF16): " + "; ".join(
        f"{k} {v:,} B" for k, v in kv.items())]
    out.append(f"which GPU runs which model (batch 1; the longest context that fits, up to "
               f"{_ctx(cap)}; '-': the weights do not fit)")
    gpus = list(inf["gpus"])
    out += _table(["model", "precision", "weights GiB", "KV KiB/token",
                   *[inf["gpus"][g] for g in gpus]],
                  [[x["model"], x["precision"], f"{x['weight_bytes'] / GIB:.1f}",
                    f"{x['kv_bytes_per_token'] / 1024:.1f}",
                    *[_ctx(x["max_context"][g]) for g in gpus]] for x in inf["models"]])
    runs = [f"{x['model']} {x['precision']} ({_ctx(x['max_context']['rtx3080'])})"
            for x in inf["models"] if x["model"].startswith("R1-Distill")
            and x["max_context"]["rtx3080"]]
    out.append("on an RTX 3080 (10 GB), R1-Distill models that run: " + ", ".join(runs)
               + "; the 3080 has no FP8 tensor cores, so FP8 there is storage only")
    return out


def _comm_text(r: dict) -> list[str]:
    c, a = r["communication"], r["assumptions"]
    if "error" in c:
        return [f"== Expert-parallel all-to-all: EP{c['ep']} does not apply ({c['error']}) =="]
    out = [f"== Expert-parallel all-to-all: EP{c['ep']} over {c['nodes']} node(s), per token and "
           "MoE layer, forward ==",
           f"rows: dispatch {c['row_bytes']['dispatch']:,.0f} B (FP8 + scales), combine "
           f"{c['row_bytes']['combine']:,.0f} B (BF16); {c['a2a_rows_per_micro_batch']:,.0f} rows "
           f"leave a GPU per MoE layer and micro-batch of {c['micro_batch_tokens']:,} tokens, "
           "each way (tokens x K_r x (EP-1)/EP)"]
    out += _table(["routing", "IB copies", "NVLink copies", "dispatch us", "combine us",
                   "compute us", "compute:comm"],
                  [[t["routing"], f"{t['ib_copies']:.2f}", f"{t['nvlink_copies']:.2f}",
                    f"{t['dispatch_us']:.3f}", f"{t['combine_us']:.3f}", f"{t['compute_us']:.3f}",
                    f"{t['ratio']:.2f}"] for t in c["routings"]])
    out.append(f"IB 50 GB/s, NVLink 160 GB/s per GPU (V3 §3.2.2); compute at {a['mfu']:.0%} of "
               f"the {a['precision'].upper()} peak; the paper: about 1:1 for cross-node EP "
               "(V3 §3.2.1), hence DualPipe")
    return out


def format_plan(report: dict) -> str:
    """The report as plain-text tables."""
    m = report["model"]
    out = [f"minir1 plan: {m['name']} ({_count(m['params'])} parameters, "
           f"{_count(m['activated'])} activated per token)", ""]
    out += [*_compute_text(report), "", *_memory_text(report), "", *_inference_text(report)]
    if "communication" in report:
        out += ["", *_comm_text(report)]
    return "\n".join(out)


__all__ = ["format_plan", "plan"]
