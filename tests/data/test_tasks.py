import random
import re

import pytest

from minir1.data.tasks import LEVELS, TASKS, make_problem, sample_problems, split_of


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("level", LEVELS)
def test_answers_are_exact_and_steps_are_true(task, level):
    rng = random.Random(0)
    for _ in range(200):
        p = make_problem(task, level, rng)
        assert p.answer == eval(p.question)  # the question is plain integer arithmetic
        for step in p.steps:  # every worked step is a true equation
            lhs, rhs = step.split("=")
            assert eval(lhs) == int(rhs), (p, step)
        if p.check:
            lhs, rhs = p.check.split("=")
            assert eval(lhs) == int(rhs)


@pytest.mark.parametrize("task", ["add", "sub"])
def test_digit_steps_spell_the_answer(task):
    rng = random.Random(1)
    for _ in range(200):
        p = make_problem(task, 3, rng)
        digits = "".join(str(int(s.split("=")[1]) % 10) for s in reversed(p.steps))
        carry = int(p.steps[-1].split("=")[1]) // 10 if task == "add" else 0
        assert int((str(carry) if carry else "") + digits) == p.answer


def test_levels_get_longer():
    for task in TASKS:
        lengths = [sum(len(p.reasoning()) for p in sample_problems(task, lvl, 50, seed=0))
                   for lvl in LEVELS]
        assert lengths == sorted(lengths), (task, lengths)


def test_sampling_is_deterministic_and_splits_are_disjoint():
    a = sample_problems("add", 2, 300, seed=7)
    assert a == sample_problems("add", 2, 300, seed=7)
    assert a != sample_problems("add", 2, 300, seed=8)
    test = sample_problems("add", 2, 100, seed=0, split="test")
    assert not {p.question for p in a} & {p.question for p in test}
    assert all(split_of(p) == "test" for p in test)
    assert len({p.question for p in a}) == 300


def test_reasoning_format():
    p = sample_problems("add", 1, 1, seed=0)[0]
    assert re.fullmatch(r"(\d\+\d(\+1)?=\d+,?)+", p.reasoning())
    assert p.reasoning(with_check=True).endswith(f"check {p.check}")


def test_bad_arguments():
    with pytest.raises(ValueError, match="level"):
        make_problem("add", 9, random.Random(0))
    with pytest.raises(ValueError, match="task"):
        make_problem("div", 1, random.Random(0))
    with pytest.raises(ValueError, match="split"):
        sample_problems("add", 1, 1, seed=0, split="val")
    with pytest.raises(ValueError, match="distinct"):
        sample_problems("mul", 3, 10_000, seed=0)  # only 90 * 90 two-by-two products exist
