"""Counting parameters, cache bytes and FLOPs on the meta device: any preset, 671B included.

Conventions, as the V3 paper counts (abstract, Table 1 and §2: "671B total parameters, 37B
activated for each token"): ``total`` is the main model with embedding and head, without the MTP
module (V3: 671.0B). ``activated`` is what one token touches: everything except the routed experts
it does not visit (V3: 37.5B with embedding and head; 36.6B without the input embedding,
``activated_no_embed``). The MTP module is counted apart (the hub checkpoint's "685B" is
671B + 14B of MTP weights).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from torch import nn

from minir1.config import ModelConfig
from minir1.model.init import meta_init
from minir1.model.moe import MoE
from minir1.model.transformer import Transformer


@dataclass(frozen=True)
class ParamCount:
    total: int  # main model incl. embedding and head, excl. MTP
    activated: int  # per token, incl. embedding and head
    activated_no_embed: int  # per token, without the input-embedding lookup
    embedding: int
    head: int
    mtp_total: int  # unique MTP parameters (shares embedding and head with the main model)
    mtp_activated: int
    components: dict[str, int]  # total per component: attention, dense_ffn, routed_experts, ...
    # latent cache per token, all layers (bf16): (d_c + d_h^R) * n_layers * 2
    kv_bytes_absorbed: int
    # expanded K and V per token, all layers (bf16): n_h (d_qk + d_v) * n_layers * 2
    kv_bytes_naive: int

    def table(self) -> str:
        """A plain-text table: component, parameters, share of the total."""
        rows = [(name, n) for name, n in self.components.items()]
        rows += [("total (main model)", self.total), ("activated per token", self.activated),
                 ("activated w/o embedding", self.activated_no_embed),
                 ("MTP modules (unique)", self.mtp_total)]
        width = max(len(r[0]) for r in rows)
        lines = [f"{'component':<{width}}  {'params':>16}  {'share':>7}"]
        for name, n in rows:
            lines.append(f"{name:<{width}}  {n:>16,}  {n / self.total:>7.1%}")
        return "\n".join(lines)


def kv_cache_bytes_per_token(cfg: ModelConfig, attn_impl: str = "absorbed",
                             bytes_per_value: int = 2) -> int:
    """Bytes a decoder caches per token over all layers:
    the latent path stores c^KV and k^R only."""
    if attn_impl == "absorbed":
        per_layer = cfg.kv_lora_rank + cfg.qk_rope_head_dim
    elif attn_impl == "naive":
        per_layer = cfg.n_heads * (cfg.qk_head_dim + cfg.v_head_dim)
    else:
        raise ValueError(f"attn_impl={attn_impl!r}: must be 'naive' or 'absorbed'")
    return per_layer * cfg.n_layers * bytes_per_value


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_params(cfg: ModelConfig) -> ParamCount:
    """Total and activated parameters of ``cfg``, built on the meta device (no memory is allocated).

    V3 has ~46,000 modules, so this takes a few seconds the first time;
    results are cached per config.
    """
    return _count_params(tuple(sorted(cfg.to_dict().items())))


@functools.lru_cache(maxsize=32)
def _count_params(key: tuple) -> ParamCount:
    cfg = ModelConfig(**dict(key))
    with meta_init():
        model = Transformer(cfg)
    comp = {"embedding": _numel(model.embed), "attention": 0, "norms": _numel(model.norm),
            "dense_ffn": 0, "gates": 0, "shared_experts": 0, "routed_experts": 0,
            "head": _numel(model.head)}
    inactive = 0
    for block in model.layers:
        latent_norms = (_numel(block.attn.kv_norm)
                        + _numel(getattr(block.attn, "q_norm", nn.Identity())))
        comp["attention"] += _numel(block.attn) - latent_norms
        comp["norms"] += _numel(block.attn_norm) + _numel(block.ffn_norm) + latent_norms
        if isinstance(block.ffn, MoE):
            comp["gates"] += _numel(block.ffn.gate)
            comp["shared_experts"] += (_numel(block.ffn.shared_experts)
                                       if block.ffn.shared_experts else 0)
            per_expert = _numel(block.ffn.experts[0])
            comp["routed_experts"] += per_expert * cfg.n_routed_experts
            inactive += per_expert * (cfg.n_routed_experts - cfg.n_activated_experts)
        else:
            comp["dense_ffn"] += _numel(block.ffn)
    total = sum(comp.values())
    assert total == _numel(model) - _numel(model.mtp), \
        "component breakdown must cover every parameter"
    mtp_total = _numel(model.mtp)
    mtp_inactive = sum(_numel(m.block.ffn.experts[0])
                       * (cfg.n_routed_experts - cfg.n_activated_experts)
                       for m in model.mtp if isinstance(m.block.ffn, MoE))
    activated = total - inactive
    return ParamCount(
        total=total, activated=activated, activated_no_embed=activated - comp["embedding"],
        embedding=comp["embedding"], head=comp["head"], mtp_total=mtp_total,
        mtp_activated=mtp_total - mtp_inactive + comp["embedding"] + comp["head"], components=comp,
        kv_bytes_absorbed=kv_cache_bytes_per_token(cfg, "absorbed"),
        kv_bytes_naive=kv_cache_bytes_per_token(cfg, "naive"),
    )


def train_flops_per_token(cfg: ModelConfig, seq_len: int, include_mtp: bool = True) -> float:
    """Matmul FLOPs of one training step per token (forward + backward = 3x forward).

    Forward: 2 FLOPs per activated weight (every linear a token touches, head included, the
    input-embedding lookup excluded) plus causal attention, where a query attends to (T+1)/2
    keys on average: n_heads * 2 * (d_qk + d_v) * (T+1)/2 per layer. Norms, softmax and
    routing are not counted.
    """
    counts = count_params(cfg)
    weights = counts.activated_no_embed
    attn_layers = cfg.n_layers
    if include_mtp and cfg.n_mtp_modules:
        weights += (counts.mtp_activated - counts.embedding - counts.head
                    + counts.head * cfg.n_mtp_modules)
        attn_layers += cfg.n_mtp_modules
    attention = attn_layers * cfg.n_heads * (cfg.qk_head_dim + cfg.v_head_dim) * (seq_len + 1)
    return 3.0 * (2.0 * weights + attention)


__all__ = ["ParamCount", "count_params", "kv_cache_bytes_per_token", "train_flops_per_token"]
