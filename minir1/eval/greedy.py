"""Task accuracy by greedy decoding on held-out problems, in three modes.

* ``free``: the prompt alone; the model decides whether to reason (what RL will see).
* ``direct``: the completion is forced to start with ``<think></think><answer>``: answer at once.
* ``reason``: forced to start with ``<think>`` and forbidden to close it immediately: work it
  out first.

The gap between ``reason`` and ``direct`` on hard levels is what the base model *could* do but does
not do by default; R1-Zero-style RL is what closes it. ``run_evaluation`` scores every mode on the
fixed test sets, ``accuracy_table`` prints them by task and level, ``write_summary`` stores them as
JSON (a run's ``eval.json``, ``minir1 eval --out``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minir1.data.checks import is_reasoned
from minir1.data.rewards import accuracy_reward, format_reward
from minir1.data.tags import THINK_CLOSE
from minir1.data.tasks import Problem
from minir1.data.templates import DIRECT_PREFIX, REASON_PREFIX
from minir1.data.testsets import evaluation_problems
from minir1.data.tokenizer import Tokenizer
from minir1.eval.complete import complete
from minir1.model.transformer import Transformer

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
             template: str = "r1_zero", max_new_tokens: int = 160,
             batch_size: int = 64) -> list[EvalResult]:
    """Greedy completions for ``problems`` in ``mode``, scored by the rule rewards."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: must be one of {MODES}")
    prefix = {"free": "", "direct": DIRECT_PREFIX, "reason": REASON_PREFIX}[mode]
    banned = [tok.token_id(THINK_CLOSE)] if mode == "reason" else []
    texts = complete(model, tok, problems, template, prefix, max_new_tokens, batch_size,
                     banned_first=banned)
    return [EvalResult(p, mode, prefix + t, accuracy_reward(prefix + t, p.answer) == 1.0,
                       format_reward(prefix + t) == 1.0, is_reasoned(prefix + t))
            for p, t in zip(problems, texts, strict=True)]


def run_evaluation(model: Transformer, tok: Tokenizer, n: int, modes: tuple[str, ...] = MODES,
                   template: str = "r1_zero") -> dict[str, list[EvalResult]]:
    """Every mode on the first ``n`` problems of each fixed test set (all tasks and levels)."""
    problems = evaluation_problems(n)
    return {mode: evaluate(model, tok, problems, mode, template=template) for mode in modes}


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


def summarize(results: dict[str, list[EvalResult]]) -> dict[str, Any]:
    """Accuracy per mode and ``TASK_Llevel``, and how often the model reasons
    when free to choose."""
    free = results.get("free", [])
    return {mode: {f"{t}_L{lv}": acc for (t, lv), acc in accuracy_by_level(res).items()}
            for mode, res in results.items()} | {
        "free_reasoning_rate": sum(r.reasoned for r in free) / max(1, len(free))}


def write_summary(path: str | Path, results: dict[str, list[EvalResult]]) -> None:
    """``summarize(results)`` as JSON at ``path``
    (``eval.json`` of a run, or ``minir1 eval --out``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(summarize(results), indent=1) + "\n")


__all__ = ["MODES", "EvalResult", "accuracy_by_level", "accuracy_table", "evaluate",
           "run_evaluation", "summarize", "write_summary"]
