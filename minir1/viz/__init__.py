"""Plots and widgets for the lessons (the top layer of the library: it may import from any other).

One module per lesson topic, each a set of pure ``render_*`` functions:
``rope`` (02), ``attention`` (03), ``moe`` (04), ``mtp`` (05), ``fp8`` (06), ``evaluation`` and
``live`` (07), ``rewards`` (01), ``grpo`` (08), ``rollouts`` (09), ``pipeline`` (10),
``distill`` (11), ``scaling`` (12), ``schedule`` and ``plan`` (13), ``chat`` (14); ``diagrams``
draws the boxes and arrows they share.

Every widget wraps a pure render function ``render_x(...) -> matplotlib.figure.Figure`` that tests
call headless (``chat``'s return HTML strings instead). ``interactive(render, **controls)`` shows
the figure under live controls when widgets are live (``minir1.utils.widgets_live``), else the
figure for the default values as a static image (so GitHub, nbval and the ``ci`` profile render
something). JupyterLab keeps a live widget's last figure in the saved notebook only when it saves
widget state: ``make venv`` turns that setting on, so a reopened lesson shows its figures, not
"Error displaying widget: model not found".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import matplotlib

from minir1.utils import lazy_submodules, widgets_live

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
    """The figure ``render(**values)`` under live controls, or the figure for the default values
    as a static image where widgets are not live (``minir1.utils.widgets_live``: nbval, the ``ci``
    profile, ``MINIR1_WIDGETS=0``, GitHub's viewer).

    Live, the figure is drawn once, inside the widget, and redrawn in place: no static copy stays
    above the controls. Long control labels get the room they need (a fixed label width cuts
    names such as ``kv_lora_rank``).
    """
    if not widgets_live():
        show(render(**{k: _default(v) for k, v in controls.items()}))
        return
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    def _update(**values: Any) -> None:
        fig = render(**values)
        display(fig)
        plt.close(fig)

    ui = widgets.interactive(_update, **controls)  # draws the default figure into its output
    for control in ui.kwargs_widgets:
        if hasattr(control, "style") and hasattr(control.style, "description_width"):
            control.style.description_width = "initial"
    display(ui)


__all__ = ["in_notebook", "interactive", "show", "widgets_live"]
