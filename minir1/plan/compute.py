"""Compute and cost: training FLOPs -> GPU-hours -> dollars, and DeepSeek-V3's Table 1 rebuilt.

FLOPs per token are ``minir1.model.params.train_flops_per_token``, the formula the benchmarks use
for MFU: forward + backward = 3 x forward, 2 FLOPs per activated weight (active experts only, the
head included, the embedding lookup not), causal attention over (T+1)/2 keys on average, the MTP
modules included. Then

    GPU-hours = tokens x FLOPs/token / (peak x MFU) / 3600,   cost = GPU-hours x $/GPU-hour.

V3 §1 and Table 1: pre-training 2,664K + context extension 119K + post-training 5K = 2,788K H800
GPU-hours, $5.576M at $2 per GPU-hour; "each trillion tokens requires only 180K H800 GPU hours,
i.e., 3.7 days on our cluster with 2048 H800 GPUs". Run backwards, the same formula says which MFU
those hours imply. The paper's own caveat (V3 §1): the figure "include[s] only the official
training of DeepSeek-V3, excluding the costs associated with prior research and ablation
experiments on architectures, algorithms, or data".
"""

from __future__ import annotations

from dataclasses import dataclass

from minir1.config import ModelConfig
from minir1.model.params import train_flops_per_token
from minir1.plan.hardware import GPU, H800

V3_TOKENS = 14.8e12  # pre-training tokens (V3 §4.1)
V3_SEQ_LEN = 4096  # pre-training sequence length (V3 §4.2)
V3_GPUS = 2048  # H800s in the cluster (V3 §3.1)
GPU_HOURS_PER_TRILLION = 180e3  # H800 GPU-hours per trillion pre-training tokens (V3 §1)
USD_PER_GPU_HOUR = 2.0  # the rental price Table 1 assumes
EXCLUDED = ("prior research and ablation experiments on architectures, algorithms or data (V3 §1)",
            "owning and running the cluster: Table 1 assumes a rental price per H800 GPU-hour",
            "DeepSeek-R1's reinforcement learning, a later run on top of V3-Base")


@dataclass(frozen=True)
class Stage:
    """One row of V3 Table 1."""

    name: str
    gpu_hours: float  # H800 GPU-hours the paper reports
    segments: tuple[tuple[float, int], ...]  # (tokens, sequence length); () when unpublished


# Context extension (V3 §4.3): two YaRN stages of 1000 steps each, 4K -> 32K at batch 1920
# sequences, then 32K -> 128K at batch 480.
TABLE1 = (
    Stage("pre-training", 2664e3, ((V3_TOKENS, V3_SEQ_LEN),)),
    Stage("context extension", 119e3,
          ((1000 * 1920 * 32768, 32768), (1000 * 480 * 131072, 131072))),
    Stage("post-training", 5e3, ()),  # SFT + RL: token counts not published (V3 §5)
)


@dataclass(frozen=True)
class TrainingCost:
    tokens: float
    seq_len: int
    flops_per_token: float  # forward + backward, incl. MTP
    flops: float
    gpu_hours: float
    n_gpus: int
    days: float  # wall-clock on n_gpus GPUs
    usd: float


def gpu_hours(flops: float, gpu: GPU, mfu: float, precision: str = "bf16") -> float:
    """GPU-hours to execute ``flops`` at ``mfu`` of ``gpu``'s dense peak."""
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu={mfu!r}: must be in (0, 1], a fraction of the peak")
    return flops / (gpu.peak_flops(precision) * mfu) / 3600


def implied_mfu(flops: float, hours: float, gpu: GPU, precision: str = "bf16") -> float:
    """The model-FLOPs utilisation at which ``flops`` take ``hours`` GPU-hours."""
    return flops / (hours * 3600 * gpu.peak_flops(precision))


