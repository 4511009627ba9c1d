"""The committed lessons as a reader opens them (GitHub, a fresh JupyterLab): outputs from a real
run that render without a kernel, nothing from this machine, no warnings."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WIDGET = "application/vnd.jupyter.widget-view+json"
# a path on the machine that ran the lesson (a reader's machine has none of them)
MACHINE_PATH = re.compile(r"(/work/|/tmp/|/root/|/home/\w+/)")


def outputs(path: Path):
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        for out in cell.get("outputs", []):
            yield i, out


def test_there_are_lessons():
    assert len(LESSONS) >= 15


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_a_committed_lesson_has_no_widget_outputs(path):
    """A saved widget view is a reference to a kernel's model: without it, a reader sees "Error
    displaying widget: model not found" (or a bar frozen at 0%). Lessons are committed from
    `make notebooks` (MINIR1_WIDGETS=0): static figures and text progress bars only."""
    bad = [i for i, out in outputs(path) if WIDGET in out.get("data", {})]
    assert not bad, f"{path.name}: widget outputs in cells {bad}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_a_committed_lesson_has_no_warnings_or_machine_paths(path):
    for i, out in outputs(path):
        assert out.get("name") != "stderr", f"{path.name} cell {i}: {''.join(out['text'])[:300]}"
        text = json.dumps({k: v for k, v in out.get("data", {}).items()
                           if k.startswith("text/")}) + "".join(out.get("text", ""))
        found = MACHINE_PATH.search(text)
        assert not found, f"{path.name} cell {i}: {text[max(found.start() - 60, 0):][:160]}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_every_cell_has_an_id(path):
    cells = json.loads(path.read_text())["cells"]
    ids = [c.get("id") for c in cells]
    assert all(ids) and len(set(ids)) == len(ids), path.name
