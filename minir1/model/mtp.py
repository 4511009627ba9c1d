"""Multi-Token Prediction modules (DeepSeek-V3 §2.2, Eqs. 21-25).

D modules run in sequence after the main model and share its embedding and output head. Module k
keeps the causal chain: at position i it combines the previous depth's representation h^{k-1}_i with
the embedding of token t_{i+k} (Eq. 21), runs one Transformer block (Eq. 22), and predicts t_{i+k+1}
through the shared head (Eq. 23). The loss (lambda/D) sum_k L^k_MTP (Eqs. 24-25) densifies the
training signal; at inference the modules can be dropped, or used to draft tokens for speculative
decoding (V3 §5.4.3: 85-90% acceptance).

Names follow the official checkpoint's layer 61: ``enorm``, ``hnorm``, ``eh_proj``, the block, and
the final ``norm`` (``shared_head.norm``). The concatenation order is the checkpoint's
[enorm(embedding); hnorm(hidden)] (the paper writes the two halves the other way round; only the
column order of ``eh_proj`` differs). h^0 is the main model's last hidden state before its final
norm; ``hnorm`` normalises it.
"""

from __future__ import annotations

import torch
from torch import nn

from minir1.config import ModelConfig
from minir1.model.block import Block
from minir1.model.mla import LatentCache
from minir1.model.norm import RMSNorm


class MTPModule(nn.Module):
    """One MTP depth k: M_k [RMSNorm(Emb(t_{i+k})); RMSNorm(h^{k-1}_i)] -> TRM_k ->
    (shared) OutHead."""

    def __init__(self, cfg: ModelConfig, depth: int) -> None:
        super().__init__()
        self.depth = depth  # k, 1-based
        self.enorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.hnorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.eh_proj = nn.Linear(2 * cfg.dim, cfg.dim, bias=False)  # M_k
        self.block = Block(cfg, layer_id=cfg.n_layers + depth - 1)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)  # applied before the shared head

    def forward(self, h_prev: torch.Tensor, emb_next: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor, balance_alpha: float = 0.0, mask: torch.Tensor | None = None,
                cache: LatentCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """h_prev: h^{k-1} (B, T-k, dim); emb_next: Emb(t_{i+k}) (B, T-k, dim) ->
        (h^k, balance loss or None).

        ``cache``: this module's own ``LatentCache`` (``n_layers=1``,
        ``first_layer=self.block.layer_id``) for drafting (``minir1.infer.speculative``): the
        positions continue the cached ones and the cache advances by them. Training passes none
        and attends over the whole sequence at once.
        """
        h = self.eh_proj(torch.cat([self.enorm(emb_next), self.hnorm(h_prev)], dim=-1))
        out = self.block(h, cos, sin, cache, balance_alpha=balance_alpha, mask=mask)
        if cache is not None:  # the block is the cache's only layer, so nobody else advances it
            cache.length += h.shape[1]
        return out
