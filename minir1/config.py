"""ModelConfig: the DeepSeek-V3 architecture in one dataclass.

Field names are the official inference ``ModelArgs`` names (DeepSeek-V3 ``inference/model.py``),
so an official ``config_*.json`` maps onto it key for key; minir1 adds the few fields training
needs (MTP depth and weight, balance loss alpha, bias update speed, init std). Presets span a CPU
toy to the exact 671B shapes; the two official ones are checked against the published parameter
counts in ``tests/``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

SCORE_FUNCS = ("softmax", "sigmoid")


@dataclass
class ModelConfig:
    # --- sizes (official ModelArgs names) ---
    vocab_size: int = 128  # tokens; V3 uses a 129,280-entry byte-level BPE
    dim: int = 128  # model width d
    inter_dim: int = 384  # hidden width of the dense SwiGLU FFN (first n_dense_layers layers)
    moe_inter_dim: int = 64  # hidden width of one expert (routed or shared)
    n_layers: int = 4  # Transformer blocks of the main model (MTP modules not counted)
    n_dense_layers: int = 1  # the first layers use a dense FFN instead of MoE (V3: 3)
    n_heads: int = 4  # attention heads n_h
    # --- DeepSeekMoE (V3 §2.1.2) ---
    n_routed_experts: int = 8  # N_r
    n_shared_experts: int = 1  # N_s, always active, fused into one MLP of width N_s * moe_inter_dim
    n_activated_experts: int = 2  # K_r routed experts per token
    n_expert_groups: int = 2  # experts are split into groups (V3: 8 groups = 8 nodes)
    n_limited_groups: int = 1  # a token may only route into this many groups (V3: M = 4)
    score_func: str = "sigmoid"  # affinity s_{i,t}: "sigmoid" (V3, Eq. 15) or "softmax" (V2)
    route_scale: float = 1.0  # routed weights are multiplied by this (V3 checkpoint: 2.5)
    # --- MLA (V3 §2.1.1) ---
    q_lora_rank: int = 64  # d_c' query latent; 0 means one direct query projection (V2-Lite)
    kv_lora_rank: int = 32  # d_c, the cached KV latent
    qk_nope_head_dim: int = 32  # d_h, per-head query/key part without RoPE
    qk_rope_head_dim: int = 16  # d_h^R, decoupled RoPE part (key shared by all heads)
    v_head_dim: int = 32  # per-head value width
    # --- RoPE / YaRN (V3 §4.3) ---
    original_seq_len: int = 256  # context length the model was (pre)trained at
    rope_theta: float = 10000.0  # RoPE base
    rope_factor: float = 40.0  # YaRN scale s; active only when max_seq_len > original_seq_len
    # YaRN correction range: dimensions rotating faster than this keep their frequency
    beta_fast: int = 32
    beta_slow: int = 1  # ... slower than this are fully interpolated by rope_factor
    mscale: float = 1.0  # YaRN attention temperature: softmax scale *= (0.1*mscale*ln(s)+1)^2
    max_seq_len: int = 256  # longest sequence the model serves (sizes the RoPE tables)
    # --- training fields (minir1) ---
    n_mtp_modules: int = 1  # D, multi-token prediction depth (V3: 1); 0 disables MTP
    # lambda in L = L_main + (lambda/D) sum_k L_MTP^k (V3: 0.3, then 0.1)
    mtp_loss_weight: float = 0.3
    balance_alpha: float = 0.0001  # alpha of the sequence-wise balance loss, Eqs. 17-20 (V3: 1e-4)
    bias_update_speed: float = 0.001  # gamma of the aux-loss-free bias update (V3: 0.001)
    init_std: float = 0.006  # std of every weight at init (V3 §4.2)
    norm_eps: float = 1e-6  # RMSNorm epsilon

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def qk_head_dim(self) -> int:
        """Per-head query/key width: nope + rope (V3: 192)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def n_moe_layers(self) -> int:
        return self.n_layers - self.n_dense_layers

    @property
    def uses_yarn(self) -> bool:
        """YaRN is active exactly when the model serves longer sequences than it was trained on."""
        return self.max_seq_len > self.original_seq_len

    @property
    def softmax_scale(self) -> float:
        """1/sqrt(d_h + d_h^R) (Eq. 10), times mscale^2 under YaRN (official inference code)."""
        scale = self.qk_head_dim**-0.5
        if self.uses_yarn:
            m = 0.1 * self.mscale * math.log(self.rope_factor) + 1.0
            scale *= m * m
        return scale

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ValueError naming the first field that breaks a rule."""

        def fail(name: str, rule: str) -> None:
            raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r}: {rule}")

        for name in ("vocab_size", "dim", "inter_dim", "moe_inter_dim", "n_layers", "n_heads",
                     "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                     "original_seq_len", "max_seq_len", "n_routed_experts", "n_activated_experts",
                     "n_expert_groups", "n_limited_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                fail(name, "must be a positive integer")
        for name in ("n_dense_layers", "n_shared_experts", "q_lora_rank", "n_mtp_modules"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                fail(name, "must be a non-negative integer")
        for name in ("rope_theta", "rope_factor", "mscale", "route_scale", "init_std", "norm_eps"):
            if not getattr(self, name) > 0:
                fail(name, "must be > 0")
        for name in ("mtp_loss_weight", "balance_alpha", "bias_update_speed"):
            if not getattr(self, name) >= 0:
                fail(name, "must be >= 0")
        if self.n_dense_layers > self.n_layers:
            fail("n_dense_layers", f"must be <= n_layers ({self.n_layers})")
        if self.score_func not in SCORE_FUNCS:
            fail("score_func", f"must be one of {SCORE_FUNCS}")
        if self.qk_rope_head_dim % 2:
            fail("qk_rope_head_dim", "must be even: RoPE rotates pairs of dimensions")
        if self.n_activated_experts > self.n_routed_experts:
            fail("n_activated_experts", f"must be <= n_routed_experts ({self.n_routed_experts})")
        if self.n_routed_experts % self.n_expert_groups:
            fail("n_expert_groups", f"must divide n_routed_experts ({self.n_routed_experts})")
        if self.n_limited_groups > self.n_expert_groups:
            fail("n_limited_groups", f"must be <= n_expert_groups ({self.n_expert_groups})")
        per_group = self.n_routed_experts // self.n_expert_groups
        if self.n_activated_experts > self.n_limited_groups * per_group:
            fail("n_activated_experts", f"must be <= n_limited_groups * experts per group "
                 f"({self.n_limited_groups} * {per_group}): the kept groups must hold K_r experts")
        if self.n_expert_groups > 1 and self.score_func == "sigmoid" and per_group < 2:
            fail("n_expert_groups", "sigmoid routing scores a group by its top-2 experts, "
                 "so each group needs >= 2 experts")
        if not 0 < self.beta_slow < self.beta_fast:
            fail("beta_fast", f"YaRN needs beta_fast > beta_slow > 0 (beta_slow={self.beta_slow})")
        if self.uses_yarn and self.rope_factor < 1:
            fail("rope_factor", "must be >= 1 when max_seq_len > original_seq_len "
                 "(YaRN extends context)")

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """A named configuration, optionally with fields overridden.

        ``"tiny"`` is the CPU lesson model, ``"small"`` the single-GPU one, ``"v2-lite"`` and
        ``"v3"`` are the official ``config_16B.json`` and ``config_671B.json`` shapes (inspect them
        on the meta device).
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {sorted(unknown)}")
        return cls(**{**PRESETS[name], **overrides})

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {sorted(unknown)}")
        return cls(**d)


