"""The DeepSeek-V3 Transformer: embedding -> blocks (MLA + dense FFN or MoE) -> norm -> head,
plus MTP.

Parameter names follow the official inference code (``embed``, ``layers.{i}.attn.wq_a``,
``layers.{i}.ffn.experts.{e}.w1``, ``norm``, ``head``, ...) so an official-layout state dict loads
directly. Unlike the official demo, ``forward`` returns logits for every position (training needs
them) and, given targets, the losses: ``loss = lm_loss + mtp_loss + balance_loss``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from minir1.config import ModelConfig
from minir1.model.block import Block
from minir1.model.init import skip_init
from minir1.model.mla import LatentCache
from minir1.model.moe import Gate, MoE, max_violation, moe_layers
from minir1.model.mtp import MTPModule
from minir1.model.norm import RMSNorm
from minir1.model.rope import rope_cos_sin

IGNORE_INDEX = -100  # targets with this value do not count in any loss


@dataclass
class TransformerOutput:
    logits: torch.Tensor  # (B, T, vocab) next-token logits
    loss: torch.Tensor | None = None  # lm_loss + mtp_loss + balance_loss
    lm_loss: torch.Tensor | None = None  # cross-entropy of the main next-token prediction
    mtp_loss: torch.Tensor | None = None  # (lambda / D) * sum_k L^k_MTP (Eq. 25), already weighted
    # alpha * sum_i f_i P_i, summed over MoE layers (Eq. 17)
    balance_loss: torch.Tensor | None = None
    mtp_losses: list[torch.Tensor] = field(default_factory=list)  # the unweighted L^k_MTP, k = 1..D
    # depth k: (B, T-k, vocab), predicts t_{i+k+1}
    mtp_logits: list[torch.Tensor] = field(default_factory=list)
    # (B, T, dim) last hidden state before the final norm: h^0 of the MTP chain
    hidden: torch.Tensor | None = None


class Transformer(nn.Module):
    """DeepSeek-V3 in any size: ``Transformer(ModelConfig.preset("tiny"))``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        with skip_init():  # every weight is drawn once, below, in module order
            self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
            self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
            self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
            # untied from the embedding, as in V3
            self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
            self.mtp = nn.ModuleList(MTPModule(cfg, k) for k in range(1, cfg.n_mtp_modules + 1))
        self._rope: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight ~ N(0, init_std) (V3 §4.2: 0.006), norms at 1, routing biases at 0."""
        if self.embed.weight.is_meta:
            return  # shapes only (count_params, 671B inspection): nothing to initialise
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding, Gate)):
                nn.init.normal_(m.weight, mean=0.0, std=self.cfg.init_std)
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)
            if isinstance(m, Gate):
                nn.init.zeros_(m.bias)

    def rope_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """fp32 cos/sin tables, built once per device (kept out of the buffers so ``.to(bf16)``
        cannot round them)."""
        if device not in self._rope:
            self._rope[device] = rope_cos_sin(self.cfg, device)
        return self._rope[device]

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None, *,
                cache: LatentCache | None = None, attn_impl: str | None = None,
                mtp: bool | None = None, doc_ids: torch.Tensor | None = None) -> TransformerOutput:
        """tokens: (B, T) int64. targets: (B, T) next tokens (``IGNORE_INDEX`` = no loss), or None.

        ``attn_impl``: "naive" or "absorbed" (default: naive without a cache, absorbed with one).
        ``cache``: a ``LatentCache``; the tokens continue the cached sequence and the cache
        advances by T.
        ``mtp``: run the MTP modules (default: when targets are given and there is no cache).
        ``doc_ids``: (B, T) sample index of each position for packed SFT batches: attention stays
        inside a sample (V3 §5.1 sample masking). Without it, packed documents see each other
        (pre-training, V3 §4.1).
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape (batch, seq_len), got {tuple(tokens.shape)}")
        _B, T = tokens.shape
        start = cache.length if cache is not None else 0
        if start + T > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {start + T} tokens exceeds "
                             f"ModelConfig.max_seq_len={self.cfg.max_seq_len}")
        cos, sin = self.rope_tables(tokens.device)
        cos, sin = cos[start:start + T], sin[start:start + T]
        alpha = self.cfg.balance_alpha if targets is not None else 0.0

        mask = None
        if doc_ids is not None:
            if doc_ids.shape != tokens.shape:
                raise ValueError(f"doc_ids shape {tuple(doc_ids.shape)} must equal "
                                 f"tokens shape {tuple(tokens.shape)}")
            same = doc_ids[:, :, None] == doc_ids[:, None, :]
            mask = (same & torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril())[:, None]

        emb = self.embed(tokens)
        h, balance = emb, []
        for layer in self.layers:
            h, aux = layer(h, cos, sin, cache, attn_impl, alpha, mask)
            if aux is not None:
                balance.append(aux)
        if cache is not None:
            cache.length += T
        out = TransformerOutput(logits=self.head(self.norm(h)), hidden=h)

        run_mtp = (targets is not None and cache is None) if mtp is None else mtp
        if run_mtp and cache is not None:
            raise ValueError("mtp=True with a cache: the MTP blocks would see only the new tokens, "
                             "not the cached history; run them on the full sequence "
                             "(e.g. from out.hidden) instead")
        if run_mtp:
            for k, module in enumerate(self.mtp, start=1):
                if T <= k:
                    break
                # position i (< T-k) combines h^{k-1}_i with Emb(t_{i+k}) and predicts t_{i+k+1}
                sub_mask = None if mask is None else mask[:, :, : T - k, : T - k]
                h, aux = module(h[:, : T - k], emb[:, k:], cos[: T - k], sin[: T - k], alpha,
                                sub_mask)
                out.mtp_logits.append(self.head(module.norm(h)))
                if aux is not None:
                    balance.append(aux)

        if targets is not None:
            out.lm_loss = next_token_loss(out.logits, targets)
            out.mtp_losses = [next_token_loss(lg, targets[:, k:])
                              for k, lg in enumerate(out.mtp_logits, start=1)]
            zero = out.lm_loss.new_zeros(())
            out.mtp_loss = ((self.cfg.mtp_loss_weight / len(self.mtp)) * sum(out.mtp_losses)
                            if out.mtp_losses else zero)
            out.balance_loss = sum(balance) if balance else zero
            out.loss = out.lm_loss + out.mtp_loss + out.balance_loss
        return out

    # ------------------------------------------------------------------ MoE balancing
    def moe_layers(self) -> list[MoE]:
        """Every MoE in the model, main layers first, then the MTP blocks'."""
        return moe_layers(self)

    def expert_load(self) -> torch.Tensor:
        """(n_moe, n_routed_experts) tokens routed per expert since the last bias update
        (training mode only)."""
        return torch.stack([m.load for m in self.moe_layers()])

    @torch.no_grad()
    def update_expert_bias(self, speed: float | None = None) -> torch.Tensor:
        """The aux-loss-free step, called by the trainer after each optimizer step (V3 §2.1.2).

        Each MoE moves its bias by ``speed`` (default ``cfg.bias_update_speed``) towards uniform
        load and clears its counts. Returns the MaxVio of each MoE for the step just finished.
        """
        speed = self.cfg.bias_update_speed if speed is None else speed
        return torch.stack([max_violation(m.update_bias(speed)) for m in self.moe_layers()])

    def drop_mtp(self) -> Transformer:
        """Discard the MTP modules (the paper does so at inference); returns self."""
        self.mtp = nn.ModuleList()
        return self


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (B, T, vocab) logits against (B, T) targets, in fp32 whatever the
    logits' dtype; ``IGNORE_INDEX`` targets carry no loss."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                           ignore_index=IGNORE_INDEX)
