"""The import graphs of the core and the training package: no cycles; the core imports nothing built on it.

Read from the source with ``ast``: every ``import`` statement counts, at module level or inside a
function (lazy imports), under ``if TYPE_CHECKING:`` too, so a cycle cannot hide behind an import
moved into a function body.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import segmentai_core
import segmentai_train

ROOT = Path(segmentai_core.__file__).parent
TRAINING = Path(segmentai_train.__file__).parent
PACKAGE = "segmentai_core"
ABOVE = ("segmentai_mrml", "segmentai_web", "segmentai_train", "slicer")


def _modules(root: Path = ROOT) -> Dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, root: Path = ROOT) -> List[str]:
    """Every module named by an import in the file (absolute names; ``from x import y`` gives x.y
    when that is a module, else x)."""
    modules = _modules(root)
    is_package = path.name == "__init__.py"
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                names.append(sub if sub in modules else target)
    return names


def _graph(root: Path = ROOT) -> Dict[str, Set[str]]:
    modules = _modules(root)
    return {name: {t for t in _imports(name, path, root) if t in modules and t != name}
            for name, path in modules.items()}


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle (as a path) per strongly connected component with more than one module."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for component in components:  # a readable path a -> b -> ... -> a inside the component
        members, start = set(component), component[0]
        path, seen = [start], {start}
        while True:
            nxt = sorted(t for t in graph[path[-1]] if t in members)
            step = next((t for t in nxt if t == start and len(path) > 1), None) or next(
                (t for t in nxt if t not in seen), None)
            if step is None or step == start:
                cycles.append(path + [start])
                break
            path.append(step)
            seen.add(step)
    return cycles


def test_the_walker_sees_lazy_imports_and_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    edges = _graph()
    # nnunet_pipeline is imported inside a function of the engine: the walker sees it.
    assert f"{PACKAGE}.inference.nnunet_pipeline" in edges[f"{PACKAGE}.inference.engine"]


def test_the_core_import_graph_has_no_cycle():
    assert _cycles(_graph()) == []


def test_the_training_package_import_graph_has_no_cycle():
    assert _cycles(_graph(TRAINING)) == []


def test_the_core_imports_nothing_built_on_it():
    """The MRML layer, the web app and the training package build on the core, never the reverse
    (``segmentai web`` is added by the web app itself: segmentai_web/command.py)."""
    offenders = []
    for name, path in _modules().items():
        for target in _imports(name, path):
            if target.split(".")[0] in ABOVE:
                offenders.append(f"{name} imports {target}")
    assert offenders == []
