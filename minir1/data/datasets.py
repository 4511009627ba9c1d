"""The pretraining corpus, SFT samples, and the deterministic batches the trainer draws from them.

**The corpus is designed to make the base model "R1-Zero ready".** Each document is an R1-Zero
prompt followed by a completion. Most completions (1 - ``worked_fraction`` = 60% by default) answer
*directly* with an empty think block; the rest show the worked steps first. A model pretrained on
this mixture can reason step by step, but when decoding greedily it prefers the more common direct
answer, which is reliable on easy problems and unreliable on hard ones. That gap between what the
model *can* do and what it *does* by default is exactly what reinforcement learning later discovers
and exploits: R1-Zero's base model had never been asked to reason in this format either. (In a quick
prototype of this miniature, 10% worked data made RL plateau early, and partial scratchpads taught
the model to answer directly so well that no gap was left; both are avoided here.) A fraction of the
worked solutions end with an inverse-operation check (``check 936-589=347``), the miniature of the
self-verification R1 develops.

Batches are a pure function of ``(seed, step)``, so a resumed run sees exactly the batches it
would have seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from minir1.data.tasks import LEVELS, TASKS, Problem, make_problem, split_of
from minir1.data.templates import TEMPLATES, direct_completion, prompt_for, worked_completion
from minir1.data.tokenizer import Tokenizer
from minir1.model.transformer import IGNORE_INDEX


@dataclass(frozen=True)
class CorpusConfig:
    tasks: tuple[str, ...] = TASKS  # which tasks appear
    levels: tuple[int, ...] = LEVELS  # which difficulty levels appear
    level_weights: tuple[float, ...] = (0.35, 0.35, 0.15, 0.15)  # sampling weight of each level
    worked_fraction: float = 0.4  # documents that show the worked steps (the rest answer directly)
    # worked solutions that end with a self-check (tasks that have one)
    check_fraction: float = 0.25
    template: str = "r1_zero"  # "r1_zero" or "chat"
    # with "r1_zero": documents that carry the instruction line (the rest use the bare chat frame),
    # so the base model knows the R1-Zero prompt without paying for it in every document
    instruction_fraction: float = 0.3

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"CorpusConfig.tasks={self.tasks!r}: choose from {TASKS}")
        if not set(self.levels) <= set(LEVELS) or not self.levels:
            raise ValueError(f"CorpusConfig.levels={self.levels!r}: choose from {LEVELS}")
        if len(self.level_weights) != len(self.levels) or min(self.level_weights) < 0:
            raise ValueError("CorpusConfig.level_weights: one non-negative weight per level")
        for name in ("worked_fraction", "check_fraction", "instruction_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"CorpusConfig.{name}={getattr(self, name)}: must be in [0, 1]")
        if self.template not in TEMPLATES:
            raise ValueError(f"CorpusConfig.template={self.template!r}: must be one of {TEMPLATES}")


@dataclass(frozen=True)
class Document:
    problem: Problem
    prompt: str
    completion: str
    worked: bool


def corpus_documents(cfg: CorpusConfig, n: int, seed: int, split: str = "train") -> list[Document]:
    """``n`` documents, deterministic in ``seed``, whose questions all belong to ``split``:
    training documents never contain a test-split question; ``split="test"`` gives held-out
    documents for a validation loss."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: must be 'train' or 'test'")
    rng = random.Random(f"corpus:{split}:{seed}" if split != "train" else f"corpus:{seed}")
    docs: list[Document] = []
    while len(docs) < n:
        task = rng.choice(cfg.tasks)
        level = rng.choices(cfg.levels, weights=cfg.level_weights)[0]
        p = make_problem(task, level, rng)
        if split_of(p) != split:
            continue
        worked = rng.random() < cfg.worked_fraction
        check = worked and bool(p.check) and rng.random() < cfg.check_fraction
        completion = worked_completion(p, with_check=check) if worked else direct_completion(p)
        template = cfg.template
        if template == "r1_zero" and rng.random() >= cfg.instruction_fraction:
            template = "chat"
        docs.append(Document(p, prompt_for(p.question, template), completion, worked))
    return docs


