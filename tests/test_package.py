"""The package as a whole: its import layers, its citations, its top-level attributes."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minir1"

# The layers, lowest first: a module may import from its own layer and the ones before it, never
# from a later one. Evaluation sits below training (which checks held-out accuracy as it trains) and
# below RL (which scores its stages); the planner (``plan``, arithmetic on configs) sits beside
# evaluation; ``dist`` (torch.distributed) sits below training.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("config", ("minir1.config", "minir1.profile", "minir1.utils", "minir1.weights")),
    ("model", ("minir1.model", "minir1.fp8", "minir1.hf")),
    ("data", ("minir1.data",)),
    ("infer", ("minir1.infer",)),
    ("eval", ("minir1.eval",)),
    ("plan", ("minir1.plan",)),
    ("dist", ("minir1.dist",)),
    ("train", ("minir1.train",)),
    ("rl", ("minir1.rl",)),
    ("chat", ("minir1.chat",)),
    ("serve", ("minir1.serve",)),
    ("viz", ("minir1.viz",)),
    ("report", ("minir1.report",)),
    ("cli", ("minir1.cli", "minir1.demo", "minir1.__main__")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, modules: set[str], name: str | None = None) -> set[str]:
    """Every minir1 module ``path`` (module ``name``) imports, at the top or inside a function."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "minir1"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([node.module] if node.module else []))
            if base.split(".")[0] != "minir1":
                continue
            # `from minir1.viz import moe` imports the module minir1.viz.moe
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = library_modules()
    return {m: imports_of(p, set(modules)) - {m} for m, p in modules.items()}


def layer_of(module: str) -> int | None:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_minir1_has_no_import_cycle():
    graph = {m: deps for m, deps in import_graph().items() if m != "minir1"}
    assert find_cycle(graph) is None


def test_every_module_belongs_to_a_layer():
    assert [m for m in library_modules() if m != "minir1" and layer_of(m) is None] == []


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a later layer (or of the root package) by a library module."""
    upward = []
    for module, deps in sorted(graph.items()):
        if module == "minir1":
            continue
        for dep in sorted(deps):
            if dep == "minir1":  # the root package imports the model: library code never imports it
                upward.append(f"{module} -> minir1 (import from the defining module instead)")
            elif layer_of(dep) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) -> {dep} "
                              f"({LAYERS[layer_of(dep)][0]})")
    return upward


def test_no_module_imports_from_a_higher_layer():
    assert upward_imports(import_graph()) == []


def test_the_layer_check_catches_a_deferred_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\n\n\ndef f():\n    from minir1.rl.trainer import GRPOTrainer\n")
    deps = imports_of(bad, {"minir1.rl.trainer"}, name="minir1.model.bad")
    assert deps == {"minir1.rl.trainer"}
    assert upward_imports({"minir1.model.bad": deps}) == [
        "minir1.model.bad (model) -> minir1.rl.trainer (rl)"]
    assert upward_imports({"minir1.rl.x": {"minir1"}}) != []


def test_subpackages_resolve_from_the_top_level_without_slowing_the_import():
    code = ("import sys, minir1\n"
            "eager = sorted(m for m in ('minir1.hf', 'minir1.rl', 'minir1.viz', 'minir1.fp8',"
            " 'minir1.train', 'matplotlib') if m in sys.modules)\n"
            "print(eager)\n"
            "print(minir1.hf.from_pretrained.__module__, minir1.fp8.quantize.__module__,"
            " minir1.rl.grpo.grpo_loss.__module__, minir1.rl.rewards.accuracy_reward.__module__,"
            " minir1.eval.sampled.sampled_eval.__module__)\n"
            "try:\n    minir1.no_such_thing\nexcept AttributeError as e:\n    print('error:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.splitlines()
    assert out[0] == "[]"  # nothing beyond the model core is imported by `import minir1`
    assert out[1].split() == ["minir1.hf", "minir1.fp8.quant", "minir1.rl.grpo",
                              "minir1.data.rewards", "minir1.eval.sampled"]
    assert "no_such_thing" in out[2]


def test_rl_rewards_stays_an_alias_of_the_data_rewards():
    from minir1.data import rewards
    from minir1.rl import rewards as alias

    for name in ("accuracy_reward", "format_reward", "extract_answer", "parse_integer"):
        assert getattr(alias, name) is getattr(rewards, name)
    assert alias.accuracy_reward("<think>x</think><answer>7</answer>", 7) == 1.0


# --------------------------------------------------------------------------- citations
# Documents that exist only outside the repository (the developers' notes): a citation must name the
# paper, section, equation or table instead. Spelled in pieces so this file does not match itself.
OUTSIDE = [r"facts(\s+sheet)?\s*§", r"facts\s+sheet", "teaching" + "-anchors", r"reference\s+notes",
           "shared/" + "reference", "deepseek-v3-r1" + "-facts", "r1-zero-miniature" + "-notes",
           "scale-out" + "-anchors"]


def text_files() -> list[Path]:
    files = [p for d in ("minir1", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    files += sorted((ROOT / "notebooks").glob("*.ipynb"))
    files += [ROOT / n for n in ("README.md", "Makefile", "pyproject.toml", "data/README.md")]
    return [p for p in files if p.exists() and p != Path(__file__).resolve()]


def readable_text(path: Path) -> str:
    if path.suffix != ".ipynb":
        return path.read_text()
    nb = json.loads(path.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"])  # outputs are what the code printed


def test_no_citation_points_outside_the_repository():
    pattern = re.compile("|".join(OUTSIDE), re.IGNORECASE)
    hits = [f"{p.relative_to(ROOT)}: {m.group(0)!r}" for p in text_files()
            for m in pattern.finditer(readable_text(p))]
    assert hits == []


def test_every_make_target_named_exists():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    named = {(p.relative_to(ROOT), t) for p in text_files()
             for t in re.findall(r"`make ([\w-]+)", readable_text(p))}
    assert sorted(str(p) + ": make " + t for p, t in named if t not in targets) == []


@pytest.mark.parametrize("package", ["data", "eval", "fp8", "infer", "model", "plan", "rl", "train",
                                     "viz"])
def test_every_package_docstring_maps_its_modules(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text())) or ""
    modules = [p.stem for p in (PACKAGE / package).glob("*.py") if p.stem != "__init__"]
    assert [m for m in modules if f"``{m}``" not in doc] == []


def test_no_library_module_imports_the_compiler():
    # torch._dynamo costs ~2 s of start-up in every lesson, test process and CLI call; it loads
    # when torch.compile is first used, not before (a decorator from torch.compiler once did it)
    code = ("import importlib, pkgutil, sys\n"
            "import minir1\n"
            "names = ['minir1'] + [m.name for m in pkgutil.walk_packages(minir1.__path__,"
            " 'minir1.') if not m.name.endswith('__main__')]\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            "    if 'torch._dynamo' in sys.modules:\n"
            "        print(name)\n"
            "        break\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    assert out == "", f"{out.strip()} imports torch._dynamo"
