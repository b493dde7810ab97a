"""The exploration package keeps the layout rules (issue 12 item 6): it drives any backend, so it imports no
specific backend (only the protocol and the loader), no test framework and no Hypothesis, and every import
is at the top of its module (none hidden in a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vfio_mig_cts" / "exploration"
FORBIDDEN = ("vfio_mig_cts.backends.mock", "vfio_mig_cts.backends.vfio", "hypothesis", "fixtures", "pytest")


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, node.module or ""))
    return out


def violations(source: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The imports of a module that generic code must not make, and those inside a function."""
    tree = ast.parse(source)
    forbidden = [(line, name) for line, name in _imports(tree)
                 if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    hidden = [(line, name) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
              for line, name in _imports(fn)]
    return forbidden, hidden


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_generic_imports_at_module_level(path: Path) -> None:
    forbidden, hidden = violations(path.read_text())
    assert not forbidden, f"{path.name} imports what generic code must not: {forbidden}"
    assert not hidden, f"{path.name} imports inside a function: {hidden}"


def test_the_check_sees_what_it_forbids() -> None:
    """A clean package passes a check that can fail: both kinds of import are seen."""
    bad = "import hypothesis\n\n\ndef f():\n    from vfio_mig_cts.backends.mock.backend import MockBackend\n"
    assert violations(bad) == ([(1, "hypothesis"), (5, "vfio_mig_cts.backends.mock.backend")],
                               [(5, "vfio_mig_cts.backends.mock.backend")])
