"""Plots and widgets for the lessons (the top layer of the library: it may import from any other).

One module per lesson topic, each a set of pure ``render_*`` functions:
``rope`` (02), ``attention`` (03), ``moe`` (04), ``mtp`` (05), ``fp8`` (06), ``evaluation`` and
``live`` (07), ``rewards`` (01), ``grpo`` (08), ``rollouts`` (09), ``pipeline`` (10),
``distill`` (11), ``scaling`` (12), ``schedule`` and ``plan`` (13), ``chat`` (14); ``diagrams``
draws the boxes and arrows they share.

Every widget wraps a pure render function ``render_x(...) -> matplotlib.figure.Figure`` that tests
call headless (``chat``'s return HTML strings instead). ``interactive(render, **controls)`` always
shows the figure for the default values as a static image (so GitHub, nbval and the ``ci`` profile
render something), and adds live controls below it when a widget frontend is present, the profile
is not ``ci`` and ``MINIR1_WIDGETS`` is not ``0``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import matplotlib

from minir1 import profile
from minir1.utils import lazy_submodules

__getattr__, __dir__ = lazy_submodules(__name__, (
    "attention", "chat", "diagrams", "distill", "evaluation", "fp8", "grpo", "live", "moe", "mtp",
    "pipeline", "plan", "rewards", "rollouts", "rope", "scaling", "schedule"))


def in_notebook() -> bool:
    """True inside a Jupyter kernel (a frontend can show live output), False in scripts and
    terminals."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return in_notebook()


def _default(control: Any) -> Any:
    """The starting value of an ipywidgets control or of an ``interact``-style abbreviation."""
    if hasattr(control, "value"):
        return control.value
    if isinstance(control, tuple):  # (min, max[, step]) -> the midpoint, like ipywidgets
        lo, hi = control[0], control[1]
        mid = (lo + hi) / 2
        return type(lo)(mid) if isinstance(lo, int) and isinstance(hi, int) else mid
    if isinstance(control, (list, dict)):
        return next(iter(control.values())) if isinstance(control, dict) else control[0]
    return control


def show(fig: matplotlib.figure.Figure) -> None:
    """Display a figure once (inline PNG in notebooks) and release it."""
    import matplotlib.pyplot as plt

    try:
        from IPython.display import display

        display(fig)
    except ImportError:
        fig.show()
    plt.close(fig)


def interactive(render: Callable[..., matplotlib.figure.Figure], **controls: Any) -> None:
    """Static figure for the default control values, then (outside ``ci``) live widgets that
    re-render it."""
    show(render(**{k: _default(v) for k, v in controls.items()}))
    # MINIR1_WIDGETS=0 (set by `make notebooks`): a batch run has no frontend to talk to the
    # controls, and nbclient can stall on widget messages, so the committed outputs keep only the
    # static figure
    if (profile.current() == "ci" or os.environ.get("MINIR1_WIDGETS", "1") == "0"
            or not _widgets_available()):
        return
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    def _update(**values: Any) -> None:
        fig = render(**values)
        display(fig)
        plt.close(fig)

    ui = widgets.interactive(_update, **controls)
    display(ui)


__all__ = ["in_notebook", "interactive", "show"]
