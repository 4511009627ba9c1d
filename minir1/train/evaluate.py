"""Task accuracy by greedy decoding on held-out problems, in three modes.

* ``free``: the prompt alone; the model decides whether to reason (what RL will see).
* ``direct``: the completion is forced to start with ``<think></think><answer>``: answer at once.
* ``reason``: forced to start with ``<think>`` and forbidden to close it immediately: work it out first.

The gap between ``reason`` and ``direct`` on hard levels is what the base model *could* do but does not do
by default; R1-Zero-style RL is what closes it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import torch

from minir1.data.datasets import prompt_for
from minir1.data.tasks import Problem
from minir1.data.templates import DIRECT_PREFIX, REASON_PREFIX
from minir1.data.tokenizer import Tokenizer
from minir1.infer.generate import sample
from minir1.model.transformer import Transformer
from minir1.rl.rewards import accuracy_reward, extract_answer, format_reward, parse_integer

MODES = ("free", "direct", "reason")


@dataclass
class EvalResult:
    problem: Problem
    mode: str
    completion: str  # the forced prefix plus what the model generated
    correct: bool
    well_formed: bool
    reasoned: bool  # the think block is non-empty


def evaluate(model: Transformer, tok: Tokenizer, problems: list[Problem], mode: str = "free",
             template: str = "r1_zero", max_new_tokens: int = 160, batch_size: int = 64) -> list[EvalResult]:
    """Greedy completions for ``problems`` in ``mode``, scored by the rule rewards."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: must be one of {MODES}")
    prefix = {"free": "", "direct": DIRECT_PREFIX, "reason": REASON_PREFIX}[mode]
    banned = [tok.token_id("</think>")] if mode == "reason" else []
    texts = complete(model, tok, problems, template, prefix, max_new_tokens, batch_size, banned_first=banned)
    return [EvalResult(p, mode, prefix + t, accuracy_reward(prefix + t, p.answer) == 1.0,
                       format_reward(prefix + t) == 1.0, is_reasoned(prefix + t))
            for p, t in zip(problems, texts, strict=True)]


def complete(model: Transformer, tok: Tokenizer, problems: list[Problem], template: str = "r1_zero",
             prefix: str = "", max_new_tokens: int = 160, batch_size: int = 64, temperature: float = 0.0,
             banned_first: list[int] | None = None, generator: torch.Generator | None = None,
             top_p: float = 1.0) -> list[str]:
    """One completion per problem (prompt + ``prefix``), in batches, stopping at ``</answer>`` or eos."""
    stops = [tok.token_id("</answer>"), tok.eos_id]
    texts: list[str] = []
    for start in range(0, len(problems), batch_size):
        chunk = problems[start:start + batch_size]
        prompts = [tok.encode(prompt_for(p.question, template) + prefix, bos=True) for p in chunk]
        room = model.cfg.max_seq_len - max(len(p) for p in prompts)
        out = sample(model, prompts, min(max_new_tokens, room), temperature=temperature, top_p=top_p,
                     stop_ids=stops, pad_id=tok.pad_id, banned_first=banned_first or [], generator=generator)
        texts += [tok.decode(ids) for ids in out.completions()]
    return texts


@dataclass
class SampledEval:
    """k samples per problem at a temperature: pass@1 (mean accuracy of the samples), pass@k (any sample right)
    and maj@k (the most frequent parsed answer is right; ties go to the answer seen first), as R1 reports them
    (pass@1 over 16 samples, cons@64 = majority vote; facts §9.3)."""

    k: int
    pass1: float
    passk: float
    majk: float
    correct: list[list[bool]]  # per problem, per sample
    completions: list[list[str]]


def majority_answer(completions: list[str]) -> int | None:
    """The most frequent well-parsed answer (ties: the one seen first); None if no completion has one."""
    answers = [a for a in (parse_integer(extract_answer(t)) for t in completions) if a is not None]
    return Counter(answers).most_common(1)[0][0] if answers else None


def sampled_eval(model: Transformer, tok: Tokenizer, problems: list[Problem], k: int, temperature: float = 1.0,
                 template: str = "r1_zero", max_new_tokens: int = 160, batch_size: int = 128,
                 seed: int = 0, top_p: float = 1.0) -> SampledEval:
    """Sample ``k`` completions per problem (free mode) and score pass@1, pass@k and majority vote.

    R1 evaluates at temperature 0.6, top-p 0.95 (facts §9.5); lesson 09 samples at the training temperature 1.0.
    """
    if k < 1:
        raise ValueError(f"k={k}: must be >= 1")
    flat = [p for p in problems for _ in range(k)]
    texts = complete(model, tok, flat, template, "", max_new_tokens, batch_size, temperature,
                     generator=torch.Generator().manual_seed(seed), top_p=top_p)
    completions = [texts[i * k:(i + 1) * k] for i in range(len(problems))]
    correct = [[accuracy_reward(t, p.answer) == 1.0 for t in group] for p, group in zip(problems, completions,
                                                                                        strict=True)]
    votes = [majority_answer(group) == p.answer for p, group in zip(problems, completions, strict=True)]
    n = len(problems)
    return SampledEval(k, sum(map(sum, correct)) / (n * k), sum(map(any, correct)) / n, sum(votes) / n, correct,
                       completions)


CHECK_MARK = "check "  # how the corpus writes a self-check step inside <think> (``check 15979-7836=8143``)


def has_check(completion: str) -> bool:
    """The reasoning contains a self-check step (the corpus' ``check a-b=c``)."""
    return CHECK_MARK in completion.split("</think>")[0]


def is_reasoned(completion: str) -> bool:
    """The completion opens with ``<think>`` and writes something before ``</think>`` (or before it stops)."""
    text = completion.lstrip()
    if not text.startswith("<think>"):
        return False
    return bool(text[len("<think>"):].split("</think>")[0].strip())


def accuracy_by_level(results: list[EvalResult]) -> dict[tuple[str, int], float]:
    """{(task, level): accuracy}."""
    groups: dict[tuple[str, int], list[bool]] = defaultdict(list)
    for r in results:
        groups[(r.problem.task, r.problem.level)].append(r.correct)
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def accuracy_table(by_mode: dict[str, list[EvalResult]]) -> str:
    """A text table: one row per (task, level), one column per mode."""
    tables = {mode: accuracy_by_level(res) for mode, res in by_mode.items()}
    keys = sorted({k for t in tables.values() for k in t})
    lines = ["task  level  " + "  ".join(f"{m:>7}" for m in tables)]
    for task, level in keys:
        cells = "  ".join(f"{tables[m].get((task, level), float('nan')):>7.1%}" for m in tables)
        lines.append(f"{task:<5} {level:>5}  {cells}")
    return "\n".join(lines)
