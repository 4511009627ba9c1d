"""Small helpers the lessons share."""

from __future__ import annotations

import importlib
import inspect
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
        import sys

        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
