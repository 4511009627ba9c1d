"""The batched completion loop every evaluation and rejection sampling share.

``complete`` prompts each problem with a template (R1-Zero or chat), optionally forces the start of
the completion (``prefix``: how the greedy modes force an answer or a reasoning), and decodes in
batches through the latent-cache sampler until ``</answer>`` or end of sequence.
"""

from __future__ import annotations

import torch

from minir1.data.tags import ANSWER_CLOSE
from minir1.data.tasks import Problem
from minir1.data.templates import prompt_for
from minir1.data.tokenizer import Tokenizer
from minir1.infer.generate import sample
from minir1.model.transformer import Transformer


def complete(model: Transformer, tok: Tokenizer, problems: list[Problem], template: str = "r1_zero",
             prefix: str = "", max_new_tokens: int = 160, batch_size: int = 64,
             temperature: float = 0.0, banned_first: list[int] | None = None,
             generator: torch.Generator | None = None, top_p: float = 1.0) -> list[str]:
    """One completion per problem (prompt + ``prefix``), in batches, until ``</answer>`` or eos.

    ``temperature=0`` is greedy; ``generator`` seeds sampling. Returns the generated text only (not
    the prefix)."""
    stops = [tok.token_id(ANSWER_CLOSE), tok.eos_id]
    texts: list[str] = []
    for start in range(0, len(problems), batch_size):
        chunk = problems[start:start + batch_size]
        prompts = [tok.encode(prompt_for(p.question, template) + prefix, bos=True) for p in chunk]
        room = model.cfg.max_seq_len - max(len(p) for p in prompts)
        out = sample(model, prompts, min(max_new_tokens, room), temperature=temperature,
                     top_p=top_p, stop_ids=stops, pad_id=tok.pad_id,
                     banned_first=banned_first or [], generator=generator)
        texts += [tok.decode(ids) for ids in out.completions()]
    return texts


__all__ = ["complete"]
