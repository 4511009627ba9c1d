"""Multi-head Latent Attention (DeepSeek-V3 §2.1.1, Eqs. 1-11).

Keys and values are rebuilt per head from one small latent c^KV = W^DKV h (Eq. 1), so a decoder only needs to
cache that latent plus the single decoupled RoPE key k^R (Eq. 3) shared by all heads: ``kv_lora_rank +
qk_rope_head_dim`` numbers per token per layer (V3: 576, against 40,960 for the equivalent multi-head cache).

Two mathematically equal ways to attend (``attn_impl``):

* ``"naive"``: expand every cached latent through W^UK and W^UV into per-head keys and values (Eqs. 2, 4, 5)
  and run ordinary attention (Eq. 10). Cheapest for training, where every position is new anyway.
* ``"absorbed"``: by associativity q_nope . (W^UK_h c_j) = (W^UK_h^T q_nope) . c_j, so W^UK is folded into the
  query and attention runs directly over the cached latents (one shared "key head" of width d_c + d_h^R, as in
  FlashMLA); W^UV is applied after the weighted sum. Cheapest for decoding: nothing is expanded per token.

Weight names follow the official inference code: ``wq`` (or ``wq_a``, ``q_norm``, ``wq_b``), ``wkv_a``,
``kv_norm``, ``wkv_b``, ``wo``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minir1.config import ModelConfig
from minir1.model.norm import RMSNorm
from minir1.model.rope import apply_rope

ATTN_IMPLS = ("naive", "absorbed")


class LatentCache:
    """The MLA decoding cache: per layer, the normalised latent c^KV and the rotated shared key k^R.

    ``kv``: (n_layers, B, max_len, kv_lora_rank); ``pe``: (n_layers, B, max_len, qk_rope_head_dim).
    ``pad`` (B, max_len), optional, marks slots that hold left padding; they are never attended to. Because RoPE
    scores depend only on relative position, left-padded sequences need no position shift, only this mask.
    ``first_layer``: the model layer held in slot 0, so an MTP module's block (layer ``n_layers + k - 1``) can
    keep a cache of its one layer (``n_layers=1, first_layer=n_layers + k - 1``) instead of the whole model's.
    """

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                 n_layers: int | None = None, first_layer: int = 0) -> None:
        max_len = max_len or cfg.max_seq_len
        if max_len > cfg.max_seq_len:
            raise ValueError(f"LatentCache max_len={max_len} exceeds ModelConfig.max_seq_len={cfg.max_seq_len}")
        n_layers = cfg.n_layers if n_layers is None else n_layers
        self.kv = torch.zeros(n_layers, batch_size, max_len, cfg.kv_lora_rank, device=device, dtype=dtype)
        self.pe = torch.zeros(n_layers, batch_size, max_len, cfg.qk_rope_head_dim, device=device, dtype=dtype)
        self.pad: torch.Tensor | None = None
        self.length = 0  # number of filled slots (the same for every sequence)
        self.first_layer = first_layer

    @property
    def max_len(self) -> int:
        return self.kv.shape[2]

    def nbytes(self) -> int:
        return self.kv.nbytes + self.pe.nbytes

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only the sequences ``rows`` (indices into the current batch), in that order: batched decoding
        drops the sequences that have finished, so a step costs what the unfinished ones need."""
        self.kv, self.pe = self.kv.index_select(1, rows), self.pe.index_select(1, rows)
        if self.pad is not None:
            self.pad = self.pad.index_select(0, rows)

    def truncate(self, length: int) -> None:
        """Forget every slot from ``length`` on (speculative decoding drops a rejected draft this way).

        Nothing needs erasing: attention reads only slots below ``length``, and the next tokens overwrite the rest.
        """
        if not 0 <= length <= self.length:
            raise ValueError(f"LatentCache.truncate({length}): must be between 0 and the filled length {self.length}")
        self.length = length


