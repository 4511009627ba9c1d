"""Rule-based rewards, as DeepSeek-R1 uses for reasoning (R1 §2.2.2): no reward model to hack.

A completion is expected to look like ``<think> reasoning </think> <answer> 42 </answer>``.

* ``format_reward``: 1.0 when the completion is exactly one think block followed by exactly one
  answer block (whitespace between and around them is fine, an end-of-sequence token after
  them too), else 0.0.
* ``accuracy_reward``: 1.0 when the completion has exactly one answer block whose content, stripped,
  is an integer literal equal to the reference answer, else 0.0.

Both return a float in [0, 1] for *any* string and never raise (a reward function that crashes on a
weird sample kills an RL run; one that silently returns 0 for everything wastes it). The rules close
the hacks that reward parsers are known to fall for (R1 §2.2.2 chose rule rewards because neural
reward models get hacked; a parser can be too): several answers ("hedging") earn nothing, an empty
answer earns nothing, an answer outside the tags earns nothing, and numbers in the reasoning never
count. Everything is linear-time string scanning, so a 1 MB completion costs milliseconds.
"""

from __future__ import annotations

import re

from minir1.data.tags import ANSWER_CLOSE, ANSWER_OPEN, EOS, PAD, THINK_CLOSE, THINK_OPEN

_TRAILER = (EOS, PAD)
_INTEGER = re.compile(r"[+-]?\d+")


def extract_answer(completion: str) -> str | None:
    """The text inside the single ``<answer>...</answer>`` block, or None if there is
    not exactly one."""
    if not isinstance(completion, str):
        return None
    if completion.count(ANSWER_OPEN) != 1 or completion.count(ANSWER_CLOSE) != 1:
        return None
    start = completion.find(ANSWER_OPEN) + len(ANSWER_OPEN)
    end = completion.find(ANSWER_CLOSE)
    if end < start:
        return None
    return completion[start:end]


def parse_integer(text: str | None) -> int | None:
    """An integer written alone (surrounding whitespace allowed), else None.
    '12 or 13' is not an integer."""
    if text is None:
        return None
    text = text.strip()
    # int() of huge digit strings is slow and pointless
    if len(text) > 4000 or not _INTEGER.fullmatch(text):
        return None
    return int(text)


def accuracy_reward(completion: str, answer: int | str) -> float:
    """1.0 if the one answer block holds exactly ``answer`` (an integer), else 0.0. Never raises."""
    try:
        got = parse_integer(extract_answer(completion))
        want = answer if isinstance(answer, int) else parse_integer(str(answer))
        return 1.0 if got is not None and want is not None and got == want else 0.0
    except Exception:  # a reward must never take the run down
        return 0.0


def format_reward(completion: str) -> float:
    """1.0 for ``<think>...</think><answer>...</answer>`` and nothing else, else 0.0.
    Never raises."""
    try:
        if not isinstance(completion, str):
            return 0.0
        text = completion.strip()
        for trailer in _TRAILER:
            while text.endswith(trailer):
                text = text[: -len(trailer)].rstrip()
        for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE):
            if text.count(tag) != 1:
                return 0.0
        if not (text.startswith(THINK_OPEN) and text.endswith(ANSWER_CLOSE)):
            return 0.0
        think_end = text.find(THINK_CLOSE)
        answer_start = text.find(ANSWER_OPEN)
        if answer_start < think_end or text[think_end + len(THINK_CLOSE):answer_start].strip():
            return 0.0
        content = text[answer_start + len(ANSWER_OPEN): -len(ANSWER_CLOSE)]
        return 1.0 if content.strip() else 0.0
    except Exception:
        return 0.0


__all__ = ["accuracy_reward", "extract_answer", "format_reward", "parse_integer"]
