"""Prompt templates and completion formats.

* ``r1_zero_prompt``: the R1-Zero structure (R1 Table 1, paraphrased and shortened for a character-level
  model): one instruction line that asks for the reasoning inside think tags and the answer inside answer
  tags, then a User/Assistant frame that the base model continues after ``Assistant:``. Only the structure
  is constrained, never the content, so whatever reasoning appears is the model's own.
* ``chat_prompt``: the frame used for supervised fine-tuning, without the instruction line (after SFT the
  model follows the format without being asked).
* ``direct_completion`` / ``worked_completion``: the two ways a completion is written in the corpus: an empty
  think block and the answer, or the worked steps then the answer.
"""

from __future__ import annotations

from minir1.data.tasks import Problem

INSTRUCTION = "Think in <think></think>, answer in <answer></answer>."


def r1_zero_prompt(question: str) -> str:
    """The R1-Zero prompt; the model's completion starts right after it."""
    return f"{INSTRUCTION}\nUser: {question}\nAssistant: "


def chat_prompt(question: str) -> str:
    """The SFT chat frame."""
    return f"User: {question}\nAssistant: "


def direct_completion(problem: Problem) -> str:
    """Answer at once: an empty think block."""
    return f"<think></think><answer>{problem.answer}</answer>"


def worked_completion(problem: Problem, with_check: bool = False) -> str:
    """Reason step by step (optionally ending with the inverse-operation check), then answer."""
    return f"<think>{problem.reasoning(with_check)}</think><answer>{problem.answer}</answer>"


# Generation prefixes that force a mode at evaluation time (the completion continues after them).
DIRECT_PREFIX = "<think></think><answer>"
REASON_PREFIX = "<think>"
