"""Small helpers the lessons share."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from minir1 import profile


def show_source(obj: Any) -> None:
    """Show the library's source of ``obj`` (a class, function or method) so a lesson
    never copies code.

    Decorators such as ``torch.no_grad()`` are looked through. In a notebook the code renders as
    highlighted Python under a ``# module.qualname`` header; elsewhere it is printed.
    """
    obj = inspect.unwrap(obj)
    src = inspect.getsource(obj)
    module = inspect.getmodule(obj)
    header = (f"# {module.__name__ if module else '?'}."
              f"{getattr(obj, '__qualname__', '')}").rstrip(".")
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(f"```python\n{header}\n{src}```"))
            return
    except ImportError:
        pass
    print(header)
    print(src)


T = TypeVar("T")


def resolve(value: str | T, table: dict[str, T], field: str, also: str = "") -> T:
    """``value`` itself if it is not a name, else ``table[value]``; an unknown name raises
    a ``ValueError`` that names the field and the choices (``also``: extra accepted names
    the caller handles)."""
    if not isinstance(value, str):
        return value
    if value not in table:
        raise ValueError(f"{field}={value!r}: must be one of {sorted(table)}{also}")
    return table[value]


def lazy_submodules(package: str, names: Sequence[str],
                    ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose submodules ``names`` are imported on
    first attribute access (PEP 562): ``minir1.rl.grpo`` works after ``import minir1``, and
    importing the package costs nothing until a submodule is used."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__



# seconds between progress-bar updates written to a file or a pipe, and drawn in a notebook
PIPED_PROGRESS_INTERVAL = 5.0
NOTEBOOK_PROGRESS_INTERVAL = 0.5


def widgets_live() -> bool:
    """Whether live ipywidgets are shown: inside a Jupyter kernel with ipywidgets installed, and
    ``MINIR1_WIDGETS`` is ``1``, or unset outside the ``ci`` profile.

    ``MINIR1_WIDGETS=0`` (``make notebooks``: a batch run has no frontend, and a saved widget is a
    frozen placeholder) and the ``ci`` profile (nbval) keep static figures and text progress bars;
    ``MINIR1_WIDGETS=1`` turns widgets on in ``ci`` too (the browser tests run lessons small).
    """
    flag = os.environ.get("MINIR1_WIDGETS", "")
    if flag not in ("", "0", "1"):
        raise ValueError(f"MINIR1_WIDGETS={flag!r}: must be 0, 1 or unset")
    if flag == "0" or (flag == "" and profile.current() == "ci") or not _in_kernel():
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def progress_bar(iterable: Any = None, stream: Any = None, **kwargs: Any) -> Any:
    """A ``tqdm`` bar: a widget redrawn in place in a notebook with live widgets, tqdm's own pace in
    a terminal, and elsewhere text that updates every ``PIPED_PROGRESS_INTERVAL`` seconds, so a
    log (``make demo > log``, CI; ``stream``, stderr by default) gets a line every few seconds
    instead of one per step. In a kernel without live widgets (nbval, ``make notebooks``) the text
    goes to stdout: a saved lesson then shows the finished bar, not a widget frozen at 0%. Set
    postfixes with ``refresh=False``, or each one redraws the bar."""
    live = widgets_live()
    if live:
        tqdm = _notebook_bar()
        # each redraw is a message to the browser and a re-render there: twice a second is enough
        kwargs.setdefault("mininterval", NOTEBOOK_PROGRESS_INTERVAL)
    else:
        from tqdm.std import tqdm
    if stream is None:
        stream = sys.stdout if _in_kernel() else sys.stderr
    if not live and not stream.isatty() and "mininterval" not in kwargs:
        kwargs["mininterval"] = PIPED_PROGRESS_INTERVAL
    return tqdm(iterable, file=stream, **kwargs)


@functools.cache
def _notebook_bar() -> type:
    """tqdm's widget bar, shown under a display id so that a bar that does not stay
    (``leave=False``) leaves an empty output when it closes. tqdm closes its widget then, and the
    saved notebook would keep a view of a model that no longer exists, which JupyterLab shows on
    reopening as "Error displaying widget: model not found"."""
    from IPython.display import HTML, display
    from tqdm.notebook import tqdm

    class NotebookBar(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "display": False})
            self._handle = None
            if not self.disable:
                self._handle = display(self.container, display_id=True)
                self.displayed = True

        def close(self) -> None:
            finished = not (self.total and self.n < self.total)  # tqdm keeps a failed bar
            super().close()
            if self._handle is not None and not self.leave and finished:
                self._handle.update(HTML(""))
                self._handle = None

    return NotebookBar


def _in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (not merely importing IPython, as pytest does)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")
