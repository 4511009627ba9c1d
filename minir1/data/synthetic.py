"""A deterministic synthetic language for lessons that need *some* structure to learn before
the real tasks.

Tokens follow a first-order Markov chain whose rows are sparse, Zipf-weighted distributions: a model
can learn it (loss falls well below ln V), and frequent tokens dominate, which is exactly what makes
a router collapse onto a few experts if nothing balances it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def markov_corpus(vocab_size: int, n_tokens: int, seed: int = 0, branching: int = 4,
                  zipf: float = 1.2) -> torch.Tensor:
    """A 1-D int64 tensor of ``n_tokens`` tokens. Each token has ``branching`` likely successors.

    The chain itself is drawn from ``seed``: another seed is another language. Take held-out data
    from the same call (e.g. the last 10% of the tokens), not from a second seed.
    """
    if vocab_size < 2 or n_tokens < 2 or branching < 1:
        raise ValueError("markov_corpus: need vocab_size >= 2, n_tokens >= 2, branching >= 1")
    g = torch.Generator().manual_seed(seed)
    popularity = 1.0 / torch.arange(1, vocab_size + 1, dtype=torch.float64) ** zipf
    successors = torch.multinomial(popularity.expand(vocab_size, -1), branching, replacement=False,
                                   generator=g)
    weights = torch.rand(vocab_size, branching, generator=g, dtype=torch.float64) + 0.2
    transition = torch.full((vocab_size, vocab_size), 1e-3 / vocab_size, dtype=torch.float64)
    transition.scatter_(1, successors, weights)
    transition /= transition.sum(-1, keepdim=True)
    cdf = transition.cumsum(-1)
    u = torch.rand(n_tokens, generator=g, dtype=torch.float64)
    out = torch.empty(n_tokens, dtype=torch.long)
    state = 0
    for i in range(n_tokens):  # a few hundred thousand tokens per second; fine at lesson scale
        state = min(int(torch.searchsorted(cdf[state], u[i])), vocab_size - 1)
        out[i] = state
    return out


def random_batches(corpus: torch.Tensor, batch_size: int, seq_len: int,
                   generator: torch.Generator | None = None,
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (tokens, next tokens) batches of random windows of ``corpus``,
    each (batch_size, seq_len)."""
    if corpus.numel() <= seq_len + 1:
        raise ValueError(f"corpus of {corpus.numel()} tokens is too short for seq_len={seq_len}")
    while True:
        starts = torch.randint(0, corpus.numel() - seq_len - 1, (batch_size,), generator=generator)
        window = torch.stack([corpus[s:s + seq_len + 1] for s in starts.tolist()])
        yield window[:, :-1], window[:, 1:]
