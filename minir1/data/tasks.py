"""Verifiable reasoning tasks with exact integer answers and step-by-step worked solutions.

R1's reasoning RL needs problems whose answers a rule can check (R1 §2.2.2).
minir1's miniature versions:

| task  | level 1            | level 2            | level 3            | level 4            |
|-------|--------------------|--------------------|--------------------|--------------------|
| add   | 2-digit + 2-digit  | 3 + 3 digits       | 4 + 4 digits       | 5 + 5 digits       |
| sub   | 2 - 2 digits (a>=b)| 3 - 3 digits       | 4 - 4 digits       | 5 - 5 digits       |
| mul   | 3-digit x 1-digit  | 4-digit x 1-digit  | 2-digit x 2-digit  | 3-digit x 2-digit  |
| expr  | a+-b+-c            | 3 ops, + and -     | 3 ops, + - *       | 4 ops, + - *       |

Worked solutions are what a person writes on paper, one small step at a time, right to left with
carries and borrows (``7+9=16,4+8+1=13,3+5+1=9``), so that every step is a fact a tiny model can
learn; the final answer is then read off the steps. Each problem also carries a *check* (the
inverse operation, e.g. ``936-589=347``) that a worked solution may end with: the miniature of
R1's self-verification.

Everything is a pure function of ``(task, level, seed)``: ``sample_problems`` is deterministic,
and train and test sets are disjoint by construction (``split_of`` hashes the question, so no
question can be in both).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

LEVELS = (1, 2, 3, 4)


@dataclass(frozen=True)
class Problem:
    task: str  # "add", "sub", "mul" or "expr"
    level: int  # difficulty, 1 (easiest) .. 4
    question: str  # e.g. "347+589"
    answer: int
    steps: tuple[str, ...]  # the worked solution, one small step each
    check: str = ""  # an inverse-operation check of the answer, e.g. "936-589=347"

    def reasoning(self, with_check: bool = False) -> str:
        """The worked solution as one line of comma-separated steps
        (optionally ending with the check)."""
        steps = list(self.steps) + ([f"check {self.check}"] if with_check and self.check else [])
        return ",".join(steps)


def _digits(n: int) -> list[int]:
    """Least significant digit first."""
    return [int(c) for c in reversed(str(n))]


def _rand(rng: random.Random, n_digits: int) -> int:
    return rng.randint(10 ** (n_digits - 1), 10**n_digits - 1)


def addition_steps(a: int, b: int) -> list[str]:
    """Right to left: digit + digit (+ carry) = two-digit sum."""
    da, db = _digits(a), _digits(b)
    steps, carry = [], 0
    for i in range(max(len(da), len(db))):
        x, y = (da[i] if i < len(da) else 0), (db[i] if i < len(db) else 0)
        s = x + y + carry
        steps.append(f"{x}+{y}+{carry}={s}" if carry else f"{x}+{y}={s}")
        carry = s // 10
    return steps


def subtraction_steps(a: int, b: int) -> list[str]:
    """Right to left, a >= b: borrowing shows as 10 added to the digit
    (``14-1-8=5``: 4 borrowed, 1 lent)."""
    da, db = _digits(a), _digits(b)
    steps, borrow = [], 0
    for i in range(len(da)):
        x, y = da[i], (db[i] if i < len(db) else 0)
        lend = 1 if x - borrow < y else 0
        r = x + 10 * lend - borrow - y
        steps.append(f"{x + 10 * lend}-{borrow}-{y}={r}" if borrow else f"{x + 10 * lend}-{y}={r}")
        borrow = lend
    return steps


def _times_digit(a: int, d: int) -> tuple[list[str], int]:
    steps, carry = [], 0
    for x in _digits(a):
        p = x * d + carry
        steps.append(f"{x}*{d}+{carry}={p}" if carry else f"{x}*{d}={p}")
        carry = p // 10
    return steps, a * d  # the last step's result holds the carry-out as its leading digits


def multiplication_steps(a: int, b: int) -> list[str]:
    """a x (one digit): digit products with carries.
    a x (two digits): two partial products, then their sum."""
    db = _digits(b)
    if len(db) == 1:
        return _times_digit(a, b)[0]
    steps, partials = [], []
    for j, d in enumerate(db):
        part_steps, part = _times_digit(a, d)
        steps += part_steps
        partials.append(part * 10**j)
        steps.append(f"{a}*{d * 10**j}={part * 10**j}")
    steps += addition_steps(partials[0], partials[1])
    return steps


_OPS: dict[str, Callable[[int, int], int]] = {"+": lambda x, y: x + y, "-": lambda x, y: x - y,
                                              "*": lambda x, y: x * y}


def expression_steps(tokens: list[str]) -> tuple[list[str], int]:
    """Evaluate ``[n, op, n, op, n, ...]`` with * before + and -, one operation per step."""
    items = list(tokens)
    steps = []
    for ops in ("*", "+-"):
        i = 1
        while i < len(items):
            if items[i] in ops:
                x, y = int(items[i - 1]), int(items[i + 1])
                r = _OPS[items[i]](x, y)
                steps.append(f"{x}{items[i]}{y}={r}")
                items[i - 1: i + 2] = [str(r)]
            else:
                i += 2
    return steps, int(items[0])


def make_problem(task: str, level: int, rng: random.Random) -> Problem:
    """One random problem of ``task`` at ``level``."""
    if level not in LEVELS:
        raise ValueError(f"level={level}: must be one of {LEVELS}")
    if task == "add":
        a, b = _rand(rng, level + 1), _rand(rng, level + 1)
        return Problem(task, level, f"{a}+{b}", a + b, tuple(addition_steps(a, b)),
                       f"{a + b}-{b}={a}")
    if task == "sub":
        a, b = sorted((_rand(rng, level + 1), _rand(rng, level + 1)), reverse=True)
        return Problem(task, level, f"{a}-{b}", a - b, tuple(subtraction_steps(a, b)),
                       f"{a - b}+{b}={a}")
    if task == "mul":
        da, db = {1: (3, 1), 2: (4, 1), 3: (2, 2), 4: (3, 2)}[level]
        a, b = _rand(rng, da), _rand(rng, db)
        return Problem(task, level, f"{a}*{b}", a * b, tuple(multiplication_steps(a, b)))
    if task == "expr":  # single-digit operands; * (and with it precedence) only from level 3
        n_ops, ops = {1: (2, "+-"), 2: (3, "+-"), 3: (3, "+-*"), 4: (4, "+-*")}[level]
        tokens = [str(rng.randint(1, 9))]
        for _ in range(n_ops):
            tokens += [rng.choice(ops), str(rng.randint(1, 9))]
        steps, value = expression_steps(tokens)
        return Problem(task, level, "".join(tokens), value, tuple(steps))
    raise ValueError(f"task={task!r}: must be one of {TASKS}")


TASKS = ("add", "sub", "mul", "expr")


def split_of(problem: Problem, test_fraction: float = 0.1) -> str:
    """'test' or 'train', decided by a hash of the question alone:
    the two splits can never share a question."""
    h = int.from_bytes(hashlib.sha256(f"{problem.task}:{problem.question}".encode()).digest()[:8],
                       "big")
    return "test" if h / 2**64 < test_fraction else "train"


def draw_train_problems(n: int, tasks: tuple[str, ...], levels: tuple[int, ...],
                        key: str) -> list[Problem]:
    """``n`` train-split problems, task and level uniform at random, deterministic in ``key``
    (a string naming who draws and which draw, e.g. ``"grpo:0:12"``, so two callers never share
    a stream)."""
    rng = random.Random(key)
    out: list[Problem] = []
    while len(out) < n:
        p = make_problem(rng.choice(tasks), rng.choice(levels), rng)
        if split_of(p) == "train":
            out.append(p)
    return out


def sample_problems(task: str, level: int, n: int, seed: int, split: str = "train",
                    test_fraction: float = 0.1, unique: bool = True) -> list[Problem]:
    """``n`` problems of one task and level from one split, deterministic in ``seed``.

    ``unique=True`` never repeats a question (raises if the space is too small to hold n of them).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: must be 'train' or 'test'")
    rng = random.Random(f"{task}:{level}:{seed}:{split}")
    out: list[Problem] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ValueError(f"cannot draw {n} distinct {split} problems of {task} level {level}")
        p = make_problem(task, level, rng)
        if split_of(p, test_fraction) != split or (unique and p.question in seen):
            continue
        seen.add(p.question)
        out.append(p)
    return out
