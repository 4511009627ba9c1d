"""Autoregressive sampling through the MLA latent cache (absorbed attention: nothing expanded
per token).

``sample`` is the batched workhorse: prompts of different lengths are left-padded (the cache's pad
mask hides the padding, and RoPE is relative, so no position shift is needed), each sequence stops
at its own stop token, and the log-probability of every generated token is returned.
``stream_tokens`` is the same loop for one prompt, yielding each id as it is drawn (what a chat
shows). ``generate`` is the simple greedy/temperature loop for equal-length prompts.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass

import torch

from minir1.model.derived import frozen_weights
from minir1.model.mla import LatentCache
from minir1.model.transformer import Transformer


@dataclass
class Samples:
    tokens: torch.Tensor  # (B, N) generated ids, ``pad_id`` after a sequence stopped
    # (B, N) log pi(token) under the model's own (temperature-1) distribution; 0 after stop
    logprobs: torch.Tensor
    lengths: torch.Tensor  # (B,) generated tokens per sequence, the stop token included

    def completions(self) -> list[list[int]]:
        return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths.tolist(), strict=True)]


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero all but the smallest set of tokens whose probability mass reaches ``top_p``
    (nucleus sampling)."""
    sorted_p, order = probs.sort(dim=-1, descending=True)
    # a token stays if the mass before it is below top_p
    keep = sorted_p.cumsum(-1) - sorted_p < top_p
    filtered = torch.zeros_like(probs).scatter_(-1, order, sorted_p * keep)
    return filtered / filtered.sum(-1, keepdim=True)


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One token per row: the first whose cumulative probability exceeds u * (row total),
    u uniform in [0, 1).

    probs: (B, V), rows need not be normalised; u: (B,). Tokens of probability 0 are never chosen.
    This is what ``torch.multinomial(probs, 1, replacement=True)`` does, but with the uniform
    numbers handed in, so that the caller decides which draw goes to which row. Computed in float64,
    on the probabilities' device where it has float64 (a CPU, a CUDA GPU), else on the CPU (MPS).
    """
    pick, ok = _inverse_cdf(probs, u)
    if not bool(ok):  # a diverged model: say so, as multinomial does
        raise ValueError(_NOT_FINITE)
    return pick


_NOT_FINITE = ("inverse_cdf: every row of probs needs a finite, positive sum "
               "(NaN or inf logits?)")


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``inverse_cdf`` without the host sync of its check: (tokens, whether every row had a finite
    positive total) as device tensors; a bad row draws a token in range, never raises."""
    where = torch.device("cpu") if probs.device.type == "mps" else probs.device
    cdf = probs.detach().to(where, torch.float64).cumsum(-1)
    total = cdf[:, -1:]
    if where.type == "cuda":  # a pinned upload does not wait for the GPU
        u = u.pin_memory()
    u = u.to(where, torch.float64, non_blocking=True)
    pick = torch.searchsorted(cdf, u[:, None] * total, right=True).squeeze(-1)
    # the last token of nonzero probability, should u * total round up to total
    last = (cdf < total).sum(-1)
    ok = ((total > 0) & total.isfinite()).all()
    return torch.minimum(pick, last).to(probs.device), ok


def _check_sampling(model: Transformer, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                    temperature: float, top_p: float) -> None:
    """The arguments ``sample`` and ``stream_tokens`` refuse, with the rule each breaks."""
    if not prompts or min(len(p) for p in prompts) == 0:
        raise ValueError("sample: every prompt needs at least one token")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"sample: temperature={temperature} must be >= 0 and "
                         f"top_p={top_p} in (0, 1]")
    total = max(len(p) for p in prompts) + max_new_tokens
    if total > model.cfg.max_seq_len:
        raise ValueError(f"longest prompt + max_new_tokens = {total} exceeds "
                         f"ModelConfig.max_seq_len={model.cfg.max_seq_len}")


# Accelerators read the stop flags every STOP_CHECK_EVERY steps, not every step: each read waits for
# the device. Rows that stopped in between keep decoding (masked, their draws unchanged) until the
# read drops them from the cache; on a CPU a read costs nothing and every step checks.
STOP_CHECK_EVERY = 8


