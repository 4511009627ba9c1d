"""Sampled evaluation as R1 reports it: pass@1 over k samples, pass@k and majority vote (maj@k).

R1 samples k responses per problem at temperature 0.6, top-p 0.95, and reports pass@1 as their mean
accuracy and cons@64 as the accuracy of the majority answer (R1 §3, "Evaluation Setup").
``sampled_eval`` does that for any k; ``score_stage`` turns it into one row of a results table (with
format and reasoning rates, length and pass@1 per task); a ``Scoreboard`` scores every model of a
run on the same problems the same way, and ``format_results`` prints the table (R1 Tables 2 and 6).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from minir1.data.checks import is_reasoned
from minir1.data.rewards import accuracy_reward, extract_answer, format_reward, parse_integer
from minir1.data.tasks import Problem
from minir1.data.tokenizer import Tokenizer
from minir1.eval.complete import complete
from minir1.model.transformer import Transformer


@dataclass
class SampledEval:
    """k samples per problem: pass@1 (mean accuracy of the samples), pass@k (any sample right) and
    maj@k (the most frequent parsed answer is right; ties go to the answer seen first)."""

    k: int
    pass1: float
    passk: float
    majk: float
    correct: list[list[bool]]  # per problem, per sample
    completions: list[list[str]]


def majority_answer(completions: list[str]) -> int | None:
    """The most frequent well-parsed answer (ties: the one seen first); None if none has one."""
    answers = [a for a in (parse_integer(extract_answer(t)) for t in completions) if a is not None]
    return Counter(answers).most_common(1)[0][0] if answers else None


def sampled_eval(model: Transformer, tok: Tokenizer, problems: list[Problem], k: int,
                 temperature: float = 1.0, template: str = "r1_zero", max_new_tokens: int = 160,
                 batch_size: int = 128, seed: int = 0, top_p: float = 1.0) -> SampledEval:
    """Sample ``k`` completions per problem (free mode) and score pass@1, pass@k and majority vote.

    R1 evaluates at temperature 0.6, top-p 0.95; lesson 09 samples at the training temperature 1.0.
    """
    if k < 1:
        raise ValueError(f"k={k}: must be >= 1")
    flat = [p for p in problems for _ in range(k)]
    texts = complete(model, tok, flat, template, "", max_new_tokens, batch_size, temperature,
                     generator=torch.Generator().manual_seed(seed), top_p=top_p)
    completions = [texts[i * k:(i + 1) * k] for i in range(len(problems))]
    correct = [[accuracy_reward(t, p.answer) == 1.0 for t in group]
               for p, group in zip(problems, completions, strict=True)]
    votes = [majority_answer(group) == p.answer
             for p, group in zip(problems, completions, strict=True)]
    n = len(problems)
    return SampledEval(k, sum(map(sum, correct)) / (n * k), sum(map(any, correct)) / n,
                       sum(votes) / n, correct, completions)


def score_stage(model: Transformer, tok: Tokenizer, problems: list[Problem], template: str, k: int,
                temperature: float = 0.6, top_p: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """One row of the results table: pass@1 and maj@k over ``k`` samples per problem
    (R1's protocol), the format and reasoning rates, mean completion length (tokens) and
    pass@1 per task."""
    ev = sampled_eval(model, tok, problems, k, temperature=temperature, template=template,
                      seed=seed, top_p=top_p)
    flat = [t for group in ev.completions for t in group]
    by_task: dict[str, list[bool]] = {}
    for p, correct in zip(problems, ev.correct, strict=True):
        by_task.setdefault(p.task, []).extend(correct)
    return {"pass1": ev.pass1, "majk": ev.majk, "passk": ev.passk, "k": k,
            "format": sum(format_reward(t) for t in flat) / len(flat),
            "reasoning": sum(is_reasoned(t) for t in flat) / len(flat),
            "length": sum(len(tok.encode(t)) for t in flat) / len(flat),
            "pass1_by_task": {t: sum(v) / len(v) for t, v in by_task.items()}}


@dataclass
class Scoreboard:
    """Scores every model of a run on the same held-out problems, the same way (``score_stage``), as
    it is made."""

    tok: Tokenizer
    problems: list[Problem]
    k: int
    temperature: float
    top_p: float
    seed: int = 0
    keep_models: bool = False
    on_stage: Callable[[str, dict[str, Any]], None] | None = None  # called with each new row
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, Transformer] = field(default_factory=dict)

    @classmethod
    def of(cls, recipe: Any, tok: Tokenizer, problems: list[Problem], keep_models: bool = False,
           on_stage: Callable[[str, dict[str, Any]], None] | None = None) -> Scoreboard:
        """From a recipe's ``eval_k``, ``eval_temperature``, ``eval_top_p`` and ``seed`` fields."""
        return cls(tok, problems, recipe.eval_k, recipe.eval_temperature, recipe.eval_top_p,
                   recipe.seed, keep_models, on_stage)

    def record(self, stage: str, model: Transformer, template: str,
               seconds: float) -> dict[str, Any]:
        """Score ``model`` (prompted with ``template``) as ``stage``; ``seconds``: what training it
        cost (GRPO: the steps alone, without the held-out checks)."""
        row = {"stage": stage, "template": template, "train_seconds": seconds,
               **score_stage(model, self.tok, self.problems, template, self.k, self.temperature,
                             self.top_p, self.seed)}
        self.rows[stage] = row
        if self.keep_models:
            self.models[stage] = model
        if self.on_stage is not None:
            self.on_stage(stage, row)
        return row


def format_results(rows: dict[str, dict[str, Any]], title: str = "") -> str:
    """The results table in the paper's style (R1 Tables 2 and 6): one row per model, pass@1 and
    maj@k on the held-out problems, then the per-task pass@1, the share of samples that reason
    first, format rate and mean length."""
    any_row = next(iter(rows.values()))
    k, tasks = any_row["k"], list(any_row["pass1_by_task"])
    head = (f"| model | pass@1 | maj@{k} | " + " | ".join(f"{t} pass@1" for t in tasks)
            + " | reasons first | well formed | length (tok) |")
    lines = ([title] if title else []) + [head, "|" + "---|" * (6 + len(tasks))]
    for stage, r in rows.items():
        cells = [f"{r['pass1']:.1%}", f"{r['majk']:.1%}",
                 *(f"{r['pass1_by_task'][t]:.1%}" for t in tasks),
                 f"{r['reasoning']:.0%}", f"{r['format']:.0%}", f"{r['length']:.0f}"]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["SampledEval", "Scoreboard", "format_results", "majority_answer", "sampled_eval",
           "score_stage"]
