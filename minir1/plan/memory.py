"""Training memory per GPU under a parallel layout: pipeline (PP), expert (EP), data (DP, ZeRO-1)
and optional tensor (TP) parallelism, with DeepSeek-V3's precisions and recomputation.

Per parameter a GPU holds (V3 §3.3.3): BF16 weights (2 B) and FP32 gradients (4 B), plus the
optimizer state, FP32 master weights (4 B) and AdamW's two moments in BF16 (2 x 2 B). ZeRO-1
divides the state over the data-parallel replicas of that parameter (Rajbhandari et al. 2020,
stage 1): all DP ranks for attention and dense weights, ``DP x TP / EP`` for a routed expert.
DualPipe keeps two copies of the parameters, rank r holding pipeline stages r and PP-1-r, and
PP + 1 micro-batches of activations in flight on every rank against 1F1B's PP on the first (V3
Table 2); what each rank holds is read off the schedule's simulated timeline
(``minir1.plan.schedule``): PP - r micro-batches on rank r under 1F1B, and under DualPipe the
peak of its two stages' activations, each weighted by its own size. Layers are spread as
evenly as possible; the stages one layer short are the first and last, which also hold the
embedding and the head (and the MTP module, V3 §3.2.3).

Activations are what V3's recipe caches per token (V3 §3.2.3, §3.3.3): RMSNorm and the MLA
up-projections are recomputed, so a block keeps its input, the latents c^Q and c^KV with the RoPE
key k^R, the attention output (the input of W^O, in E5M6) and the softmax statistics; an MoE keeps
the FP8 copies dispatched to its K_r experts and their SwiGLU inputs in FP8 (the SwiGLU output is
recomputed). FP8 tensors carry one FP32 scale per 1x128 tile (V3 §3.3.2). Assumed where the paper
is silent: the gate value multiplies the expert output inside the expert (so no expert output is
cached); the logits are computed in chunks (not cached); a micro-batch is one 4,096-token sequence
per GPU (DeepEP's normal kernels are tuned at 4,096 tokens per batch, "the DeepSeek-V3/R1
pretraining setting"); TP shards activations too (sequence parallelism). Not counted: the CUDA
context (``GPU.reserve_gib``), communication buffers, and the one layer being recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from minir1.config import ModelConfig
from minir1.model.params import count_params
from minir1.plan.hardware import GIB, GPU, GPUS_PER_NODE, H800
from minir1.plan.schedule import simulate, stages_on

# bytes per value
BF16, FP32, E5M6 = 2, 4, 1.5  # E5M6: the 12-bit format for W^O's input (V3 §3.3.3)
TILE = 128  # one FP32 scale per 1x128 activation tile (V3 §3.3.2)


def fp8_bytes(n: int, value_bytes: float = 1.0) -> float:
    """A quantised row of ``n`` values with its per-tile FP32 scales."""
    return n * value_bytes + FP32 * math.ceil(n / TILE)


@dataclass(frozen=True)
class LayerParams:
    """Parameters of one block, split by how parallelism divides them (from ``count_params``)."""

    attention: float  # MLA, its latent norms and the block's two RMSNorms: split by TP only
    dense_ffn: float  # a dense layer's SwiGLU FFN
    shared: float  # an MoE layer's gate + shared experts
    expert: float  # one routed expert: split by EP
    n_experts: int  # routed experts per MoE layer (0: no MoE layers)
    n_active: int  # K_r, routed experts per token

    def block(self, moe: bool) -> float:
        """Parameters of one block outside the routed experts."""
        return self.attention + (self.shared if moe else self.dense_ffn)

    @property
    def moe_active(self) -> float:
        """Weights one token touches in an MoE layer: attention, gate, shared, K_r experts."""
        return self.attention + self.shared + self.n_active * self.expert


def layer_params(cfg: ModelConfig) -> LayerParams:
    """Per-block parameter counts of ``cfg``, read off its meta-device parameter count."""
    c = count_params(cfg).components
    n_moe = cfg.n_moe_layers
    return LayerParams(
        attention=(c["attention"] + c["norms"] - cfg.dim) / cfg.n_layers,
        dense_ffn=c["dense_ffn"] / cfg.n_dense_layers if cfg.n_dense_layers else 0.0,
        shared=(c["gates"] + c["shared_experts"]) / n_moe if n_moe else 0.0,
        expert=c["routed_experts"] / (n_moe * cfg.n_routed_experts) if n_moe else 0.0,
        n_experts=cfg.n_routed_experts if n_moe else 0, n_active=cfg.n_activated_experts)


def activation_bytes(cfg: ModelConfig, moe: bool) -> dict[str, float]:
    """Bytes one token caches for backward in one block under V3's recipe, by tensor."""
    d, h = cfg.dim, cfg.n_heads
    q = (("query latent c^Q (BF16)", BF16 * cfg.q_lora_rank) if cfg.q_lora_rank
         else ("query, no latent to recompute it from (BF16)", BF16 * h * cfg.qk_head_dim))
    parts = {
        "block input (BF16, RMSNorm recomputed)": BF16 * d,
        q[0]: q[1],
        "KV latent c^KV + RoPE key k^R (BF16)": BF16 * (cfg.kv_lora_rank + cfg.qk_rope_head_dim),
        "attention output, input of W^O (E5M6)": fp8_bytes(h * cfg.v_head_dim, E5M6),
        "softmax log-sum-exp per head (FP32)": FP32 * h,
        "FFN input (BF16, RMSNorm recomputed)": BF16 * d,
    }
    if moe:
        k, width = cfg.n_activated_experts, cfg.moe_inter_dim
        parts["gate values + expert ids (FP32, int32)"] = (FP32 + 4) * k
        parts["dispatched expert inputs (FP8, K_r copies)"] = k * fp8_bytes(d)
        parts["routed SwiGLU inputs (FP8, K_r copies)"] = k * fp8_bytes(2 * width)
        if cfg.n_shared_experts:
            parts["shared-expert SwiGLU inputs (FP8)"] = fp8_bytes(
                2 * cfg.n_shared_experts * width)
    else:
        parts["SwiGLU inputs (FP8)"] = fp8_bytes(2 * cfg.inter_dim)
    return parts


