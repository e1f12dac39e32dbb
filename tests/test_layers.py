"""The layering rules of DESIGN.md §2, checked on every run.

Each import-linter contract in ``[tool.importlinter]`` of pyproject.toml
is one test case, run by ``lint-imports`` under this interpreter;
a broken contract fails with import-linter's own report (the offending
import chains).  Two rules import-linter has no contract for are
checked here directly: no import cycle between modules (a package face
included), and no private name imported across modules.  The cores are
also imported for real in a fresh interpreter, which sees what the import
graph does not: a package's ``__init__`` runs before any of its modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
# The `lint-imports` command, run by this interpreter wherever its script is.
LINT_IMPORTS = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                "sys.exit(lint_imports_command())"]

CONTRACTS = {
    contract["id"]: contract["name"]
    for contract in tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
}



class ContractBroken(AssertionError):
    """A contract is broken; its message is import-linter's report."""


@pytest.mark.parametrize("contract_id", list(CONTRACTS))
def test_contract(contract_id: str) -> None:
    result = subprocess.run(
        [*LINT_IMPORTS, "--no-cache", "--no-logo", "--contract", contract_id, str(PYPROJECT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = result.stdout + result.stderr
    if result.returncode == 0:
        return
    if "BROKEN" in report:
        raise ContractBroken(f"{CONTRACTS[contract_id]}\n\n{report}")
    pytest.fail(f"lint-imports could not check {contract_id!r} (exit {result.returncode}):\n{report}")


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("realtime", include_external_packages=False, cache_dir=None)


def test_no_module_import_cycle() -> None:
    """No module reaches itself through its imports.

    The "acyclic" contract compares siblings, so it does not see a module
    and the face of its own package importing each other; this does.
    """
    graph = _graph()
    components: list[tuple[set[str], str]] = []  # modules of a cycle, one example
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if not back:
                continue
            cycle = (importer, *back)
            joined = [c for c in components if c[0] & set(cycle)]
            members = set(cycle).union(*(c[0] for c in joined))
            example = joined[0][1] if joined else " -> ".join(cycle)
            components = [c for c in components if c not in joined] + [(members, example)]
    report = [f"{', '.join(sorted(m))}\n    e.g. {example}" for m, example in components]
    assert not report, "modules that import each other:\n" + "\n".join(report)


def _private_imports(path: Path, module: str) -> list[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")
            source = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source.split(".")[0] != "realtime":
            continue
        for alias in node.names:
            name = alias.name
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {source} import {name}")
    return found


def test_no_private_name_imported_across_modules() -> None:
    """``from realtime.x import _name`` couples a module to another's insides.

    Dunders (``__version__``) are public by convention and allowed.
    """
    found = []
    for path in sorted((ROOT / "realtime").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found += _private_imports(path, module)
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_no_test_module_imports_another() -> None:
    """Tests share code through tests/helpers/ only: a test module or a
    conftest is never imported (conftest modules hold fixtures only)."""
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "tests" and name != "tests.helpers" and not name.startswith("tests.helpers."):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not found, "import shared test code from tests.helpers instead:\n" + "\n".join(found)


ASYNC_IO = ("trio", "anyio", "coredis", "httpx", "trio_websocket")
CORES = ("config", "http", "tokens", "protocol", "hub", "session", "oauth", "oauth1", "api", "store")
# At run time, importing ``realtime.store.records`` runs the package face
# ``realtime/store/__init__.py`` first, which import-linter's graph does not
# count as an import; so this also catches a face that imports the async edge.
PROBE = """
import importlib, pkgutil, sys
package, skip = sys.argv[1], set(sys.argv[2:])
face = importlib.import_module(package)
for info in pkgutil.walk_packages(face.__path__, package + "."):
    if info.name not in skip and not any(info.name.startswith(s + ".") for s in skip):
        importlib.import_module(info.name)
print(" ".join(sorted(m for m in %r if m in sys.modules)))
""" % (ASYNC_IO,)


@pytest.mark.parametrize("core", CORES)
def test_core_runs_without_async_io(core: str) -> None:
    """Import a core package and all its modules (the store without its async
    edge) in a fresh interpreter: none of trio, anyio, coredis, httpx,
    trio_websocket may be loaded."""
    skip = ["realtime.store.aio"] if core == "store" else []
    result = subprocess.run([sys.executable, "-c", PROBE, f"realtime.{core}", *skip],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    if result.returncode:
        pytest.fail(f"could not import realtime.{core}:\n{result.stderr}")
    loaded = result.stdout.split()
    assert not loaded, f"importing realtime.{core} loads {', '.join(loaded)}"
