"""Inference memory: weights at BF16 / FP8 / 4-bit plus the KV cache, and which GPU runs which
model at which context, for every preset and for the dense models R1 was distilled into.

KV cache per token (DeepSeek-V2 §2.1.4, Table 1, with d_h the per-head width and l the layers):
MHA caches 2 n_h d_h l values, GQA 2 n_g d_h l, MQA 2 d_h l, and MLA only the latent and the
shared RoPE key, (d_c + d_h^R) l; for V3 (512 + 64) x 61 x 2 B = 70,272 B per token in BF16.

The R1-Distill models (R1 §2.4, "Distillation"; the R1 repository's model table) are Qwen2.5 and
Llama 3 dense decoders; their shapes below are the published ``config.json`` of each
``deepseek-ai/DeepSeek-R1-Distill-*`` checkpoint (untied embedding and head; Qwen2 adds biases to
the q, k, v projections), and each parameter count is checked against the size the hub publishes.
Weights at a precision (``PRECISIONS``): BF16 everywhere; FP8 as V3's checkpoint ships it, E4M3
with one FP32 scale per 128x128 block and the embedding and head left in BF16 (V3 §3.3.1-3.3.2);
4-bit as llama.cpp's Q4_0, blocks of 32 weights sharing one FP16 scale (4.5 bits per weight), on
every matrix. The MTP module is left out (V3 §2.2: it "can be directly discarded" at inference).
Batch size 1; the cache is BF16.
"""

from __future__ import annotations

from dataclasses import dataclass

from minir1.config import ModelConfig
from minir1.model.params import count_params, kv_cache_bytes_per_token
from minir1.plan.hardware import GPU, GPUS

CONTEXTS = (4096, 32768, 131072)  # V3's pre-training length, R1's generation budget, 128K


@dataclass(frozen=True)
class Precision:
    name: str
    bits: float  # per weight of the quantised matrices, scales included
    embeddings: bool  # True: the embedding and head are quantised too


PRECISIONS = {
    "bf16": Precision("bf16", 16, True),
    "fp8": Precision("fp8", 8 + 32 / (128 * 128), False),
    "q4": Precision("q4", 4 + 16 / 32, True),
}


@dataclass(frozen=True)
class DenseConfig:
    """A Llama/Qwen2-style dense decoder with grouped-query attention."""

    name: str
    base: str  # the model it was distilled into (R1 §2.4)
    n_layers: int  # num_hidden_layers
    dim: int  # hidden_size
    inter_dim: int  # intermediate_size (SwiGLU)
    n_heads: int  # num_attention_heads
    n_kv_heads: int  # num_key_value_heads (GQA groups)
    head_dim: int
    vocab_size: int
    qkv_bias: bool  # Qwen2 has biases on q, k and v
    published_b: float  # parameters the hub lists for the checkpoint, in billions

    @property
    def embedding(self) -> int:
        return self.vocab_size * self.dim  # the head is the same size (untied)

    @property
    def params(self) -> int:
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        attn = self.dim * q + 2 * self.dim * kv + q * self.dim + (q + 2 * kv) * self.qkv_bias
        block = attn + 3 * self.dim * self.inter_dim + 2 * self.dim  # + two RMSNorms
        return self.n_layers * block + 2 * self.embedding + self.dim

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * 2  # K and V, BF16


DISTILL = (
    DenseConfig("R1-Distill-Qwen-1.5B", "Qwen2.5-Math-1.5B", 28, 1536, 8960, 12, 2, 128,
                151936, True, 1.78),
    DenseConfig("R1-Distill-Qwen-7B", "Qwen2.5-Math-7B", 28, 3584, 18944, 28, 4, 128,
                152064, True, 7.62),
    DenseConfig("R1-Distill-Llama-8B", "Llama-3.1-8B", 32, 4096, 14336, 32, 8, 128,
                128256, False, 8.03),
    DenseConfig("R1-Distill-Qwen-14B", "Qwen2.5-14B", 48, 5120, 13824, 40, 8, 128,
                152064, True, 14.8),
    DenseConfig("R1-Distill-Qwen-32B", "Qwen2.5-32B", 64, 5120, 27648, 40, 8, 128,
                152064, True, 32.8),
    DenseConfig("R1-Distill-Llama-70B", "Llama-3.3-70B-Instruct", 80, 8192, 28672, 64, 8, 128,
                128256, False, 70.6),
)


@dataclass(frozen=True)
class ServedModel:
    """What serving needs to know: weights (split into matrices and embedding + head) and cache."""

    name: str
    params: int
    embed_head: int  # embedding + head parameters
    kv_bytes_per_token: int

    def weight_bytes(self, precision: str) -> float:
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: must be one of {sorted(PRECISIONS)}")
        p = PRECISIONS[precision]
        kept = 0 if p.embeddings else self.embed_head
        return (self.params - kept) * p.bits / 8 + kept * 2


def served(model: ModelConfig | DenseConfig, name: str | None = None) -> ServedModel:
    """A preset (MLA, latent cache) or a distilled dense model, as a ``ServedModel``."""
    if isinstance(model, DenseConfig):
        return ServedModel(name or model.name, model.params, 2 * model.embedding,
                           model.kv_bytes_per_token)
    c = count_params(model)
    return ServedModel(name or "ModelConfig", c.total, c.embedding + c.head,
                       kv_cache_bytes_per_token(model, "absorbed"))


def kv_equivalents(cfg: ModelConfig, gqa_groups: int = 8) -> dict[str, int]:
    """BF16 bytes per token that ``cfg``'s KV cache would take under each attention variant
    (DeepSeek-V2 Table 1), with d_h = ``qk_nope_head_dim``."""
    dh, layers = cfg.qk_nope_head_dim, cfg.n_layers
    return {"MHA": 2 * cfg.n_heads * dh * layers * 2,
            "MLA naive (expanded K and V)": kv_cache_bytes_per_token(cfg, "naive"),
            f"GQA-{gqa_groups}": 2 * gqa_groups * dh * layers * 2,
            "MQA": 2 * dh * layers * 2,
            "MLA (cached latent)": kv_cache_bytes_per_token(cfg, "absorbed")}


def max_context(model: ServedModel, gpu: GPU, precision: str, cap: int = CONTEXTS[-1]) -> int:
    """The longest context (tokens, batch 1, a multiple of 1,024) whose weights and KV cache fit
    in ``gpu``'s usable memory, up to ``cap``; 0 when the weights alone do not fit."""
    free = gpu.usable_bytes - model.weight_bytes(precision)
    if free < 1024 * model.kv_bytes_per_token:
        return 0
    return min(cap, int(free // model.kv_bytes_per_token) // 1024 * 1024)


def fit_table(models: list[ServedModel], gpus: dict[str, GPU] | None = None,
              precisions: tuple[str, ...] = tuple(PRECISIONS),
              cap: int = CONTEXTS[-1]) -> list[dict]:
    """One row per model and precision: weight bytes and the longest context per GPU."""
    gpus = GPUS if gpus is None else gpus
    return [{"model": m.name, "precision": p, "weight_bytes": m.weight_bytes(p),
             "kv_bytes_per_token": m.kv_bytes_per_token,
             "max_context": {key: max_context(m, g, p, cap) for key, g in gpus.items()}}
            for m in models for p in precisions]


__all__ = ["CONTEXTS", "DISTILL", "PRECISIONS", "DenseConfig", "Precision", "ServedModel",
           "fit_table", "kv_equivalents", "max_context", "served"]
