"""Task accuracy by greedy decoding on held-out problems, in three modes.

* ``free``: the prompt alone; the model decides whether to reason (what RL will see).
* ``direct``: the completion is forced to start with ``<think></think><answer>``: answer at once.
* ``reason``: forced to start with ``<think>`` and forbidden to close it immediately: work it out first.

The gap between ``reason`` and ``direct`` on hard levels is what the base model *could* do but does not do
by default; R1-Zero-style RL is what closes it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from minir1.data.datasets import prompt_for
from minir1.data.tasks import Problem
from minir1.data.templates import DIRECT_PREFIX, REASON_PREFIX
from minir1.data.tokenizer import Tokenizer
from minir1.infer.generate import sample
from minir1.model.transformer import Transformer
from minir1.rl.rewards import accuracy_reward, format_reward

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
    stops = [tok.token_id("</answer>"), tok.eos_id]
    results: list[EvalResult] = []
    for start in range(0, len(problems), batch_size):
        chunk = problems[start:start + batch_size]
        prompts = [tok.encode(prompt_for(p.question, template) + prefix, bos=True) for p in chunk]
        room = model.cfg.max_seq_len - max(len(p) for p in prompts)
        out = sample(model, prompts, min(max_new_tokens, room), temperature=0.0, stop_ids=stops,
                     pad_id=tok.pad_id, banned_first=banned)
        for p, ids in zip(chunk, out.completions(), strict=True):
            text = prefix + tok.decode(ids)
            results.append(EvalResult(p, mode, text, accuracy_reward(text, p.answer) == 1.0,
                                      format_reward(text) == 1.0, is_reasoned(text)))
    return results


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
