"""The package's layout: the paper at the top of hat_min, everything else one level down, imports only downwards.

Read from the source (every import statement, also those inside functions), so that a lazy import cannot hide
an upward dependency or a cycle.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hat_min"
PAPER = ("config", "encoders", "scan", "model", "loss", "metrics")  # in reading order
# Subpackages from the bottom up: each may import the paper and the ones before it, never one after it.
SUBPACKAGES = ("fast", "weights", "evaluation", "training", "tutorial")
ENTRY_POINTS = ("__init__", "__main__")  # the package's front door and its command line import anything


def modules(folder: Path = PACKAGE, package: str = "hat_min") -> dict[str, Path]:
    """Every module of a package by dotted name (a package's __init__ under the package's name)."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that the module ``name`` imports, relative imports resolved."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{stem}.{alias.name}" for alias in node.names]  # a submodule, or a name of ``stem``
        else:
            continue
        for target in targets:
            while target and target not in known:  # hat_min.scan.scan_score -> hat_min.scan
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def unit(name: str) -> str:
    """A module's place in the layout: a paper module's own name, or its subpackage's."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_the_top_level_is_the_paper_and_the_subpackages():
    entries = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert entries == {*PAPER, *SUBPACKAGES, *ENTRY_POINTS}, sorted(entries)
    assert all((PACKAGE / sub / "__init__.py").is_file() for sub in SUBPACKAGES)


def test_the_paper_imports_no_subpackage(graph):
    for module in PAPER:
        outside = sorted(m for m in graph[f"hat_min.{module}"] if m.startswith("hat_min.") and unit(m) not in PAPER)
        assert not outside, f"hat_min/{module}.py imports {outside}: the paper's modules import only each other"


def test_subpackages_import_only_downwards(graph):
    for name, targets in graph.items():
        if unit(name) not in SUBPACKAGES:
            continue
        rank = SUBPACKAGES.index(unit(name))
        for target in targets:
            if not target.startswith("hat_min.") or unit(target) in PAPER:
                continue
            assert unit(target) in SUBPACKAGES[: rank + 1], \
                f"{name} imports {target}: {unit(name)} may import the paper and {SUBPACKAGES[:rank]}, not above"


def test_no_import_cycles(graph):
    done, stack = set(), []

    def visit(name: str) -> None:
        if name in stack:
            cycle = stack[stack.index(name):] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        stack.append(name)
        for target in sorted(graph.get(name, ())):
            visit(target)
        stack.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_checks_see_lazy_and_relative_imports(tmp_path):
    """The test's own reader: an import inside a function counts, and relative imports resolve."""
    pkg = tmp_path / "hat_min"
    (pkg / "training").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "scan.py").write_text("def f():\n    from .training import loop\n")
    (pkg / "training" / "__init__.py").write_text("")
    (pkg / "training" / "loop.py").write_text("from ..scan import f\n")
    found = modules(pkg)
    assert imports("hat_min.scan", found["hat_min.scan"], set(found)) == {"hat_min.training.loop"}
    assert imports("hat_min.training.loop", found["hat_min.training.loop"], set(found)) == {"hat_min.scan"}


def test_data_prep_never_imports_hat_min():
    for name, path in modules(ROOT / "data_prep", "data_prep").items():
        assert not any(t.startswith("hat_min") for t in imports(name, path, {"hat_min"})), f"{name} imports hat_min"
