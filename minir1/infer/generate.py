"""Autoregressive sampling through the MLA latent cache (absorbed attention: nothing expanded per token)."""

from __future__ import annotations

import torch

from minir1.model.mla import LatentCache
from minir1.model.transformer import Transformer


@torch.no_grad()
def generate(model: Transformer, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
             generator: torch.Generator | None = None, attn_impl: str = "absorbed") -> torch.Tensor:
    """Continue each row of ``prompt`` (B, T) by ``max_new_tokens`` tokens; returns (B, T + max_new_tokens).

    ``temperature=0`` is greedy. The prompt is prefilled in one forward pass, then one token per step.
    """
    if prompt.dim() != 2:
        raise ValueError(f"prompt must have shape (batch, seq_len), got {tuple(prompt.shape)}")
    if temperature < 0:
        raise ValueError(f"temperature={temperature}: must be >= 0")
    B, T = prompt.shape
    total = T + max_new_tokens
    if total > model.cfg.max_seq_len:
        raise ValueError(f"prompt + max_new_tokens = {total} exceeds ModelConfig.max_seq_len={model.cfg.max_seq_len}")
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    cache = LatentCache(model.cfg, B, total, device=prompt.device, dtype=param.dtype)
    out, step_input = [prompt], prompt
    for _ in range(max_new_tokens):
        logits = model(step_input, cache=cache, attn_impl=attn_impl, mtp=False).logits[:, -1].float()
        if temperature == 0:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
        out.append(nxt)
        step_input = nxt
    model.train(was_training)
    return torch.cat(out, dim=1)
