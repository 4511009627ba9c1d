"""Small helpers the lessons share."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar


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



# seconds between progress-bar updates written to a file or a pipe
PIPED_PROGRESS_INTERVAL = 5.0


def progress_bar(iterable: Any = None, stream: Any = None, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` bar, which in a file or a pipe (``make demo > log``, CI; ``stream`` is
    where it writes, stderr by default) updates every ``PIPED_PROGRESS_INTERVAL`` seconds, so a
    log gets a line every few seconds instead of one per step; in a terminal or a notebook it keeps
    tqdm's pace (a notebook's bar is a widget, redrawn in place). Set postfixes with
    ``refresh=False``, or each one redraws the bar."""
    from tqdm.auto import tqdm

    stream = sys.stderr if stream is None else stream
    if not (stream.isatty() or _in_kernel()) and "mininterval" not in kwargs:
        kwargs["mininterval"] = PIPED_PROGRESS_INTERVAL
    return tqdm(iterable, file=stream, **kwargs)


def _in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (not merely importing IPython, as pytest does)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")
