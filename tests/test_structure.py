"""The code's shape: no import cycles, the engine's packages in layers, and the app on the torch-free side.

Read from the source with ``ast`` (function-level imports count too), so a cycle or a
layer crossed fails here before it shows up as an import error or a slow app start.
``python tests/test_structure.py`` prints the package graph these tests check.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hero_engine", "hero_tui")

# What each part of the engine may import from the rest of hero_engine (the shared modules are open to all):
# the algorithm and the models know nothing of sessions or storage; storage knows nothing of torch;
# the session builds on the algorithm, the models and storage; the drivers and the worker on the session.
SHARED = {"hero_engine.config", "hero_engine.errors", "hero_engine.protocol", "hero_engine.feedback_rules",
          "hero_engine.cpu_threads"}
LAYERS = {
    "hero_engine.feedback_rules": set(),
    "hero_engine.storage": set(),
    "hero_engine.reporting": {"hero_engine.storage"},
    "hero_engine.algorithm": set(),
    "hero_engine.models": set(),
    "hero_engine.evaluation": set(),
    "hero_engine.demo": {"hero_engine.models", "hero_engine.algorithm", "hero_engine.evaluation"},
    "hero_engine.session": {"hero_engine.algorithm", "hero_engine.models", "hero_engine.storage"},
    "hero_engine.drivers": {"hero_engine.session", "hero_engine.algorithm", "hero_engine.evaluation", "hero_engine.models",
                            "hero_engine.storage", "hero_engine.reporting"},
    "hero_engine.worker": {"hero_engine.session", "hero_engine.algorithm", "hero_engine.storage", "hero_engine.reporting"},
}
# The app's modules import only these parts of the engine at module level (the headless commands reach the rest lazily):
# the shared modules, storage, reporting (the report and the dataset), and the model-family check that refuses an unsupported model before anything starts.
TORCH_FREE = {*SHARED, "hero_engine.storage", "hero_engine.reporting", "hero_engine.models.model_configs",
              "hero_engine.models.download_watch", "hero_engine.models.weights_variant"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The hero modules ``path`` imports (a name imported from a package counts as its module when it is one)."""
    known = modules()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] in PACKAGES)
    return found


def part(module: str) -> str:
    """The engine part a module belongs to: its subpackage (hero_engine.session) or the top-level module itself."""
    pieces = module.split(".")
    if pieces[0] == "hero_engine" and len(pieces) > 2 or (len(pieces) == 2 and (ROOT / pieces[0] / pieces[1]).is_dir()):
        return ".".join(pieces[:2])
    return module


def graph(parts: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules().items():
        for target in imports(path):
            source, dest = (part(name), part(target)) if parts else (name, target)
            if source != dest:
                edges[source].add(dest)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back():
    """Guards against import cycles between hero's modules (a module that needs another's private helper, a
    package whose parts import each other round): each one makes import order matter and the layers blur."""
    assert cycles(graph(parts=False)) == []


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_engine_part_imports_only_the_parts_below_it(layer):
    """Guards the engine's layers (LAYERS): e.g. the algorithm never reaches into a session, storage never into torch code."""
    allowed = LAYERS[layer] | SHARED | {layer}
    crossing = {
        f"{name} imports {target}"
        for name, path in modules().items() if part(name) == layer
        for target in imports(path) if target.startswith("hero_engine") and part(target) not in allowed
    }
    assert not crossing, sorted(crossing)


def test_the_app_imports_only_the_torch_free_engine():
    """Guards the boundary: the app's modules import only the engine's torch-free parts at module level (TORCH_FREE)."""
    crossing = {
        f"{name} imports {target}"
        for name, path in modules().items() if name.startswith("hero_tui")
        for target in imports(path, top_level_only=True)
        if target.startswith("hero_engine") and part(target) not in TORCH_FREE and target not in TORCH_FREE
    }
    assert not crossing, sorted(crossing)


def test_the_torch_free_parts_load_without_torch():
    """Guards what TORCH_FREE promises: importing the app, the store and the feedback rules loads neither torch nor diffusers."""
    code = ("import sys, hero_tui.app, hero_tui.cli, hero_engine.feedback_rules, hero_engine.protocol, "
            "hero_engine.storage.store, hero_engine.storage.labels, hero_engine.storage.listing, hero_engine.storage.lock, "
            "hero_engine.reporting.html_report, hero_engine.reporting.dataset, hero_engine.reporting.plots, "
            "hero_engine.models.model_configs, hero_engine.models.download_watch; "
            "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


if __name__ == "__main__":
    for source, targets in sorted(graph(parts=True).items()):
        if source.startswith("hero_engine"):
            print(f"{source} -> {', '.join(sorted(t for t in targets if t.startswith('hero_engine')))}")