def training_cost(cfg: ModelConfig, tokens: float = V3_TOKENS, seq_len: int = V3_SEQ_LEN,
                  gpu: GPU = H800, n_gpus: int = V3_GPUS, mfu: float = 0.4,
                  precision: str = "bf16",
                  usd_per_gpu_hour: float = USD_PER_GPU_HOUR) -> TrainingCost:
    """GPU-hours, days and dollars to train ``cfg`` on ``tokens`` tokens of ``seq_len``.

    The default MFU, 40% of the BF16 peak, is a round figure near what Table 1 implies for V3
    (``table1``: 40.7%); pass the one you expect."""
    if tokens <= 0:
        raise ValueError(f"tokens={tokens!r}: must be > 0")
    if n_gpus <= 0:
        raise ValueError(f"n_gpus={n_gpus!r}: must be > 0")
    if seq_len <= 0:
        raise ValueError(f"seq_len={seq_len!r}: must be > 0")
    per_token = train_flops_per_token(cfg, seq_len)
    hours = gpu_hours(tokens * per_token, gpu, mfu, precision)
    return TrainingCost(tokens=tokens, seq_len=seq_len, flops_per_token=per_token,
                        flops=tokens * per_token, gpu_hours=hours, n_gpus=n_gpus,
                        days=hours / n_gpus / 24, usd=hours * usd_per_gpu_hour)


def stage_flops(cfg: ModelConfig, stage: Stage) -> float | None:
    """Training FLOPs of a Table-1 stage; None when its tokens are not published."""
    if not stage.segments:
        return None
    return sum(tokens * train_flops_per_token(cfg, seq) for tokens, seq in stage.segments)


def table1(cfg: ModelConfig, usd_per_gpu_hour: float = USD_PER_GPU_HOUR) -> list[dict]:
    """V3 Table 1 with the FLOPs ``cfg`` needs per stage and the MFU the paper's hours imply
    (of the H800's BF16 and FP8 dense peaks). The last row is the total."""
    rows = []
    for stage in TABLE1:
        flops = stage_flops(cfg, stage)
        tokens = sum(t for t, _ in stage.segments) if stage.segments else None
        rows.append({
            "stage": stage.name, "gpu_hours": stage.gpu_hours,
            "usd": stage.gpu_hours * usd_per_gpu_hour, "tokens": tokens, "flops": flops,
            "mfu_bf16": None if flops is None else implied_mfu(flops, stage.gpu_hours, H800),
            "mfu_fp8": None if flops is None else implied_mfu(flops, stage.gpu_hours, H800, "fp8"),
        })
    hours = sum(s.gpu_hours for s in TABLE1)
    rows.append({"stage": "total", "gpu_hours": hours, "usd": hours * usd_per_gpu_hour,
                 "tokens": None, "flops": None, "mfu_bf16": None, "mfu_fp8": None})
    return rows


def per_trillion(cfg: ModelConfig, gpu: GPU = H800, n_gpus: int = V3_GPUS) -> dict:
    """V3 §1's "180K H800 GPU hours per trillion tokens = 3.7 days on 2048 GPUs", and the MFU it
    implies for ``cfg`` at the pre-training sequence length."""
    flops = 1e12 * train_flops_per_token(cfg, V3_SEQ_LEN)
    return {"gpu_hours": GPU_HOURS_PER_TRILLION,
            "days": GPU_HOURS_PER_TRILLION / n_gpus / 24,
            "tokens_per_gpu_second": 1e12 / (GPU_HOURS_PER_TRILLION * 3600),
            "mfu_bf16": implied_mfu(flops, GPU_HOURS_PER_TRILLION, gpu),
            "mfu_fp8": implied_mfu(flops, GPU_HOURS_PER_TRILLION, gpu, "fp8")}


__all__ = ["EXCLUDED", "GPU_HOURS_PER_TRILLION", "TABLE1", "USD_PER_GPU_HOUR", "V3_GPUS",
           "V3_SEQ_LEN", "V3_TOKENS", "Stage", "TrainingCost", "gpu_hours", "implied_mfu",
           "per_trillion", "stage_flops", "table1", "training_cost"]