def stop_check_every(device: torch.device) -> int:
    """Steps between two reads of the stop flags when sampling on ``device``."""
    return 1 if device.type == "cpu" else STOP_CHECK_EVERY


# one decoding step: the cache's rows, the token each drew, its log-probability, and which rows
# were still running (a row that stopped since the last check draws on, masked)
_Step = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _decode_steps(model: Transformer, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                  temperature: float, top_p: float, stop_ids: Sequence[int], pad_id: int,
                  banned_first: Sequence[int], generator: torch.Generator | None,
                  check_every: int | None = None) -> Generator[_Step, None, None]:
    """The decoding loop of ``sample``, one step per ``next``: yields ``(live, nxt, logp,
    running)``, the prompt index of each cache row, the token each drew, its log-probability, and
    whether the row was still running (had not drawn a stop token before). Stopped rows leave the
    cache at the next check, every ``check_every`` steps (default: ``stop_check_every``).
    Arguments as ``sample`` (checked by ``_check_sampling``); the caller holds ``no_grad`` and
    ``frozen_weights``."""
    device = next(model.parameters()).device
    every = check_every or stop_check_every(device)
    B, P = len(prompts), max(len(p) for p in prompts)
    total = P + max_new_tokens
    was_training = model.training
    model.eval()
    batch = torch.full((B, P), pad_id, dtype=torch.long)
    cache = LatentCache(model.cfg, B, total, device=device, dtype=next(model.parameters()).dtype)
    cache.pad = torch.zeros(B, total, dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        batch[i, P - len(p):] = torch.as_tensor(list(p))
        cache.pad[i, : P - len(p)] = True
    stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    step_input = batch.to(device)
    # the unfinished sequences, which are the cache's rows, in order
    live = torch.arange(B, device=device)
    live_cpu = live.cpu()
    running = torch.ones(B, dtype=torch.bool, device=device)
    finite = torch.ones((), dtype=torch.bool, device=device)  # every draw's probabilities so far
    try:
        for t in range(max_new_tokens):
            logits = model(step_input, cache=cache, mtp=False).logits[:, -1].float()
            if t == 0 and banned_first:
                logits[:, list(banned_first)] = float("-inf")
            logp = logits.log_softmax(-1)
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = logp.exp() if temperature == 1 else (logits / temperature).softmax(-1)
                if top_p < 1:
                    probs = _top_p_filter(probs, top_p)
                # one uniform number per row and step, finished rows included: a row's draws do
                # not depend on when the others stop, so the same seed gives the same samples
                u = torch.rand(B, generator=generator, dtype=torch.float64)[live_cpu]
                nxt, ok = _inverse_cdf(probs, u)
                finite &= ok
            yield live, nxt, logp.gather(-1, nxt[:, None]).squeeze(-1), running
            if stops.numel():
                running = running & ~torch.isin(nxt, stops)
            if (t + 1) % every and t + 1 < max_new_tokens:
                step_input = nxt[:, None]
                continue
            n_running, all_finite = torch.stack([running.sum(), finite]).tolist()  # one read
            if not all_finite:
                raise ValueError(_NOT_FINITE)
            if n_running == 0:
                break
            if n_running < len(live_cpu):
                keep = running.nonzero().squeeze(-1)
                cache.keep_rows(keep)
                live, nxt, running = live[keep], nxt[keep], running[keep]
                live_cpu = live.cpu()
            step_input = nxt[:, None]
    finally:
        model.train(was_training)


@torch.no_grad()
@frozen_weights()  # the weights stay put while decoding: derived ones are checked once
def sample(model: Transformer, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
           temperature: float = 1.0, top_p: float = 1.0, stop_ids: Sequence[int] = (),
           pad_id: int = 0, banned_first: Sequence[int] = (),
           generator: torch.Generator | None = None) -> Samples:
    """Continue every prompt (lists of ids, any lengths) by up to ``max_new_tokens`` tokens.

    ``temperature=0`` is greedy. ``stop_ids``: a sequence ends after emitting one of them.
    ``banned_first``: ids that may not be the first generated token (e.g. ``</think>`` to force a
    reasoning mode). ``generator``: a CPU ``torch.Generator``; the random numbers are drawn on the
    CPU whatever the model's device.
    """
    _check_sampling(model, prompts, max_new_tokens, temperature, top_p)
    device = next(model.parameters()).device
    B = len(prompts)
    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(B, max_new_tokens, device=device)
    lengths = torch.zeros(B, dtype=torch.long, device=device)
    for t, (live, nxt, logp, running) in enumerate(_decode_steps(
            model, prompts, max_new_tokens, temperature, top_p, stop_ids, pad_id, banned_first,
            generator)):
        # a row that stopped since the last check keeps its pad, its 0 and its length
        tokens[live, t] = torch.where(running, nxt, pad_id)
        logprobs[live, t] = torch.where(running, logp, 0.0)
        lengths[live] += running
    lengths = lengths.cpu()
    steps = int(lengths.max())
    if steps < max_new_tokens:  # every sequence stopped early
        tokens, logprobs = tokens[:, :steps], logprobs[:, :steps]
    return Samples(tokens.cpu(), logprobs.cpu(), lengths)


def stream_tokens(model: Transformer, prompt: Sequence[int], max_new_tokens: int, *,
                  temperature: float = 1.0, top_p: float = 1.0, stop_ids: Sequence[int] = (),
                  banned_first: Sequence[int] = (),
                  generator: torch.Generator | None = None) -> Generator[int, None, None]:
    """``sample`` for one prompt, one generated id at a time, as each is drawn (a chat streams
    them): the ids are those of ``sample(model, [prompt], ...)`` with the same arguments and seed,
    the stop token included. The arguments are checked now, before the first ``next``.

    Between two ids nothing is held: gradients and the weights' freeze are switched off only for
    the step itself, so the caller may do anything meanwhile (the model stays in eval mode until
    the stream ends or is closed).
    """
    _check_sampling(model, [prompt], max_new_tokens, temperature, top_p)
    # every id is read as it is drawn anyway: check the stop at every step
    steps = _decode_steps(model, [prompt], max_new_tokens, temperature, top_p, stop_ids, 0,
                          banned_first, generator, check_every=1)
    return _one_step_at_a_time(steps)


def _one_step_at_a_time(steps: Generator[_Step, None, None]) -> Generator[int, None, None]:
    with closing(steps):  # closing the stream ends the loop, restoring the model's mode
        while True:
            with torch.no_grad(), frozen_weights():
                step = next(steps, None)
            if step is None:
                return
            yield int(step[1][0])


@torch.no_grad()
@frozen_weights()  # the weights stay put while decoding: derived ones are checked once
def generate(model: Transformer, prompt: torch.Tensor, max_new_tokens: int,
             temperature: float = 0.0, generator: torch.Generator | None = None,
             attn_impl: str = "absorbed") -> torch.Tensor:
    """Continue each row of ``prompt`` (B, T) by ``max_new_tokens`` tokens;
    returns (B, T + max_new_tokens).

    ``temperature=0`` is greedy. The prompt is prefilled in one forward pass, then one token per
    step. ``generator``: a CPU ``torch.Generator``, as in ``sample``.
    """
    if prompt.dim() != 2:
        raise ValueError(f"prompt must have shape (batch, seq_len), got {tuple(prompt.shape)}")
    if temperature < 0:
        raise ValueError(f"temperature={temperature}: must be >= 0")
    B, T = prompt.shape
    total = T + max_new_tokens
    if total > model.cfg.max_seq_len:
        raise ValueError(f"prompt + max_new_tokens = {total} exceeds "
                         f"ModelConfig.max_seq_len={model.cfg.max_seq_len}")
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    cache = LatentCache(model.cfg, B, total, device=prompt.device, dtype=param.dtype)
    out, step_input = [prompt], prompt
    for _ in range(max_new_tokens):
        logits = model(step_input, cache=cache, attn_impl=attn_impl,
                       mtp=False).logits[:, -1].float()
        if temperature == 0:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = inverse_cdf(probs, torch.rand(B, generator=generator,
                                                dtype=torch.float64))[:, None]
        out.append(nxt)
        step_input = nxt
    model.train(was_training)
    return torch.cat(out, dim=1)
