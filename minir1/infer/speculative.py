"""Speculative decoding with the MTP module as the drafter (DeepSeek-V3 §2.2 and §5.4.3).

V3 trains one MTP module (depth 1) that, at position i, combines the main model's last hidden state
h_i with the embedding of the next token t_{i+1} (Eq. 21), runs one Transformer block (Eq. 22) and
predicts t_{i+2} through the shared head (Eq. 23). At inference that prediction is a free draft of
the token after next. The paper reports that 85-90% of these drafts are accepted, for 1.8x tokens
per second (§5.4.3).

Greedy speculative decoding, one draft per step:

1. the main model runs once over [t, d]: the token it chose last step and the MTP draft of the
   token after it;
2. at t's position it computes its own greedy choice g for the next token. The draft is accepted
   iff d == g, and then d's position (already in the same pass) gives the token after d: two
   tokens for one pass;
3. on rejection the output continues with g and d's slot is dropped from the latent cache;
4. the MTP module, fed the hidden states of the positions just kept and the embeddings of the tokens
   after them, drafts the next d.

A draft is kept only when it is the token greedy decoding would have chosen, so the output is plain
greedy decoding's, token for token; only the number of main-model passes changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from minir1.model.derived import frozen_weights
from minir1.model.mla import LatentCache
from minir1.model.transformer import Transformer


@dataclass
class SpeculativeResult:
    tokens: list[int]  # the generated ids, the stop token included
    passes: int  # main-model forward passes, the prompt's prefill included
    proposed: int  # MTP drafts checked by the main model
    accepted: int  # drafts equal to the main model's greedy pick
    # per draft, in order: accepted or not (the next draft sits 2 positions on, or 1)
    verdicts: list[bool]

    @property
    def acceptance_rate(self) -> float:
        """Share of drafts accepted (V3 §5.4.3: 85-90% for the second token);
        0 when none was proposed."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_pass(self) -> float:
        """Generated tokens per main-model pass: 1 + acceptance at best
        (``viz.mtp.expected_tokens_per_pass``)."""
        return len(self.tokens) / self.passes if self.passes else 0.0


@torch.no_grad()
@frozen_weights()  # the weights stay put while decoding: derived ones are checked once
def speculative_generate(model: Transformer, prompt_ids: Sequence[int] | torch.Tensor,
                         max_new_tokens: int, *, stop_ids: Sequence[int] = (),
                         banned_first: Sequence[int] = ()) -> SpeculativeResult:
    """Greedy decoding of one prompt, two tokens per main-model pass whenever the MTP draft
    is accepted.

    Returns the same tokens as
    ``sample(model, [prompt_ids], max_new_tokens, temperature=0, stop_ids=..., banned_first=...)``:
    a sequence ends after emitting one of ``stop_ids``; ``banned_first`` may not be the first token.
    Batch size 1: in a batch, sequences accept different numbers of drafts and their caches would
    drift apart by a different number of slots each step.

    Caches. The main model decodes through its ``LatentCache``; a pass over [t, d] appends two slots
    and a rejected d is dropped again with ``LatentCache.truncate``. The MTP block attends over its
    *own* inputs at earlier positions, so it needs its own cache (recomputing it would cost a pass
    over the whole sequence per draft): a one-layer ``LatentCache``. Position i of the MTP block
    needs h_i and t_{i+1}, so it can only be filled once the main model has chosen t_{i+1}; the
    positions are therefore fed to it only after they are verified, and it never holds a rejected
    draft: the two caches end every step at the same length and only the main one ever rolls back.

    In exact arithmetic the output is exactly greedy decoding's. In floating point a two-token pass
    may round a logit differently from the one-token pass of plain decoding, so an exact near-tie
    could break the other way.
    """
    if len(model.mtp) == 0:
        raise ValueError(f"speculative_generate drafts with the depth-1 MTP module, and this "
                         f"model has none (ModelConfig.n_mtp_modules={model.cfg.n_mtp_modules}, "
                         "or drop_mtp() was called)")
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long)
    if prompt.dim() == 2 and prompt.shape[0] == 1:
        prompt = prompt[0]
    if prompt.dim() != 1 or prompt.numel() == 0:
        raise ValueError(f"speculative_generate: one non-empty prompt (batch size 1), "
                         f"got shape {tuple(prompt.shape)}")
    if max_new_tokens < 1:
        raise ValueError(f"speculative_generate: max_new_tokens={max_new_tokens} must be >= 1")
    P = prompt.numel()
    total = P + max_new_tokens
    if total > model.cfg.max_seq_len:
        raise ValueError(f"prompt + max_new_tokens = {total} exceeds "
                         f"ModelConfig.max_seq_len={model.cfg.max_seq_len}")
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    mtp = model.mtp[0]
    main_cache = LatentCache(model.cfg, 1, total, device=device, dtype=dtype)
    mtp_cache = LatentCache(model.cfg, 1, total, device=device, dtype=dtype, n_layers=1,
                            first_layer=mtp.block.layer_id)
    cos, sin = model.rope_tables(device)
    stops = set(stop_ids)
    was_training = model.training
    model.eval()

    def draft(hidden: torch.Tensor, after: list[int]) -> int:
        """Feed the MTP block the verified positions (h_i, Emb(t_{i+1}));
        its last position drafts the next token."""
        s, T = mtp_cache.length, hidden.shape[1]
        emb = model.embed(torch.tensor([after], device=device))
        h, _ = mtp(hidden, emb, cos[s:s + T], sin[s:s + T], cache=mtp_cache)
        return int(model.head(mtp.norm(h[:, -1])).argmax(-1))

    out = model(prompt[None].to(device), cache=main_cache, mtp=False)
    logits = out.logits[0, -1].float()
    if banned_first:
        logits[list(banned_first)] = float("-inf")
    tokens = [int(logits.argmax(-1))]
    passes, verdicts = 1, []
    # verified positions not yet seen by the MTP
    hidden, after = out.hidden, [*prompt[1:].tolist(), tokens[0]]
    while tokens[-1] not in stops and len(tokens) < max_new_tokens:
        if len(tokens) + 2 > max_new_tokens:  # one token left: a draft could not save a pass
            out = model(torch.tensor([[tokens[-1]]], device=device), cache=main_cache, mtp=False)
            tokens.append(int(out.logits[0, -1].float().argmax(-1)))
            passes += 1
            break
        d = draft(hidden, after)
        out = model(torch.tensor([[tokens[-1], d]], device=device), cache=main_cache, mtp=False)
        picks = out.logits[0].float().argmax(-1).tolist()  # greedy choice after t, then after d
        passes += 1
        verdicts.append(picks[0] == d)
        if verdicts[-1]:
            tokens.append(d)
            # greedy would have stopped at d: the pass's second token is never emitted
            if d in stops:
                break
            tokens.append(picks[1])
            hidden, after = out.hidden, [d, picks[1]]
        else:
            main_cache.truncate(main_cache.length - 1)
            tokens.append(picks[0])
            hidden, after = out.hidden[:, :1], [picks[0]]
    model.train(was_training)
    return SpeculativeResult(tokens, passes, len(verdicts), sum(verdicts), verdicts)
