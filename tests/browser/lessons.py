"""Which cells of a lesson its widgets need: the browser tests run those, not the whole lesson.

A cell is needed if it shows a widget, or if it binds or changes a name that a needed cell after it
reads. "Changes" is read generously, so that a cell filling a dict another cell made is kept:
``x[k] = ...``, ``x.a = ...``, ``x += ...``, ``x.update(...)`` as a statement, ``for x in ...``. A
missed dependency cannot pass unseen: the widget cell then raises, and the test fails.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

WIDGET_CALLS = re.compile(r"\b(interactive|chat_widget)\(")


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _Reads(ast.NodeVisitor):
    """The global names a cell reads: a function's parameters and the names it assigns are its
    own, not the notebook's (``def f(run): ...`` does not read a global ``run``)."""

    def __init__(self) -> None:
        self.read: set[str] = set()
        self.local: list[set[str]] = []

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load) and not any(node.id in s for s in self.local):
            self.read.add(node.id)

    def _scope(self, node: ast.AST, args: ast.arguments) -> None:
        own = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
        own |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        body = node.body if isinstance(node.body, list) else [node.body]
        own |= {n.id for b in body for n in ast.walk(b)
                if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
        for default in (*args.defaults, *args.kw_defaults):
            if default is not None:
                self.visit(default)
        self.local.append(own)
        for b in body:
            self.visit(b)
        self.local.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._scope(node, node.args)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._scope(node, node.args)

    def _comprehension(self, node: ast.AST) -> None:
        # its loop variables are its own; the first iterable is read outside it
        first = node.generators[0]
        self.visit(first.iter)
        self.local.append({n.id for g in node.generators for n in ast.walk(g.target)
                           if isinstance(n, ast.Name)})
        for g in node.generators:
            for part in ([] if g is first else [g.iter]) + g.ifs:
                self.visit(part)
        for part in (node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,):
            self.visit(part)
        self.local.pop()

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension


def bound_and_read(source: str) -> tuple[set[str], set[str]]:
    """(names a cell binds or changes, globals it reads); IPython magics and shell lines
    ignored."""
    code = "\n".join(line for line in source.splitlines()
                     if not line.lstrip().startswith(("%", "!")))
    tree = ast.parse(code)
    bound: set[str] = set()
    for node in tree.body:  # the cell's own statements: what a function does inside is its own
        for sub in _outside_functions(node):
            if isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
                bound.add(sub.id)
            elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(sub.name)
            elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                bound.update((a.asname or a.name).split(".")[0] for a in sub.names)
            elif isinstance(sub, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For,
                                  ast.Delete)):
                targets = getattr(sub, "targets", None) or [getattr(sub, "target", None)]
                for target in targets:
                    for part in ast.walk(target) if target is not None else ():
                        if (name := _root_name(part)) is not None:
                            bound.add(name)
            elif isinstance(sub, ast.Expr) and isinstance(sub.value, ast.Call):
                func = sub.value.func  # x.update(...), x.append(...): a statement changing x
                if isinstance(func, ast.Attribute) and (name := _root_name(func.value)):
                    bound.add(name)
    reads = _Reads()
    reads.visit(tree)
    return bound, reads.read


def _outside_functions(node: ast.AST):
    """``node`` and what it holds, except the bodies of the functions and lambdas in it and
    the loop variables of its comprehensions."""
    yield node
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        return
    for child in ast.iter_child_nodes(node):
        if isinstance(node, ast.comprehension) and child is node.target:
            continue  # a comprehension's loop variable is its own, not the cell's
        yield from _outside_functions(child)


def code_cells(path: Path) -> list[tuple[int, str]]:
    """(index among all cells, source) of every non-empty code cell."""
    cells = json.loads(path.read_text())["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells)
            if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def widget_cells(path: Path) -> list[int]:
    return [i for i, src in code_cells(path) if WIDGET_CALLS.search(src)]


def needed_cells(path: Path) -> list[int]:
    """The indices (among all cells, in order) of the cells ``path``'s widgets need."""
    cells = code_cells(path)
    names = [bound_and_read(src) for _, src in cells]
    need = {k for k, (_, src) in enumerate(cells) if WIDGET_CALLS.search(src)}
    frontier = sorted(need)
    while frontier:
        j = frontier.pop()
        for k in range(j):
            if k not in need and names[k][0] & names[j][1]:
                need.add(k)
                frontier.append(k)
    return [cells[k][0] for k in sorted(need)]


def widget_lessons(folder: Path) -> list[str]:
    """The lessons in ``folder`` whose code shows a widget."""
    return [p.name for p in sorted(folder.glob("*.ipynb")) if widget_cells(p)]
