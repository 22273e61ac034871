"""The package layers: imports run one way, no import cycle, light imports stay light.

Read from the source (every import a module runs, at the top or inside a
function; ``if TYPE_CHECKING:`` imports are left out) and checked in fresh
interpreters (what ``import X`` really loads).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "streamlib"

# Which layers each layer may import at run time (``errors`` is layer 0, open to all).
BASE = {"errors"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "clocks": BASE,
    "media": BASE,
    "core": BASE | {"clocks", "media"},
    "gpu": BASE | {"clocks", "media", "core"},
    "net": BASE | {"clocks", "media", "core"},
    "observe": BASE | {"clocks", "core", "net"},
    "runtime": BASE | {"clocks", "media", "core", "gpu", "observe"},
    "actors": BASE | {"clocks", "media", "core", "gpu", "net", "observe", "runtime"},
    "control": BASE | {"clocks", "media", "core", "gpu", "net", "observe", "runtime", "actors"},
    "testing": BASE | {"clocks", "core", "runtime"},
    "__main__": {"control"},
}
HEAVY_MEDIA = ("av", "skia", "moderngl", "glfw", "http.server", "numba", "cupy", "cuda")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _runtime_imports(module: str) -> set[str]:
    """The streamlib modules ``module`` imports when it runs (not type-checking imports)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def target(node: ast.ImportFrom) -> list[str]:
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        return [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom):
                found.update(m for m in target(child) if m in MODULES)
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name in MODULES)
            else:
                visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(module)
    return found


GRAPH = {m: _runtime_imports(m) for m in MODULES}


def test_every_module_sits_in_a_known_layer() -> None:
    unknown = sorted(m for m in MODULES if m != "streamlib" and _layer(m) not in ALLOWED)
    assert unknown == [], f"modules outside the layer table of this test: {unknown}"


def test_imports_run_one_way() -> None:
    wrong = []
    for module, imported in sorted(GRAPH.items()):
        if module == "streamlib":
            continue  # the public face may import from every layer
        layer = _layer(module)
        for other in sorted(imported):
            if other == "streamlib":
                wrong.append(f"{module} imports the public face `streamlib`; import from the package")
                continue
            if _layer(other) != layer and _layer(other) not in ALLOWED[layer]:
                wrong.append(f"{module} ({layer}) imports {other} ({_layer(other)})")
    assert wrong == [], "imports against the layering:\n" + "\n".join(wrong)


def test_no_import_cycle() -> None:
    # Tarjan's strongly connected components over the run-time import graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(GRAPH):
        if module not in index:
            connect(module)
    assert cycles == [], f"import cycles: {cycles}"


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("package", ["clocks", "core"])
def test_lower_layers_load_nothing_above_them(package: str) -> None:
    loaded = _loaded_after(f"import streamlib.{package}")
    allowed = ALLOWED[package] | {package}
    above = sorted(m for m in loaded if m.startswith("streamlib.") and _layer(m) not in allowed)
    assert above == []


def test_public_face_loads_no_media_library() -> None:
    # Every public name resolved (every actor class defined); PyAV, skia, GL, HTTP servers
    # load when an actor or server that needs them is first used.
    # torch itself imports cuda-python (torch.cuda._utils -> cuda.bindings): not ours to defer.
    loaded = _loaded_after("from streamlib import *") - _loaded_after("import torch")
    heavy = sorted(m for m in loaded if m in HEAVY_MEDIA or m.startswith(tuple(f"{h}." for h in HEAVY_MEDIA)))
    assert heavy == []
