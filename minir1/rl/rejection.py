"""Rejection sampling: sample the RL model many times, keep the correct and readable traces as
SFT data (R1 §2.3.3), and store them so distillation can reuse them (R1 §2.4 distils on the
same samples).

R1 sampled multiple responses per prompt from the reasoning-RL checkpoint, kept only correct ones,
and filtered out chains of thought with mixed languages, long paragraphs and code blocks (~600k
reasoning samples). ``rejection_sample`` does the same with the rule reward and ``readability``;
every sample's verdict is kept in ``records`` for the lesson's trace browser.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from minir1.data.checks import readability
from minir1.data.datasets import Document
from minir1.data.rewards import accuracy_reward
from minir1.data.tasks import Problem
from minir1.data.templates import prompt_for
from minir1.data.tokenizer import Tokenizer
from minir1.eval.complete import complete
from minir1.model.transformer import Transformer


@dataclass
class RejectionSample:
    """What rejection sampling kept, and why the rest went."""

    docs: list[Document]  # kept traces, chat format, ready for SFT
    sampled: int  # completions drawn
    correct: int  # ... of which correct
    # correct but dropped, by reason (``readability``), plus "duplicate" / "over cap"
    dropped: dict[str, int]
    prompts: int  # prompts sampled
    prompts_kept: int  # prompts with at least one kept trace
    # every sample: question, answer, completion, task, level, steps (of the worked solution),
    # correct, why (None: kept; else why it was dropped)
    records: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"sampled": self.sampled, "correct": self.correct, "kept": len(self.docs),
                "dropped": self.dropped, "prompts": self.prompts, "prompts_kept": self.prompts_kept}


def rejection_sample(model: Transformer, tok: Tokenizer, problems: list[Problem], k: int,
                     keep: int = 2, temperature: float = 1.0, template: str = "chat", seed: int = 0,
                     max_new_tokens: int = 160) -> RejectionSample:
    """``k`` samples per problem; keep the correct, readable ones (at most ``keep`` distinct per
    problem) as chat-format SFT documents."""
    flat = [p for p in problems for _ in range(k)]
    texts = complete(model, tok, flat, template, "", max_new_tokens, 128, temperature,
                     generator=torch.Generator().manual_seed(seed))
    docs: list[Document] = []
    records: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    prompts_kept = 0
    for i, p in enumerate(problems):
        seen: list[str] = []
        for text in texts[i * k:(i + 1) * k]:
            correct = accuracy_reward(text, p.answer) == 1.0
            why = readability(text, p) if correct else None
            if correct and why is None and text in seen:
                why = "duplicate"
            elif correct and why is None and len(seen) >= keep:
                why = "over cap"
            records.append({"question": p.question, "task": p.task, "level": p.level,
                            "answer": p.answer, "steps": len(p.steps), "completion": text,
                            "correct": correct, "why": why})
            if not correct:
                continue
            if why is not None:
                dropped[why] += 1
                continue
            seen.append(text)
            docs.append(Document(p, prompt_for(p.question, "chat"), text.strip(), worked=True))
        prompts_kept += bool(seen)
    correct_n = sum(r["correct"] for r in records)
    return RejectionSample(docs, len(texts), correct_n, dict(dropped), len(problems), prompts_kept,
                           records)


def save_traces(path: str | Path, docs: list[Document]) -> Path:
    """The SFT traces as JSON lines
    (``question``, ``task``, ``level``, ``answer``, ``completion``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for d in docs:
            f.write(json.dumps({"question": d.problem.question, "task": d.problem.task,
                                "level": d.problem.level, "answer": d.problem.answer,
                                "completion": d.completion}) + "\n")
    return path


def load_traces(path: str | Path) -> list[Document]:
    """Traces written by ``save_traces``, as chat-format SFT documents."""
    docs = []
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        p = Problem(r["task"], r["level"], r["question"], r["answer"], ())
        docs.append(Document(p, prompt_for(p.question, "chat"), r["completion"], worked=True))
    return docs


__all__ = ["RejectionSample", "load_traces", "rejection_sample", "save_traces"]
