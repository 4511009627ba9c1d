"""The Transformer block of DeepSeek-V3: pre-norm attention (MLA), then a dense FFN or a MoE.

The first ``n_dense_layers`` blocks use a dense SwiGLU FFN (V3: 3), the rest DeepSeekMoE
(§2.1.2). The MTP modules reuse the same block (V3 §2.2, Eq. 22), which is why it lives in
a module of its own.
"""

from __future__ import annotations

import torch
from torch import nn

from minir1.config import ModelConfig
from minir1.model.mla import MLA, LatentCache
from minir1.model.moe import MLP, MoE
from minir1.model.norm import RMSNorm


class Block(nn.Module):
    """Pre-norm residual block: x + Attn(RMSNorm(x)), then + FFN(RMSNorm(x))
    (official ``Block``)."""

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = MLA(cfg, layer_id)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        is_moe = layer_id >= cfg.n_dense_layers and cfg.n_moe_layers > 0
        self.ffn = MoE(cfg) if is_moe else MLP(cfg.dim, cfg.inter_dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: LatentCache | None = None, attn_impl: str | None = None,
                balance_alpha: float = 0.0,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, dim) -> (x after the block, the MoE's balance loss or None)."""
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, attn_impl, mask)
        if isinstance(self.ffn, MoE):
            y, aux = self.ffn(self.ffn_norm(x), balance_alpha)
            return x + y, aux
        return x + self.ffn(self.ffn_norm(x)), None


__all__ = ["Block"]