@dataclass(frozen=True)
class Layout:
    """How ``n_gpus`` GPUs split one training step (V3 §3.2: PP16, EP64 over 8 nodes, ZeRO-1)."""

    n_gpus: int = 2048
    pp: int = 16  # pipeline stages
    ep: int = 64  # expert-parallel group: routed experts split over EP ranks of one stage
    tp: int = 1  # tensor parallel: attention and dense weights split over TP ranks
    zero1: bool = True  # shard master weights and moments over the replicas of each parameter
    dualpipe: bool = True  # DualPipe (two parameter copies, PP+1 in flight) rather than 1F1B
    micro_batch_tokens: int = 4096  # tokens per micro-batch per GPU (assumed, see above)
    gpus_per_node: int = GPUS_PER_NODE

    @property
    def dp(self) -> int:
        """Data-parallel replicas of a non-expert weight."""
        return self.n_gpus // (self.pp * self.tp)

    @property
    def expert_dp(self) -> int:
        """Replicas of a routed expert: the stage's DP x TP ranks form DP x TP / EP EP groups."""
        return self.dp * self.tp // self.ep

    def validate(self, cfg: ModelConfig) -> None:
        """Raise ValueError naming the first field that breaks a rule."""

        def fail(name: str, rule: str) -> None:
            raise ValueError(f"Layout.{name}={getattr(self, name)!r}: {rule}")

        for name in ("n_gpus", "pp", "ep", "tp", "micro_batch_tokens", "gpus_per_node"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                fail(name, "must be a positive integer")
        if self.n_gpus % (self.pp * self.tp):
            fail("n_gpus", f"must be divisible by pp * tp = {self.pp * self.tp}")
        if (self.dp * self.tp) % self.ep:
            fail("ep", f"must divide the {self.dp * self.tp} GPUs of a pipeline stage "
                       "(dp * tp): EP groups are drawn from them")
        if cfg.n_moe_layers and cfg.n_routed_experts % self.ep:
            fail("ep", f"must divide n_routed_experts ({cfg.n_routed_experts})")
        if cfg.n_heads % self.tp:
            fail("tp", f"must divide n_heads ({cfg.n_heads}): TP splits the heads")
        if self.pp > cfg.n_layers + cfg.n_mtp_modules:
            fail("pp", f"must be <= the {cfg.n_layers + cfg.n_mtp_modules} blocks "
                       "(n_layers + n_mtp_modules): every stage holds a block")
        if self.dualpipe and self.pp % 2:
            fail("pp", "must be even for DualPipe (V3 Table 2); use dualpipe=False for 1F1B")


def stage_sizes(n_blocks: int, pp: int) -> list[int]:
    """Blocks per stage, as even as possible; the short stages are taken from both ends."""
    base = math.ceil(n_blocks / pp)
    sizes = [base] * pp
    ends = [i for pair in zip(range(pp), range(pp - 1, -1, -1), strict=True) for i in pair]
    for i in list(dict.fromkeys(ends))[: base * pp - n_blocks]:  # 0, pp-1, 1, pp-2, ...
        sizes[i] -= 1
    return sizes


@dataclass(frozen=True)
class StageLoad:
    nonexpert: float  # parameters replicated over DP (before TP)
    expert: float  # routed-expert parameters (before EP)
    act_per_token: float  # bytes cached per token through the stage


def stage_loads(cfg: ModelConfig, layout: Layout) -> list[StageLoad]:
    """What each pipeline stage holds: its blocks, the embedding on the first, the head, the final
    norm and the MTP modules (sharing the embedding and head when DualPipe co-locates them) on the
    last."""
    lp, counts = layer_params(cfg), count_params(cfg)
    kinds = ([False] * cfg.n_dense_layers + [True] * cfg.n_moe_layers
             + [cfg.n_moe_layers > 0] * cfg.n_mtp_modules)  # True: an MoE block
    act = {moe: sum(activation_bytes(cfg, moe).values()) for moe in (False, True)}
    loads, start = [], 0
    sizes = stage_sizes(len(kinds), layout.pp)
    for s, size in enumerate(sizes):
        blocks = kinds[start:start + size]
        start += size
        nonexpert = sum(lp.block(moe) for moe in blocks)
        expert = lp.expert * lp.n_experts * sum(blocks)
        act_tok = sum(act[moe] for moe in blocks)
        if s == 0:
            nonexpert += counts.embedding
        if s == layout.pp - 1:
            mtp_block = lp.block(kinds[-1]) + lp.expert * lp.n_experts * kinds[-1]
            mtp_extra = counts.mtp_total - mtp_block * cfg.n_mtp_modules  # projections, norms
            nonexpert += counts.head + cfg.dim + mtp_extra
            if cfg.n_mtp_modules and layout.pp > 1 and not layout.dualpipe:
                nonexpert += counts.embedding  # the MTP modules need their own copy
            act_tok += BF16 * cfg.dim * (1 + cfg.n_mtp_modules)  # head input, MTP embeddings
        loads.append(StageLoad(nonexpert, expert, act_tok))
    return loads


@dataclass
class TrainingMemory:
    rank: int  # the pipeline rank that needs the most memory (the one that decides)
    stages: tuple[int, ...]  # the stages it holds
    params: float  # parameters on that GPU
    # micro-batches whose activations it holds at its peak (DualPipe: PP+1; 1F1B: PP - rank)
    in_flight: int
    bytes: dict[str, float] = field(default_factory=dict)  # per component

    @property
    def total(self) -> float:
        return sum(self.bytes.values())

    def fits(self, gpu: GPU = H800) -> bool:
        return self.total <= (gpu.memory_gib - gpu.reserve_gib) * GIB


def training_memory(cfg: ModelConfig, layout: Layout | None = None) -> TrainingMemory:
    """Bytes per GPU, by component, on the pipeline rank that needs the most."""
    layout = layout or Layout()
    layout.validate(cfg)
    loads = stage_loads(cfg, layout)
    shard = (layout.dp, layout.expert_dp) if layout.zero1 else (1, 1)
    # enough micro-batches that every rank reaches its steady-state peak
    schedule = "DualPipe" if layout.dualpipe else "1F1B"
    timeline = simulate(schedule, layout.pp, 2 * layout.pp) if layout.pp > 1 else None
    worst = None
    for rank in range(layout.pp):
        held = stages_on(schedule, layout.pp, rank)
        nonexpert = sum(loads[s].nonexpert for s in held) / layout.tp
        expert = sum(loads[s].expert for s in held) / layout.ep
        params = nonexpert + expert
        if timeline is None:
            in_flight, per_token = 1, loads[0].act_per_token
        else:
            in_flight = int(timeline.activations(rank))
            per_token = timeline.activations(rank, weight=lambda s: loads[s].act_per_token)
        act = layout.micro_batch_tokens * per_token / layout.tp
        mem = TrainingMemory(rank, held, params, in_flight, {
            "weights (BF16)": BF16 * params,
            "gradients (FP32)": FP32 * params,
            "master weights (FP32)": FP32 * (nonexpert / shard[0] + expert / shard[1]),
            "AdamW moments (2 x BF16)": 2 * BF16 * (nonexpert / shard[0] + expert / shard[1]),
            "activations": act,
        })
        if worst is None or mem.total > worst.total:
            worst = mem
    return worst


V3_LAYOUT = Layout()
# Layouts a first attempt might pick on the same 2,048 GPUs, to show why V3's is what it is.
NAIVE_LAYOUTS: dict[str, Layout] = {
    "V3: PP16 x EP64, ZeRO-1, DualPipe": V3_LAYOUT,
    "data parallel only (ZeRO-1)": Layout(pp=1, ep=1, dualpipe=False),
    "PP16, no EP": Layout(ep=1),
    "EP64, no PP": Layout(pp=1, dualpipe=False),
    "PP16 x EP8 (EP inside a node)": Layout(ep=8),
    "PP16 x EP64, no ZeRO-1": Layout(zero1=False),
    "PP16 x EP64, 1F1B": Layout(dualpipe=False),
}


__all__ = ["NAIVE_LAYOUTS", "V3_LAYOUT", "LayerParams", "Layout", "StageLoad", "TrainingMemory",
           "activation_bytes", "fp8_bytes", "layer_params", "stage_loads", "stage_sizes",
           "training_memory"]
