"""Prompt templates and completion formats.

* ``r1_zero_prompt``: the R1-Zero structure (R1 Table 1, paraphrased and shortened for a
  character-level model): one instruction line that asks for the reasoning inside think tags and the
  answer inside answer tags, then a User/Assistant frame that the base model continues after
  ``Assistant:``. Only the structure is constrained, never the content, so whatever reasoning
  appears is the model's own.
* ``chat_prompt``: the frame used for supervised fine-tuning, without the instruction line (after
  SFT the model follows the format without being asked). ``prompt_for(question, template)``
  picks one by name.
* ``direct_completion`` / ``worked_completion``: the two ways a completion is written in the corpus:
  an empty think block and the answer, or the worked steps then the answer.
"""

from __future__ import annotations

from minir1.data.tags import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from minir1.data.tasks import Problem

INSTRUCTION = f"Think in {THINK_OPEN}{THINK_CLOSE}, answer in {ANSWER_OPEN}{ANSWER_CLOSE}."
TEMPLATES = ("r1_zero", "chat")


def r1_zero_prompt(question: str) -> str:
    """The R1-Zero prompt; the model's completion starts right after it."""
    return f"{INSTRUCTION}\nUser: {question}\nAssistant: "


def chat_prompt(question: str) -> str:
    """The SFT chat frame."""
    return f"User: {question}\nAssistant: "


def prompt_for(question: str, template: str = "r1_zero") -> str:
    """The prompt of ``template`` ("r1_zero" or "chat") for ``question``."""
    if template not in TEMPLATES:
        raise ValueError(f"template={template!r}: must be one of {TEMPLATES}")
    return r1_zero_prompt(question) if template == "r1_zero" else chat_prompt(question)


def direct_completion(problem: Problem) -> str:
    """Answer at once: an empty think block."""
    return f"{DIRECT_PREFIX}{problem.answer}{ANSWER_CLOSE}"


def worked_completion(problem: Problem, with_check: bool = False) -> str:
    """Reason step by step (optionally ending with the inverse-operation check), then answer."""
    reasoning = problem.reasoning(with_check)
    return f"{THINK_OPEN}{reasoning}{THINK_CLOSE}{ANSWER_OPEN}{problem.answer}{ANSWER_CLOSE}"


# Generation prefixes that force a mode at evaluation time (the completion continues after them).
DIRECT_PREFIX = f"{THINK_OPEN}{THINK_CLOSE}{ANSWER_OPEN}"
REASON_PREFIX = THINK_OPEN


__all__ = ["DIRECT_PREFIX", "INSTRUCTION", "REASON_PREFIX", "TEMPLATES", "chat_prompt",
           "direct_completion", "prompt_for", "r1_zero_prompt", "worked_completion"]
