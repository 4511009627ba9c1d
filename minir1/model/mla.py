"""Multi-head Latent Attention (DeepSeek-V3 §2.1.1, Eqs. 1-11).

Keys and values are rebuilt per head from one small latent c^KV = W^DKV h (Eq. 1), so a decoder only
needs to cache that latent plus the single decoupled RoPE key k^R (Eq. 3) shared by all heads:
``kv_lora_rank + qk_rope_head_dim`` numbers per token per layer (V3: 576, against 40,960 for the
equivalent multi-head cache).

Two mathematically equal ways to attend (``attn_impl``):

* ``"naive"``: expand every cached latent through W^UK and W^UV into per-head keys and values
  (Eqs. 2, 4, 5) and run ordinary attention (Eq. 10). Cheapest for training, where every
  position is new anyway.
* ``"absorbed"``: by associativity q_nope . (W^UK_h c_j) = (W^UK_h^T q_nope) . c_j, so W^UK is
  folded into the query and attention runs directly over the cached latents (one shared "key
  head" of width d_c + d_h^R, as in FlashMLA); W^UV is applied after the weighted sum.
  Cheapest for decoding: nothing is expanded per token. The folding happens once, in the
  weights (DeepSeek-V2 §2.1.2 notes that at inference W^UK can be absorbed into the query
  projection and W^UV into W^O): ``MLA.absorbed_weights`` multiplies them out and caches the
  products while sampling.

Weight names follow the official inference code: ``wq`` (or ``wq_a``, ``q_norm``, ``wq_b``),
``wkv_a``, ``kv_norm``, ``wkv_b``, ``wo``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minir1.config import ModelConfig
from minir1.model.derived import derived_weight
from minir1.model.norm import RMSNorm
from minir1.model.rope import apply_rope

ATTN_IMPLS = ("naive", "absorbed")


class LatentCache:
    """The MLA decoding cache: per layer, the normalised latent c^KV and the rotated shared key k^R.

    Both live side by side in one buffer ``latent`` (n_layers, B, max_len, kv_lora_rank +
    qk_rope_head_dim), so the absorbed attention's shared key [c^KV | k^R] is a slice of it,
    never rebuilt per step. ``kv`` (.., kv_lora_rank) and ``pe`` (.., qk_rope_head_dim) are
    views of its two parts.
    ``pad`` (B, max_len), optional, marks slots that hold left padding; they are never attended to.
    Because RoPE scores depend only on relative position, left-padded sequences need no position
    shift, only this mask.
    ``first_layer``: the model layer held in slot 0, so an MTP module's block (layer
    ``n_layers + k - 1``) can keep a cache of its one layer
    (``n_layers=1, first_layer=n_layers + k - 1``) instead of the whole model's.
    """

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                 n_layers: int | None = None, first_layer: int = 0) -> None:
        max_len = max_len or cfg.max_seq_len
        if max_len > cfg.max_seq_len:
            raise ValueError(f"LatentCache max_len={max_len} exceeds "
                             f"ModelConfig.max_seq_len={cfg.max_seq_len}")
        n_layers = cfg.n_layers if n_layers is None else n_layers
        self.kv_lora_rank = cfg.kv_lora_rank
        self.latent = torch.zeros(n_layers, batch_size, max_len,
                                  cfg.kv_lora_rank + cfg.qk_rope_head_dim,
                                  device=device, dtype=dtype)
        self.pad: torch.Tensor | None = None
        self.length = 0  # number of filled slots (the same for every sequence)
        self.first_layer = first_layer
        # (key, pad it was built from, mask): every layer of a step shares it
        self._mask: tuple = (None, None, None)

    @property
    def kv(self) -> torch.Tensor:
        return self.latent[..., : self.kv_lora_rank]

    @property
    def pe(self) -> torch.Tensor:
        return self.latent[..., self.kv_lora_rank:]

    @property
    def max_len(self) -> int:
        return self.latent.shape[2]

    def nbytes(self) -> int:
        return self.latent.nbytes

    def mask(self, T: int, B: int) -> torch.Tensor | None:
        """Boolean mask (B or 1, 1, T, length + T) for T new tokens: new token i
        (slot length + i) sees the slots up to its own that are not padding. None when nothing is
        masked (one new token, no padding).

        Built once per step and shared by every layer (it is kept until the length, T, B or the
        ``pad`` object changes: assign a new ``pad`` rather than editing it in place between two
        calls at one length)."""
        key = (self.length, T, B)
        if self._mask[0] == key and self._mask[1] is self.pad:
            return self._mask[2]
        start, end = self.length, self.length + T
        device = self.latent.device
        mask = None
        if T > 1:
            slots = torch.arange(end, device=device)
            mask = (slots[None, :] <= (start + torch.arange(T, device=device))[:, None])[None, None]
        if self.pad is not None:
            keep = (~self.pad[:B, :end])[:, None, None, :]
            mask = keep if mask is None else mask & keep
        self._mask = (key, self.pad, mask)
        return mask

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only the sequences ``rows`` (indices into the current batch), in that order:
        batched decoding drops the sequences that have finished, so a step costs what the
        unfinished ones need."""
        self.latent = self.latent.index_select(1, rows)
        if self.pad is not None:
            self.pad = self.pad.index_select(0, rows)

    def truncate(self, length: int) -> None:
        """Forget every slot from ``length`` on
        (speculative decoding drops a rejected draft this way).

        Nothing needs erasing: attention reads only slots below ``length``, and the next
        tokens overwrite the rest.
        """
        if not 0 <= length <= self.length:
            raise ValueError(f"LatentCache.truncate({length}): must be between 0 and "
                             f"the filled length {self.length}")
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
        self.wkv_b = nn.Linear(cfg.kv_lora_rank,
                               cfg.n_heads * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.v_head_dim, cfg.dim, bias=False)  # Eq. 11
        # Inference shortcut (see ``absorbed_weights``): folding W^UK and W^UV into the projections
        # saves work only when the latent is no wider than a head (the miniatures: d_c = d_h); at
        # V3's d_c = 4 d_h the folded matrices cost 2-4x the multiply-adds, so there, as in the
        # official code, the two products stay apart.
        H, q_in, d_c = cfg.n_heads, cfg.q_lora_rank or cfg.dim, cfg.kv_lora_rank
        folded = H * (d_c + cfg.qk_rope_head_dim) * q_in + cfg.dim * H * d_c
        apart = (H * cfg.qk_head_dim * q_in + H * (cfg.qk_nope_head_dim + cfg.v_head_dim) * d_c
                 + cfg.dim * H * cfg.v_head_dim)
        self.fold_saves_work = folded <= apart

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: LatentCache | None = None, attn_impl: str | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, dim); cos/sin: RoPE tables for these T positions; returns (B, T, dim).

        With a cache, the T new tokens occupy slots [cache.length, cache.length + T) and attend
        to everything before them; the caller (``Transformer``) advances ``cache.length`` once
        all layers have run.
        ``mask`` (B or 1, 1, T, T), boolean, replaces the causal mask
        (used for packed samples; no cache).
        """
        attn_impl = attn_impl or ("naive" if cache is None else "absorbed")
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl={attn_impl!r}: must be one of {ATTN_IMPLS}")
        B, T, _ = x.shape
        kv, k_pe = self.wkv_a(x).split([self.kv_lora_rank, self.qk_rope_head_dim], dim=-1)
        # [c^KV | k^R]: Eqs. 1, 3
        latent = torch.cat([self.kv_norm(kv), apply_rope(k_pe, cos, sin)], dim=-1)

        causal = mask is None
        if cache is not None:
            if mask is not None:
                raise ValueError("MLA: an explicit mask cannot be combined with a cache")
            start, end = cache.length, cache.length + T
            if end > cache.max_len:
                raise ValueError(f"LatentCache is full: {end} tokens > max_len={cache.max_len}")
            layer = self.layer_id - cache.first_layer
            cache.latent[layer, :B, start:end] = latent.to(cache.latent.dtype)
            latent = cache.latent[layer, :B, :end].to(x.dtype)
            mask, causal = cache.mask(T, B), False

        c_q = x if self.q_lora_rank == 0 else self.q_norm(self.wq_a(x))  # Eq. 6 (x without q-LoRA)
        if attn_impl == "naive":
            return self._naive(c_q, latent, cos, sin, mask, causal)
        if self._foldable:  # the same attention through pre-multiplied weights (shortcut, below)
            return self._folded(c_q, latent, cos, sin, mask, causal)
        return self._absorbed(c_q, latent, cos, sin, mask, causal)

    def _naive(self, c_q, latent, cos, sin, mask, causal) -> torch.Tensor:
        """Expand the latents into per-head K and V (Eqs. 2, 4, 5),
        then standard attention (Eq. 10)."""
        B, T, _ = c_q.shape
        q = self._w_q(c_q).view(B, T, self.n_heads, self.qk_head_dim)
        q_nope, q_pe = q.split([self.qk_nope_head_dim, self.qk_rope_head_dim], dim=-1)
        q = torch.cat([q_nope, apply_rope(q_pe, cos, sin)], dim=-1)  # Eq. 8: per-head rotary query
        kv, k_pe = latent.split([self.kv_lora_rank, self.qk_rope_head_dim], dim=-1)
        S = kv.shape[1]
        k_nope, v = self.wkv_b(kv).view(B, S, self.n_heads, -1).split(
            [self.qk_nope_head_dim, self.v_head_dim], -1)
        k = torch.cat([k_nope, k_pe.unsqueeze(2).expand(-1, -1, self.n_heads, -1)], dim=-1)
        pad = self.qk_head_dim - self.v_head_dim
        # fused (flash) kernels want one head width for q, k and v: zero columns are free
        if pad > 0:
            v = F.pad(v, (0, pad))
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                             v.transpose(1, 2), attn_mask=mask, is_causal=causal,
                                             scale=self.softmax_scale)
        return self.wo(out.transpose(1, 2)[..., : self.v_head_dim].flatten(2))  # Eq. 11

    def _absorbed(self, c_q, latent, cos, sin, mask, causal) -> torch.Tensor:
        """Attend over the latents themselves, W^UK and W^UV absorbed (DeepSeek-V2 §2.1.2).

        q^C_{t,i} . (W^UK_i c_j) = (W^UK_i^T q^C_{t,i}) . c_j: each head's query is mapped
        into latent space, scored against the cached [c^KV | k^R], and the weighted sum of
        latents is mapped out through W^UV_i, then W^O (Eq. 11). Where it saves work,
        ``forward`` takes ``_folded`` instead: the same products multiplied out in the weights
        (an inference shortcut, below).
        """
        B, T, _ = c_q.shape
        H = self.n_heads
        w_uk, w_uv = self._w_uk_uv(self.wkv_b.weight)
        q = self._w_q(c_q).view(B, T, H, self.qk_head_dim)  # W^UQ c^Q (Eq. 7) and W^QR c^Q (Eq. 8)
        q_nope, q_pe = (q * self.softmax_scale).split(
            [self.qk_nope_head_dim, self.qk_rope_head_dim], -1)
        q_lat = torch.einsum("bthd,hdc->bthc", q_nope, w_uk)  # W^UK_i^T q^C_{t,i}
        o_lat = self._latent_attention(q_lat, q_pe, latent, cos, sin, mask, causal)
        return self.wo(torch.einsum("bthc,hdc->bthd", o_lat, w_uv).flatten(2))  # W^O [W^UV_i o_i]

    def _latent_attention(self, q_lat, q_pe, latent, cos, sin, mask, causal) -> torch.Tensor:
        """softmax(q . [c^KV | k^R]) summed over the latents c^KV, per head
        (Eq. 10 in latent space).

        Every head scores against the same key [c^KV | k^R], so the heads fold into the rows of one
        matrix product per sequence: (T*H, d_c + d_h^R) x (d_c + d_h^R, S), the multi-query layout
        FlashMLA uses. ``q_lat`` (B, T, H, d_c) and ``q_pe`` (B, T, H, d_h^R) are already scaled by
        the softmax scale. Returns sum_j p_j c_j: (B, T, H, d_c).
        """
        B, T, H, d_c = q_lat.shape
        d_key = d_c + self.qk_rope_head_dim
        q = torch.cat([q_lat, apply_rope(q_pe, cos, sin)], dim=-1)  # (B, T, H, d_c + d_h^R)
        scores = torch.bmm(q.view(B, T * H, d_key), latent.transpose(1, 2)).view(B, T, H, -1)
        if causal:
            mask = torch.ones(T, latent.shape[1], dtype=torch.bool,
                              device=q.device).tril()[None, :, None]
        if mask is not None:  # masks come as (B, 1, T, S) for SDPA's head-major layout
            mask = mask if causal else mask.transpose(1, 2)
            # a finite floor, not -inf: a fully masked row (a padding query) must not turn into NaN
            # and then poison every later position through 0 * NaN in the value sum
            scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
        p = scores.float().softmax(dim=-1).to(q.dtype)
        return torch.bmm(p.view(B, T * H, -1), latent[..., :d_c]).view(B, T, H, d_c)

    def _w_q(self, c_q: torch.Tensor) -> torch.Tensor:
        """The per-head queries [q^C | q^R] from c^Q (Eqs. 7-8; from h itself
        without query LoRA)."""
        return (self.wq if self.q_lora_rank == 0 else self.wq_b)(c_q)

    def _w_uk_uv(self, w_kv_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """W^UK (H, d_h, d_c) and W^UV (H, d_v, d_c), the two halves of ``wkv_b``
        per head (Eqs. 2, 5)."""
        w = w_kv_b.view(self.n_heads, self.qk_nope_head_dim + self.v_head_dim, self.kv_lora_rank)
        return w.split([self.qk_nope_head_dim, self.v_head_dim], 1)

    # ----------------------------------------------------------- inference shortcut: folded weights
    # Not a different computation: the same products as ``_absorbed``, multiplied out once in the
    # weights and cached while sampling, used only where that costs fewer multiply-adds.

    def absorbed_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W^UK folded into the query projection, W^UV into the output projection
        (DeepSeek-V2 §2.1.2).

        By associativity q^C_{t,i} . (W^UK_i c_j) = (W^UK_i^T W^UQ_i c^Q_t) . c_j, so one matrix
        W^UK_i^T W^UQ_i maps c^Q straight to the query in latent space; the softmax scale is folded
        in too (RoPE is a rotation, so it commutes with scaling). Likewise W^O_i W^UV_i maps the
        weighted sum of latents straight to the output. Returns (W_q (H * (d_c + d_h^R), q_in), W_o
        (dim, H * d_c)); cached between calls for inference (``derived_weight``), rebuilt every call
        while training so gradients flow.
        """
        return derived_weight(self, f"absorbed@{self.softmax_scale}",
                              lambda: self._fold(*self._fold_sources()), self._fold_sources)

    def _fold_sources(self) -> tuple[torch.Tensor, ...]:
        return ((self.wq if self.q_lora_rank == 0 else self.wq_b).weight, self.wkv_b.weight,
                self.wo.weight)

    def _fold(self, w_q, w_kv_b, w_o) -> tuple[torch.Tensor, torch.Tensor]:
        H = self.n_heads
        w_uk, w_uv = self._w_uk_uv(w_kv_b)
        w_uq, w_qr = w_q.view(H, self.qk_head_dim, -1).split(
            [self.qk_nope_head_dim, self.qk_rope_head_dim], 1)
        w_q_lat = torch.einsum("hdc,hdq->hcq", w_uk, w_uq)  # W^UK_i^T W^UQ_i: (H, d_c, q_in)
        w_q_abs = torch.cat([w_q_lat, w_qr], dim=1).flatten(0, 1) * self.softmax_scale
        w_o_abs = torch.einsum("ohv,hvc->ohc", w_o.view(w_o.shape[0], H, self.v_head_dim), w_uv)
        return w_q_abs, w_o_abs.flatten(1)

    @property
    def _foldable(self) -> bool:
        """Fold where it saves work (``fold_saves_work``), and only plain weights: an ``Fp8Linear``
        quantises its operands at every call, so it must stay a call."""
        return (self.fold_saves_work
                and type(self.wq if self.q_lora_rank == 0 else self.wq_b) is nn.Linear
                and type(self.wo) is nn.Linear)

    def _folded(self, c_q, latent, cos, sin, mask, causal) -> torch.Tensor:
        """``_absorbed`` through the folded weights: one matmul into latent space, one out of it."""
        B, T, _ = c_q.shape
        H, d_c = self.n_heads, self.kv_lora_rank
        w_q, w_o = self.absorbed_weights()
        q_lat, q_pe = F.linear(c_q, w_q).view(B, T, H, d_c + self.qk_rope_head_dim).split(
            [d_c, self.qk_rope_head_dim], -1)
        o_lat = self._latent_attention(q_lat, q_pe, latent, cos, sin, mask, causal)
        return F.linear(o_lat.flatten(2), w_o)  # W^O_i W^UV_i, summed over heads
