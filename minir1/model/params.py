"""Counting parameters, cache bytes and FLOPs on the meta device: any preset, 671B included; and the helpers
that build or derive parameters (``skip_init``, ``meta_init``, ``derived_weight``).

Conventions (facts sheet §1.3): ``total`` is the main model with embedding and head, without MTP (V3:
671.0B). ``activated`` is what one token touches: everything except the routed experts it does not visit
(V3: 37.5B with embedding and head; 36.6B without the input embedding, ``activated_no_embed``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from minir1.config import ModelConfig


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
    kv_bytes_absorbed: int  # latent cache per token, all layers (bf16): (d_c + d_h^R) * n_layers * 2
    kv_bytes_naive: int  # expanded K and V per token, all layers (bf16): n_h (d_qk + d_v) * n_layers * 2

    def table(self) -> str:
        """A plain-text table: component, parameters, share of the total."""
        rows = [(name, n) for name, n in self.components.items()]
        rows += [("total (main model)", self.total), ("activated per token", self.activated),
                 ("activated w/o embedding", self.activated_no_embed), ("MTP modules (unique)", self.mtp_total)]
        width = max(len(r[0]) for r in rows)
        lines = [f"{'component':<{width}}  {'params':>16}  {'share':>7}"]
        for name, n in rows:
            lines.append(f"{name:<{width}}  {n:>16,}  {n / self.total:>7.1%}")
        return "\n".join(lines)


def kv_cache_bytes_per_token(cfg: ModelConfig, attn_impl: str = "absorbed", bytes_per_value: int = 2) -> int:
    """Bytes a decoder caches per token over all layers: the latent path stores c^KV and k^R only."""
    if attn_impl == "absorbed":
        per_layer = cfg.kv_lora_rank + cfg.qk_rope_head_dim
    elif attn_impl == "naive":
        per_layer = cfg.n_heads * (cfg.qk_head_dim + cfg.v_head_dim)
    else:
        raise ValueError(f"attn_impl={attn_impl!r}: must be 'naive' or 'absorbed'")
    return per_layer * cfg.n_layers * bytes_per_value


_epochs = itertools.count(1)
_frozen_epoch = 0  # inside ``frozen_weights``: the number of its outermost block; 0 outside


@contextmanager
def frozen_weights():
    """Promise that no weight changes inside the block (a sampling loop): each ``derived_weight`` is checked
    against its sources once, on its first use in the block, and then reused without looking at them."""
    global _frozen_epoch
    outer = _frozen_epoch
    if not outer:
        _frozen_epoch = next(_epochs)
    try:
        yield
    finally:
        _frozen_epoch = outer


def derived_weight(module: nn.Module, name: str, build: Callable[[], Any],
                   sources: Callable[[], Sequence[torch.Tensor]]) -> Any:
    """A value computed from parameters (a folded or stacked weight), cached on ``module`` for inference.

    ``sources()`` lists the parameters ``build()`` reads. With gradients on, ``build()`` runs every call, so
    gradients reach them. Without (sampling, evaluation) the result is kept and rebuilt only when a source
    changed: an optimizer step or ``load_state_dict`` bumps a tensor's version counter, ``.to()`` changes its
    storage, dtype or device, and each misses the cache (inside ``frozen_weights`` the check runs once per
    block). Anything else ``build()`` reads must be part of ``name``. The cache is a plain attribute: it never
    enters the state dict.
    """
    if torch.is_grad_enabled() and any(p.requires_grad for p in sources()):
        return build()
    cache = module.__dict__.setdefault("_derived", {})
    hit = cache.get(name)
    if _frozen_epoch and hit is not None and hit[2] == _frozen_epoch:
        return hit[1]
    key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in sources())
    if hit is None or hit[0] != key:
        with torch.no_grad():
            hit = (key, build(), _frozen_epoch)
    cache[name] = (hit[0], hit[1], _frozen_epoch)
    return hit[1]


@contextmanager
def skip_init():
    """Construct ``nn.Linear`` / ``nn.Embedding`` without running their initialisers.

    ``Transformer`` initialises every weight itself, in module order, so constructing without the default
    (Kaiming) init saves work and keeps the random stream independent of which modules exist: the same seed
    gives the same main-model weights with or without MTP modules.
    """
    from minir1.model.moe import Gate

    classes = (nn.Linear, nn.Embedding, Gate)
    saved = [cls.reset_parameters for cls in classes]
    for cls in classes:
        cls.reset_parameters = lambda self: None
    try:
        yield
    finally:
        for cls, method in zip(classes, saved, strict=True):
            cls.reset_parameters = method


@contextmanager
def meta_init():
    """Build modules on the meta device without running any initialiser: shapes only, no memory."""
    with skip_init(), torch.device("meta"):
        yield


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_params(cfg: ModelConfig) -> ParamCount:
    """Total and activated parameters of ``cfg``, built on the meta device (no memory is allocated).

    V3 has ~46,000 modules, so this takes a few seconds the first time; results are cached per config.
    """
    return _count_params(tuple(sorted(cfg.to_dict().items())))


@functools.lru_cache(maxsize=32)
def _count_params(key: tuple) -> ParamCount:
    cfg = ModelConfig(**dict(key))
    from minir1.model.moe import MoE
    from minir1.model.transformer import Transformer

    with meta_init():
        model = Transformer(cfg)
    comp = {"embedding": _numel(model.embed), "attention": 0, "norms": _numel(model.norm), "dense_ffn": 0,
            "gates": 0, "shared_experts": 0, "routed_experts": 0, "head": _numel(model.head)}
    inactive = 0
    for block in model.layers:
        latent_norms = _numel(block.attn.kv_norm) + _numel(getattr(block.attn, "q_norm", nn.Identity()))
        comp["attention"] += _numel(block.attn) - latent_norms
        comp["norms"] += _numel(block.attn_norm) + _numel(block.ffn_norm) + latent_norms
        if isinstance(block.ffn, MoE):
            comp["gates"] += _numel(block.ffn.gate)
            comp["shared_experts"] += _numel(block.ffn.shared_experts) if block.ffn.shared_experts else 0
            per_expert = _numel(block.ffn.experts[0])
            comp["routed_experts"] += per_expert * cfg.n_routed_experts
            inactive += per_expert * (cfg.n_routed_experts - cfg.n_activated_experts)
        else:
            comp["dense_ffn"] += _numel(block.ffn)
    total = sum(comp.values())
    assert total == _numel(model) - _numel(model.mtp), "component breakdown must cover every parameter"
    mtp_total = _numel(model.mtp)
    mtp_inactive = sum(_numel(m.block.ffn.experts[0]) * (cfg.n_routed_experts - cfg.n_activated_experts)
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

    Forward: 2 FLOPs per activated weight (every linear a token touches, head included, the input-embedding
    lookup excluded) plus causal attention, where a query attends to (T+1)/2 keys on average:
    n_heads * 2 * (d_qk + d_v) * (T+1)/2 per layer. Norms, softmax and routing are not counted.
    """
    counts = count_params(cfg)
    weights = counts.activated_no_embed
    attn_layers = cfg.n_layers
    if include_mtp and cfg.n_mtp_modules:
        weights += counts.mtp_activated - counts.embedding - counts.head + counts.head * cfg.n_mtp_modules
        attn_layers += cfg.n_mtp_modules
    attention = attn_layers * cfg.n_heads * (cfg.qk_head_dim + cfg.v_head_dim) * (seq_len + 1)
    return 3.0 * (2.0 * weights + attention)
