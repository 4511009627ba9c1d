"""What a completion does besides being right: does it reason, does it check itself, is it readable.

The rule rewards (``minir1.data.rewards``) score correctness and format; these checks describe the
rest, for the statistics R1 plots and the filter R1 applies before fine-tuning on its own samples:

* ``is_reasoned``: the think block is not empty (R1-Zero's response length growing is the model
  reasoning more; R1 Fig. 3).
* ``has_check``: the reasoning ends with an inverse-operation check, the miniature of R1-Zero's
  self-verification ("aha moment", R1 §2.2.4).
* ``readability``: why a correct trace would still be dropped from rejection-sampled SFT data (R1
  §2.3.3 filtered out mixed languages, long paragraphs and code blocks).
"""

from __future__ import annotations

import re

from minir1.data.rewards import format_reward
from minir1.data.tags import CHECK_MARK, THINK_CLOSE, THINK_OPEN
from minir1.data.tasks import Problem

# One step of the corpus' worked solutions: "4+1+1=6", "623*70=43610", "-13-5=-18",
# "check 936-589=347".
STEP = re.compile(r"(check )?-?\d+(?:[-+*]\d+)+=-?\d+")


def is_reasoned(completion: str) -> bool:
    """The completion opens with ``<think>`` and writes something before ``</think>`` (or before it
    stops)."""
    text = completion.lstrip()
    if not text.startswith(THINK_OPEN):
        return False
    return bool(text[len(THINK_OPEN):].split(THINK_CLOSE)[0].strip())


def has_check(completion: str) -> bool:
    """The reasoning contains a self-check step (the corpus' ``check a-b=c``)."""
    return CHECK_MARK in completion.split(THINK_CLOSE)[0]


def readability(completion: str, problem: Problem | None = None) -> str | None:
    """Why a correct trace would still be dropped from the SFT data, or None if it is readable.

    R1 filtered out chain-of-thought with mixed languages, long paragraphs and code blocks (R1
    §2.3.3). The miniature's counterparts: a malformed completion (tags), an empty think block (no
    trace to learn from), a step that is not in the corpus' step grammar (``STEP``), and, given the
    ``problem``, rambling: more steps than its worked solution and a check (the repetition small
    models fall into as RL lengthens their output).
    """
    if format_reward(completion) != 1.0:
        return "malformed"
    if not is_reasoned(completion):
        return "no reasoning"
    steps = completion.split(THINK_OPEN, 1)[1].split(THINK_CLOSE, 1)[0].split(",")
    if not all(STEP.fullmatch(s) for s in steps):
        return "unreadable step"
    if problem is not None and len(steps) > len(problem.steps) + 1:
        return "rambling"
    return None


__all__ = ["STEP", "has_check", "is_reasoned", "readability"]
