"""Imports point one way: features <- models <- {training, serving}; the packages never import
the command line's own modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAY_IMPORT = {
    "features": {"features"},
    "models": {"features", "models"},
    "training": {"features", "models", "training"},
    "serving": {"features", "models", "serving"},
}


def _imported(path: Path) -> set[str]:
    """The kam modules a file imports, by their first part after ``kam.`` (``kam`` alone: the
    command line's modules)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "kam":
                found.add(parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT else "kam")
    return found


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imported(path) - MAY_IMPORT[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {file: layers for file, layers in wrong.items() if layers} == {}
