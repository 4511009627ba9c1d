from pathlib import Path

import pytest

from minir1.data import testsets
from minir1.data.tasks import LEVELS, TASKS, split_of
from minir1.data.testsets import TEST_SIZE, load_test_set, verify_test_sets, write_test_sets

DATA = Path(__file__).resolve().parents[2] / "data"


def test_committed_test_sets_match_their_manifest():
    assert verify_test_sets(DATA) == []


def test_minir1_data_rebuilds_them_bit_identically(tmp_path):
    write_test_sets(tmp_path)
    assert (tmp_path / "MANIFEST.json").read_bytes() == (DATA / "MANIFEST.json").read_bytes()
    for task in TASKS:
        for level in LEVELS:
            name = f"test/{task}_L{level}.jsonl"
            assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_test_sets_are_held_out_and_complete():
    for task in TASKS:
        for level in LEVELS:
            problems = load_test_set(DATA, task, level)
            assert len(problems) == TEST_SIZE and problems == testsets.test_set(task, level)
            assert all(split_of(p) == "test" for p in problems)


def test_tampering_is_detected(tmp_path):
    write_test_sets(tmp_path)
    f = tmp_path / "test/add_L1.jsonl"
    f.write_text(f.read_text().replace('"answer":', '"answer": ', 1))
    (tmp_path / "test/sub_L2.jsonl").unlink()
    problems = verify_test_sets(tmp_path)
    assert any("add_L1" in p and "checksum" in p for p in problems)
    assert any("sub_L2" in p and "missing" in p for p in problems)
    with pytest.raises(ValueError, match="n="):
        testsets.test_set("add", 1, n=0)
