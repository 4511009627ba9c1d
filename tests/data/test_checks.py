"""Checks on completions: reasoned, self-checked, readable."""

import random

import pytest

from minir1.data.checks import has_check, readability
from minir1.data.tasks import TASKS, make_problem
from minir1.data.templates import worked_completion


def test_is_reasoned():
    from minir1.data.checks import is_reasoned

    assert is_reasoned("<think>1+1=2</think><answer>2</answer>") and is_reasoned("<think>1+1=")
    assert not is_reasoned("<think></think><answer>2</answer>")
    assert not is_reasoned("<think> </think>")
    assert not is_reasoned("gibberish without tags") and not is_reasoned("<answer>2</answer>")


def test_has_check_looks_inside_the_reasoning_only():
    assert has_check("<think>3+6=9,check 9-6=3</think><answer>9</answer>")
    assert not has_check("<think>3+6=9</think><answer>9</answer>")
    assert not has_check("<think>3+6=9</think><answer>check 9</answer>")


def test_every_corpus_trace_is_readable():
    rng = random.Random(0)
    for task in TASKS:
        for level in (1, 2, 3, 4):
            for _ in range(25):
                p = make_problem(task, level, rng)
                for check in (False, True):
                    completion = worked_completion(p, with_check=check)
                    assert readability(completion, p) is None, (p, check)


@pytest.mark.parametrize("text, why", [
    ("<think>3+4=7</think><answer>7", "malformed"),
    ("<think>3+4=7</think><answer>7</answer><answer>7</answer>", "malformed"),
    ("<think></think><answer>7</answer>", "no reasoning"),
    ("<think>3+4=7, so 7</think><answer>7</answer>", "unreadable step"),
    ("<think>3+4=7,,7+0=7</think><answer>7</answer>", "unreadable step"),
    ("<think>-1-12=-13,check -13+12=-1</think><answer>-13</answer>", None),
])
def test_readability_names_the_reason(text, why):
    assert readability(text) == why


def test_rambling_is_more_steps_than_the_worked_solution_and_its_check():
    p = make_problem("add", 3, random.Random(0))
    steps = p.reasoning(with_check=True)
    assert readability(f"<think>{steps}</think><answer>{p.answer}</answer>", p) is None
    rambling = f"<think>{steps},{p.steps[-1]}</think><answer>{p.answer}</answer>"
    assert readability(rambling, p) == "rambling" and readability(rambling) is None