class MLA(nn.Module):
    """Multi-head Latent Attention with decoupled RoPE and an optional latent cache."""

    def __init__(self, cfg: ModelConfig, layer_id: int = 0) -> None:
        super().__init__()
        self.layer_id = layer_id
        self.n_heads = cfg.n_heads
        self.q_lora_rank = cfg.q_lora_rank
        self.kv_lora_rank = cfg.kv_lora_rank
        self.qk_nope_head_dim = cfg.qk_nope_head_dim
        self.qk_rope_head_dim = cfg.qk_rope_head_dim
        self.qk_head_dim = cfg.qk_head_dim
        self.v_head_dim = cfg.v_head_dim
        self.softmax_scale = cfg.softmax_scale
        if cfg.q_lora_rank == 0:
            self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.qk_head_dim, bias=False)
        else:  # Eqs. 6-7: query compression, which saves activation memory in training
            self.wq_a = nn.Linear(cfg.dim, cfg.q_lora_rank, bias=False)
            self.q_norm = RMSNorm(cfg.q_lora_rank, cfg.norm_eps)
            self.wq_b = nn.Linear(cfg.q_lora_rank, cfg.n_heads * cfg.qk_head_dim, bias=False)
        # Eqs. 1 and 3 in one matmul: [c^KV | k^R before RoPE]
        self.wkv_a = nn.Linear(cfg.dim, cfg.kv_lora_rank + cfg.qk_rope_head_dim, bias=False)
        self.kv_norm = RMSNorm(cfg.kv_lora_rank, cfg.norm_eps)
        # Eqs. 2 and 5: per head, W^UK_h (qk_nope_head_dim rows) then W^UV_h (v_head_dim rows)
        self.wkv_b = nn.Linear(cfg.kv_lora_rank, cfg.n_heads * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.v_head_dim, cfg.dim, bias=False)  # Eq. 11

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: LatentCache | None = None, attn_impl: str | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, dim); cos/sin: RoPE tables for these T positions; returns (B, T, dim).

        With a cache, the T new tokens occupy slots [cache.length, cache.length + T) and attend to everything
        before them; the caller (``Transformer``) advances ``cache.length`` once all layers have run.
        ``mask`` (B or 1, 1, T, T), boolean, replaces the causal mask (used for packed samples; no cache).
        """
        attn_impl = attn_impl or ("naive" if cache is None else "absorbed")
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl={attn_impl!r}: must be one of {ATTN_IMPLS}")
        B, T, _ = x.shape
        q = self.wq(x) if self.q_lora_rank == 0 else self.wq_b(self.q_norm(self.wq_a(x)))
        q = q.view(B, T, self.n_heads, self.qk_head_dim)
        q_nope, q_pe = q.split([self.qk_nope_head_dim, self.qk_rope_head_dim], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin)  # Eq. 8: per-head rotary query
        kv, k_pe = self.wkv_a(x).split([self.kv_lora_rank, self.qk_rope_head_dim], dim=-1)
        kv = self.kv_norm(kv)
        k_pe = apply_rope(k_pe, cos, sin)  # Eq. 3: one rotary key per token, shared by all heads

        causal = mask is None
        if cache is not None:
            if mask is not None:
                raise ValueError("MLA: an explicit mask cannot be combined with a cache")
            start, end = cache.length, cache.length + T
            if end > cache.max_len:
                raise ValueError(f"LatentCache is full: {end} tokens > max_len={cache.max_len}")
            layer = self.layer_id - cache.first_layer
            cache.kv[layer, :B, start:end] = kv.to(cache.kv.dtype)
            cache.pe[layer, :B, start:end] = k_pe.to(cache.pe.dtype)
            kv, k_pe = cache.kv[layer, :B, :end].to(x.dtype), cache.pe[layer, :B, :end].to(x.dtype)
            mask, causal = _decode_mask(start, T, end, cache.pad, B, x.device), False

        if attn_impl == "naive":
            out = self._naive(q_nope, q_pe, kv, k_pe, mask, causal)
        else:
            out = self._absorbed(q_nope, q_pe, kv, k_pe, mask, causal)
        return self.wo(out.flatten(2))

    def _naive(self, q_nope, q_pe, kv, k_pe, mask, causal) -> torch.Tensor:
        """Expand the latents into per-head K and V (Eqs. 2, 4, 5), then standard attention (Eq. 10)."""
        B, S, _ = kv.shape
        k_nope, v = self.wkv_b(kv).view(B, S, self.n_heads, -1).split([self.qk_nope_head_dim, self.v_head_dim], -1)
        k = torch.cat([k_nope, k_pe.unsqueeze(2).expand(-1, -1, self.n_heads, -1)], dim=-1)
        q = torch.cat([q_nope, q_pe], dim=-1)
        pad = self.qk_head_dim - self.v_head_dim
        if pad > 0:  # fused (flash) kernels want one head width for q, k and v: zero columns cost nothing
            v = F.pad(v, (0, pad))
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=mask, is_causal=causal, scale=self.softmax_scale)
        return out.transpose(1, 2)[..., : self.v_head_dim]  # (B, T, H, v_head_dim)

    def _absorbed(self, q_nope, q_pe, kv, k_pe, mask, causal) -> torch.Tensor:
        """Attend over the latents themselves: W^UK folded into the query, W^UV applied after the sum.

        Every head scores against the same key (the latent and the rope key), so the heads fold into the rows of
        one matrix product per sequence: (T*H, d_c + d_h^R) x (d_c + d_h^R, S).
        """
        w = self.wkv_b.weight.view(self.n_heads, self.qk_nope_head_dim + self.v_head_dim, self.kv_lora_rank)
        w_uk, w_uv = w[:, : self.qk_nope_head_dim], w[:, self.qk_nope_head_dim:]
        q_lat = torch.einsum("bthd,hdc->bthc", q_nope, w_uk)  # W^UK_h^T q^C_{t,h}
        q = torch.cat([q_lat, q_pe], dim=-1)  # (B, T, H, d_c + d_h^R)
        k = torch.cat([kv, k_pe], dim=-1)  # (B, S, d_c + d_h^R): one key "head" shared by all heads
        B, T, H, D = q.shape
        scores = torch.bmm(q.reshape(B, T * H, D), k.transpose(1, 2)).view(B, T, H, -1) * self.softmax_scale
        if causal:
            mask = torch.ones(T, k.shape[1], dtype=torch.bool, device=q.device).tril()[None, :, None]
        if mask is not None:  # masks come as (B, 1, T, S) for SDPA's head-major layout
            mask = mask if causal else mask.transpose(1, 2)
            # a finite floor, not -inf: a fully masked row (a padding query) must not turn into NaN and then
            # poison every later position through 0 * NaN in the value sum
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        p = scores.float().softmax(dim=-1).to(q.dtype)
        o_lat = torch.bmm(p.view(B, T * H, -1), kv).view(B, T, H, -1)  # sum_j p_j c_j, per head
        return torch.einsum("bthc,hdc->bthd", o_lat, w_uv)  # W^UV_h, per head


def _decode_mask(start: int, T: int, end: int, pad: torch.Tensor | None, B: int,
                 device: torch.device) -> torch.Tensor | None:
    """Boolean mask (B or 1, 1, T, end): query i (slot start+i) sees slots <= start+i that are not padding."""
    mask = None
    if T > 1:
        slots = torch.arange(end, device=device)
        mask = (slots[None, :] <= (start + torch.arange(T, device=device))[:, None])[None, None]
    if pad is not None:
        keep = (~pad[:B, :end])[:, None, None, :]
        mask = keep if mask is None else mask & keep
    return mask