PRESETS: dict[str, dict[str, Any]] = {
    # The lesson model: ~2M parameters, trains on 2 CPU cores in minutes. 4 groups of 4 experts,
    # routing into 2 groups, keeps group-limited routing visible at toy scale.
    "tiny": dict(
        vocab_size=128, dim=128, inter_dim=384, moe_inter_dim=64, n_layers=4, n_dense_layers=1,
        n_heads=4, n_routed_experts=16, n_shared_experts=1, n_activated_experts=4,
        n_expert_groups=4, n_limited_groups=2, score_func="sigmoid", route_scale=1.0,
        q_lora_rank=64, kv_lora_rank=32, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
        original_seq_len=256, max_seq_len=256,
        n_mtp_modules=1,
    ),
    # The distillation student (lesson 11): a third of the lesson model's width budget, dense (no
    # MoE), no MTP; ~0.34M parameters against the teacher's 1.6M total / 0.75M active, as R1
    # distilled into dense models.
    "student": dict(
        vocab_size=128, dim=96, inter_dim=256, moe_inter_dim=64, n_layers=3, n_dense_layers=3,
        n_heads=4, n_routed_experts=16, n_shared_experts=1, n_activated_experts=4,
        n_expert_groups=4, n_limited_groups=2, score_func="sigmoid", route_scale=1.0,
        q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=24, qk_rope_head_dim=16, v_head_dim=24,
        original_seq_len=256, max_seq_len=256,
        n_mtp_modules=0,
    ),
    # The single-GPU model (100M total, 23M active):
    # 8 groups of 4 experts, top-4 groups, as V3 routes.
    "small": dict(
        vocab_size=128, dim=512, inter_dim=1536, moe_inter_dim=256, n_layers=8, n_dense_layers=1,
        n_heads=8, n_routed_experts=32, n_shared_experts=1, n_activated_experts=4,
        n_expert_groups=8, n_limited_groups=4, score_func="sigmoid", route_scale=2.5,
        q_lora_rank=256, kv_lora_rank=128, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64,
        original_seq_len=1024, max_seq_len=1024,
        n_mtp_modules=1,
    ),
    # DeepSeek-V2-Lite, official inference/configs/config_16B.json (ModelArgs defaults elsewhere).
    "v2-lite": dict(
        vocab_size=102400, dim=2048, inter_dim=10944, moe_inter_dim=1408, n_layers=27,
        n_dense_layers=1, n_heads=16, n_routed_experts=64, n_shared_experts=2,
        n_activated_experts=6, n_expert_groups=1, n_limited_groups=1, score_func="softmax",
        route_scale=1.0, q_lora_rank=0, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
        v_head_dim=128, original_seq_len=4096, rope_theta=10000.0, rope_factor=40.0, beta_fast=32,
        beta_slow=1, mscale=0.707, max_seq_len=16384,
        n_mtp_modules=0,
    ),
    # DeepSeek-V3 / R1, official inference/configs/config_671B.json (ModelArgs defaults elsewhere).
    "v3": dict(
        vocab_size=129280, dim=7168, inter_dim=18432, moe_inter_dim=2048, n_layers=61,
        n_dense_layers=3, n_heads=128, n_routed_experts=256, n_shared_experts=1,
        n_activated_experts=8, n_expert_groups=8, n_limited_groups=4, score_func="sigmoid",
        route_scale=2.5, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
        qk_rope_head_dim=64, v_head_dim=128, original_seq_len=4096, rope_theta=10000.0,
        rope_factor=40.0, beta_fast=32, beta_slow=1, mscale=1.0, max_seq_len=16384,
        n_mtp_modules=1,
    ),
}

__all__ = ["PRESETS", "SCORE_FUNCS", "ModelConfig"]