def pack_documents(tok: Tokenizer, docs: list[Document]) -> tuple[torch.Tensor, torch.Tensor]:
    """One long int64 stream: ``<bos> prompt completion <eos>`` per document, back to back
    (V3 §4.1 packs pre-training documents without a cross-document attention mask; the model
    learns to reset at ``<bos>``).

    Also returns a boolean mask of the positions whose token is *learned* (completion and
    ``<eos>``): the prompt is context, and its question digits are random, so predicting them would
    only add noise to the loss.
    """
    ids: list[int] = []
    learned: list[bool] = []
    for d in docs:
        prompt = tok.encode(d.prompt, bos=True)
        completion = tok.encode(d.completion, eos=True)
        ids += prompt + completion
        learned += [False] * len(prompt) + [True] * len(completion)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(learned)


@dataclass
class PackedStream:
    """Random windows of a packed token stream, a pure function of (seed, step)."""

    tokens: torch.Tensor  # (N,) int64
    batch_size: int
    seq_len: int
    seed: int = 0
    learned: torch.Tensor | None = None  # (N,) bool: which tokens count in the loss (None: all)

    def __post_init__(self) -> None:
        if self.tokens.numel() <= self.seq_len + 1:
            raise ValueError(f"stream of {self.tokens.numel()} tokens is too short for "
                             f"seq_len={self.seq_len}")

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        starts = torch.randint(0, self.tokens.numel() - self.seq_len - 1, (self.batch_size,),
                               generator=g)
        idx = starts[:, None] + torch.arange(self.seq_len + 1)
        window = self.tokens[idx]
        targets = window[:, 1:].clone()
        if self.learned is not None:
            targets[~self.learned[idx][:, 1:]] = IGNORE_INDEX
        return {"tokens": window[:, :-1], "targets": targets}


@dataclass
class SFTStream:
    """Packed SFT batches with sample masking (V3 §5.1): samples share a row but cannot attend to
    each other, and only completion tokens count in the loss. A pure function of (seed, step)."""

    samples: list[tuple[list[int], list[int]]]  # (prompt ids, completion ids incl. <eos>)
    batch_size: int
    seq_len: int
    seed: int = 0
    pad_id: int = 0
    _order: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        too_long = [i for i, (p, c) in enumerate(self.samples)
                    if len(p) + len(c) > self.seq_len + 1]
        if too_long:
            raise ValueError(f"{len(too_long)} SFT samples exceed seq_len={self.seq_len} "
                             f"(e.g. #{too_long[0]})")
        if not self.samples:
            raise ValueError("SFTStream needs at least one sample")

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        T = self.seq_len
        tokens = torch.full((self.batch_size, T), self.pad_id, dtype=torch.long)
        targets = torch.full((self.batch_size, T), IGNORE_INDEX, dtype=torch.long)
        doc_ids = torch.full((self.batch_size, T), -1, dtype=torch.long)
        for row in range(self.batch_size):
            pos, doc = 0, 0
            while True:
                prompt, completion = self.samples[int(torch.randint(len(self.samples), (1,),
                                                                    generator=g))]
                seq = prompt + completion
                if pos + len(seq) - 1 > T:
                    break
                n = len(seq) - 1  # inputs are seq[:-1], targets seq[1:]
                tokens[row, pos:pos + n] = torch.tensor(seq[:-1])
                tgt = torch.tensor(seq[1:])
                tgt[: len(prompt) - 1] = IGNORE_INDEX  # the prompt is given, not learned
                targets[row, pos:pos + n] = tgt
                doc_ids[row, pos:pos + n] = doc
                pos, doc = pos + n, doc + 1
        return {"tokens": tokens, "targets": targets, "doc_ids": doc_ids}


def sft_samples(tok: Tokenizer, docs: list[Document]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids with <bos>, completion ids with <eos>) pairs for ``SFTStream``."""
    return [(tok.encode(d.prompt, bos=True), tok.encode(d.completion, eos=True)) for d in docs]
