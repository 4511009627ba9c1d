import pytest


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIR1_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"
