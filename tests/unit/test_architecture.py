"""The shape of the code, enforced: imports point one way, and nothing imports back.

Inside `ledger/` the layers are the tree's first level: `domain` <- `engine` <-
`usecases` <- `adapters` and `entrypoints` (and the demo, which records through the
use cases). `ledger` never imports `api` or `projections`, which build on it, and no
module imports another that imports it back, even through a function-local import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "api", "projections")

# what each part of the project may import from it (besides itself)
ALLOWED: dict[str, set[str]] = {
    # the auditors' one-file verifier imports nothing of the project; the proof formats
    # it defines are used from the domain outwards
    "ledger.verifier": set(),
    "ledger.domain": {"ledger.verifier"},
    "ledger.engine": {"ledger.domain"},
    "ledger.usecases": {"ledger.domain", "ledger.engine", "ledger.verifier"},
    "ledger.adapters": {"ledger.domain", "ledger.engine", "ledger.usecases", "ledger.verifier"},
    "ledger.demo": {"ledger.domain", "ledger.usecases"},
    "ledger.entrypoints": {"ledger.domain", "ledger.engine", "ledger.usecases", "ledger.adapters"}
    | {"ledger.verifier"},
    "projections": {"ledger.domain", "ledger.engine", "ledger.usecases", "ledger.adapters"}
    | {"ledger.entrypoints", "ledger.verifier"},
    "api": {"ledger", "projections"},
}


def _module(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path) -> dict[str, set[str]]:
    """Every project module under `root`, with the project modules it imports anywhere
    in its body (function-local and TYPE_CHECKING imports included)."""
    files = [p for package in PACKAGES for p in (root / package).rglob("*.py")]
    modules = {_module(f, root) for f in files}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for f in files:
        me = _module(f, root)
        package = me if f.name == "__init__.py" else me.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets |= {f"{base}.{a.name}" for a in node.names}
                if base in modules:  # not a directory without __init__.py (`ledger.entrypoints`)
                    targets.add(base)
        graph[me] = {r for t in targets if (r := resolve(t)) and r != me}
    return graph


def _part(module: str) -> str:
    """The layer a module belongs to: `ledger.<layer>`, or its top package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "ledger" and len(parts) > 1 else parts[0]


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Each import against the direction of the layers."""
    found = []
    for module, targets in sorted(graph.items()):
        part = _part(module)
        allowed = ALLOWED.get(part)
        for target in sorted(targets):
            there = _part(target)
            if there == part or allowed is None:
                continue
            if not any(there == a or there.startswith(a + ".") for a in allowed):
                found.append(f"{module} imports {target}")
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules that import each other, directly or around a circle (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_sits_in_a_known_layer() -> None:
    graph = imports(ROOT)
    strays = sorted(m for m in graph if m.count(".") and _part(m) not in ALLOWED)
    assert strays == [], "put these under one of the layers of ALLOWED"


def test_imports_point_one_way() -> None:
    assert upward(imports(ROOT)) == []


def test_no_module_imports_another_that_imports_it_back() -> None:
    assert circles(imports(ROOT)) == []


VIOLATIONS = {
    # the core importing its consumer, even only inside a function
    "ledger/domain/talents.py": "def f() -> None:\n    from projections import worker\n",
    # a use case reaching for an adapter
    "ledger/usecases/grants.py": "from ledger.adapters.postgres import statements\n",
    # two modules importing each other
    "projections/a.py": "from projections import b\n",
    "projections/b.py": "import projections.a\n",
}


@pytest.fixture
def project_with_violations(tmp_path: Path) -> Path:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for layer in ("domain", "usecases", "adapters"):
        (tmp_path / "ledger" / layer).mkdir()
        (tmp_path / "ledger" / layer / "__init__.py").write_text("")
    (tmp_path / "projections" / "worker.py").write_text("")
    (tmp_path / "ledger" / "adapters" / "postgres.py").write_text("")
    for path, text in VIOLATIONS.items():
        (tmp_path / path).write_text(text)
    return tmp_path


def test_the_checks_find_each_kind_of_violation(project_with_violations: Path) -> None:
    graph = imports(project_with_violations)
    assert upward(graph) == [
        "ledger.domain.talents imports projections",
        "ledger.domain.talents imports projections.worker",
        "ledger.usecases.grants imports ledger.adapters.postgres",
    ]
    assert circles(graph) == [["projections.a", "projections.b"]]
