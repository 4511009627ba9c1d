"""The cell slicer the browser tests run lessons with (no browser needed)."""

import json

from tests.browser.lessons import bound_and_read, needed_cells, widget_lessons
from tests.browser.test_widgets import DEFAULT_SECONDS, NOTEBOOKS, worker_groups


def notebook(tmp_path, *sources):
    cells = [{"cell_type": "code", "source": s, "metadata": {}, "outputs": []} for s in sources]
    cells.insert(1, {"cell_type": "markdown", "source": "prose", "metadata": {}})
    path = tmp_path / "lesson.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    return path


def test_a_change_to_a_name_counts_as_binding_it():
    bound, read = bound_and_read("logs[k] = f(x)\nseen.add(3)\ny += 1\nfor i, j in z: pass\n%time")
    assert {"logs", "seen", "y", "i", "j"} <= bound
    assert {"f", "x", "k", "z"} <= read


def test_only_what_the_widget_reads_runs(tmp_path):
    path = notebook(tmp_path,
                    "import math\nlogs = {}",      # 0: needed (logs)
                    "slow = train()",              # 2: not read by the widget
                    "logs['a'] = math.pi",         # 3: fills logs: needed
                    "print(slow)",                 # 4: not needed
                    "interactive(lambda: logs)",   # 5: the widget
                    "after = 1")                   # 6: after the widget
    assert needed_cells(path) == [0, 3, 5]


def test_every_widget_lesson_is_found_and_keeps_its_widget_cells():
    lessons = widget_lessons(NOTEBOOKS)
    assert len(lessons) >= 13 and "14_talk_to_your_r1.ipynb" in lessons
    for name in lessons:
        cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
        kept = needed_cells(NOTEBOOKS / name)
        assert any("interactive(" in "".join(cells[i]["source"])
                   or "chat_widget(" in "".join(cells[i]["source"]) for i in kept), name


def test_a_functions_own_names_are_not_global_reads():
    bound, read = bound_and_read("def f(run, *a, k=d):\n    x = run + y\n    return x\n"
                                 "g = lambda j: j + z")
    assert {"y", "z", "d"} <= read and not read & {"run", "x", "j", "a", "k"}
    assert bound == {"f", "g"}


def test_a_comprehensions_loop_variable_is_its_own():
    bound, read = bound_and_read("kept = [r['x'] for r in rows if r]\n"
                                 "by = {k: v for k, v in d.items()}\nn = sum(x for x in xs)")
    assert bound == {"kept", "by", "n"}
    assert {"rows", "d", "xs"} <= read and not read & {"r", "k", "v", "x"}


def test_the_two_workers_get_equal_shares_longest_first():
    seconds = {"a": 100, "b": 90, "c": 60, "d": 30, "e": 20}
    group = worker_groups([*seconds, "f"], seconds)  # "f": DEFAULT_SECONDS
    assert group["a"] != group["b"]  # the two longest apart
    load = {g: sum(seconds.get(t, DEFAULT_SECONDS) for t in group if group[t] == g)
            for g in ("a", "b")}
    assert sorted(load.values()) == [150, 168]
