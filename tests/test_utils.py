"""minir1.utils: show_source prints the defining source of a library object; progress bars in a
pipe update every few seconds."""

import io
import os
import subprocess
import sys

import pytest

from minir1.model import MoE


def test_show_source_looks_through_decorators(capsys):
    import minir1

    minir1.show_source(MoE.update_bias)
    printed = capsys.readouterr().out
    assert printed.startswith("# minir1.model.moe.MoE.update_bias")
    assert "def update_bias" in printed and "/" not in printed.splitlines()[0]


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_bars_in_a_pipe_update_every_few_seconds():
    from minir1.utils import PIPED_PROGRESS_INTERVAL, progress_bar

    piped, terminal = progress_bar(total=3, stream=_Stream(False)), progress_bar(
        total=3, stream=_Stream(True))
    assert piped.mininterval == PIPED_PROGRESS_INTERVAL
    assert terminal.mininterval < 1  # tqdm's own pace
    assert progress_bar(total=3, stream=_Stream(False), mininterval=0.5).mininterval == 0.5
    for bar in (piped, terminal):
        bar.close()


def test_a_piped_command_writes_a_few_progress_updates(tmp_path):
    """`minir1 pretrain` into a pipe: a handful of bar updates, not one per step."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "minir1", "pretrain", "--profile", "ci", "--steps", "30",
         "--eval-n", "0", "--eval-every", "0", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    updates = [u for u in done.stderr.replace("\r", "\n").splitlines() if "train:" in u]
    assert 1 <= len(updates) < 10, updates  # 30 steps of ~0.3 s: start, end, a few between


@pytest.mark.parametrize("flag, prof, live", [("", "ci", False), ("", "cpu", True),
                                              ("0", "cpu", False), ("1", "ci", True),
                                              ("1", "gpu", True)])
def test_widgets_live_follows_the_flag_and_the_profile(monkeypatch, flag, prof, live):
    import minir1.utils as utils

    monkeypatch.setattr(utils, "_in_kernel", lambda: True)
    monkeypatch.setenv("MINIR1_PROFILE", prof)
    monkeypatch.setenv("MINIR1_WIDGETS", flag)
    assert utils.widgets_live() is live


def test_widgets_are_never_live_outside_a_kernel_and_a_bad_flag_is_named(monkeypatch):
    import minir1.utils as utils

    monkeypatch.setenv("MINIR1_WIDGETS", "1")
    assert not utils.widgets_live()  # pytest is not a Jupyter kernel
    monkeypatch.setenv("MINIR1_WIDGETS", "yes")
    with pytest.raises(ValueError, match="MINIR1_WIDGETS='yes'"):
        utils.widgets_live()


def test_a_kernel_without_live_widgets_gets_a_text_bar_on_stdout(monkeypatch, capsys):
    """nbval and `make notebooks`: a saved lesson shows the finished bar, not a frozen widget."""
    import tqdm.notebook

    import minir1.utils as utils

    monkeypatch.setattr(utils, "_in_kernel", lambda: True)
    monkeypatch.setenv("MINIR1_WIDGETS", "0")
    bar = utils.progress_bar(range(3), desc="steps")
    assert not isinstance(bar, tqdm.notebook.tqdm)
    assert bar.mininterval == utils.PIPED_PROGRESS_INTERVAL
    list(bar)
    out = capsys.readouterr()
    assert "steps: 100%" in out.out and out.err == ""


def test_a_notebook_bar_that_does_not_stay_leaves_an_empty_output(monkeypatch):
    """A closed widget saved in a notebook reopens as "Error displaying widget: model not found":
    a finished leave=False bar replaces its output by empty HTML; a failed bar stays."""
    import IPython.display

    import minir1.utils as utils

    class Handle:
        def __init__(self):
            self.updates = []

        def update(self, obj):
            self.updates.append(obj)

    handles = []

    def display(obj, display_id=None, **kw):
        handles.append(Handle())
        return handles[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(utils, "_in_kernel", lambda: True)
    monkeypatch.setenv("MINIR1_WIDGETS", "1")
    utils._notebook_bar.cache_clear()
    try:
        done = utils.progress_bar(range(3), leave=False)
        assert done.mininterval == utils.NOTEBOOK_PROGRESS_INTERVAL
        list(done)
        (empty,) = handles[0].updates
        assert isinstance(empty, IPython.display.HTML) and empty.data == ""
        failed = utils.progress_bar(total=5, leave=False)
        failed.update(2)
        failed.close()
        assert handles[1].updates == []  # tqdm keeps a bar that stopped early, in red
    finally:
        utils._notebook_bar.cache_clear()
