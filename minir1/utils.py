"""Small helpers the lessons share."""

from __future__ import annotations

import inspect
from typing import Any


def show_source(obj: Any) -> str:
    """Show the library's source of ``obj`` (a class, function or method) so a lesson never copies code.

    In a notebook it renders as highlighted Python; elsewhere it prints. Returns the source text.
    """
    src = inspect.getsource(obj)
    where = f"# {inspect.getsourcefile(obj).split('minir1', 1)[-1].join(['minir1', ''])}"
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(f"```python\n{where}\n{src}```"))
            return src
    except ImportError:
        pass
    print(where)
    print(src)
    return src
