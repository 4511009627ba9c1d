"""The fixed held-out test sets, shipped in ``data/test/`` with a checksum manifest.

They are generated deterministically from the test split (``tasks.split_of``), so ``minir1 data``
rebuilds the files bit-identically and a test checks that the committed files, the manifest and
the generator agree.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from minir1.data.tasks import LEVELS, TASKS, Problem, sample_problems

TEST_SEED = 1234
TEST_SIZE = 200  # problems per (task, level)


def test_set(task: str, level: int, n: int = TEST_SIZE) -> list[Problem]:
    """The first ``n`` problems of the fixed test set of one task and level."""
    if not 1 <= n <= TEST_SIZE:
        raise ValueError(f"n={n}: the fixed test sets hold 1..{TEST_SIZE} problems")
    return sample_problems(task, level, TEST_SIZE, seed=TEST_SEED, split="test")[:n]


def evaluation_problems(n: int, tasks: tuple[str, ...] = TASKS,
                        levels: tuple[int, ...] = LEVELS) -> list[Problem]:
    """The first ``n`` problems of every (task, level) test set, task by task."""
    return [p for t in tasks for lv in levels for p in test_set(t, lv, n)]


def _serialise(problems: list[Problem]) -> bytes:
    lines = [json.dumps({"task": p.task, "level": p.level, "question": p.question,
                         "answer": p.answer, "steps": list(p.steps), "check": p.check},
                        separators=(",", ":"), sort_keys=True)
             for p in problems]
    return ("\n".join(lines) + "\n").encode()


def write_test_sets(root: str | Path) -> dict[str, str]:
    """Write ``root/test/{task}_L{level}.jsonl`` and ``root/MANIFEST.json``
    (sha256 per file); returns it."""
    root = Path(root)
    (root / "test").mkdir(parents=True, exist_ok=True)
    manifest = {}
    for task in TASKS:
        for level in LEVELS:
            data = _serialise(test_set(task, level))
            name = f"test/{task}_L{level}.jsonl"
            (root / name).write_bytes(data)
            manifest[name] = hashlib.sha256(data).hexdigest()
    (root / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def verify_test_sets(root: str | Path) -> list[str]:
    """Problems found in ``root``: missing files, checksum mismatches. Empty when all is well."""
    root = Path(root)
    manifest_file = root / "MANIFEST.json"
    if not manifest_file.exists():
        return [f"{manifest_file} is missing"]
    problems = []
    for name, digest in json.loads(manifest_file.read_text()).items():
        file = root / name
        if not file.exists():
            problems.append(f"{file} is missing")
        elif hashlib.sha256(file.read_bytes()).hexdigest() != digest:
            problems.append(f"{file} does not match its checksum in MANIFEST.json")
    return problems


def load_test_set(root: str | Path, task: str, level: int) -> list[Problem]:
    """Read one committed test set file."""
    file = Path(root) / f"test/{task}_L{level}.jsonl"
    if not file.exists():
        raise FileNotFoundError(f"{file}: run `minir1 data` to build the test sets")
    return [Problem(d["task"], d["level"], d["question"], d["answer"], tuple(d["steps"]),
                    d["check"])
            for d in map(json.loads, file.read_text().splitlines())]
