"""The import graph: the entry points are siblings over the libraries, and translate/ imports no other project package."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

ENTRY_POINTS = ("train_translate", "eval_policy_on_translated", "eval_closed_loop", "export_translator",
                "record_real")
LIBRARIES = ("translate", "models", "datasets", "workflows")


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def test_entry_points_import_only_libraries() -> None:
    for name in ENTRY_POINTS:
        imported = _imports(REPO / f"{name}.py")
        assert not imported & set(ENTRY_POINTS), f"{name}.py imports {imported & set(ENTRY_POINTS)}"


def test_libraries_import_no_entry_point_and_translate_no_other_package() -> None:
    for lib in LIBRARIES:
        for path in (REPO / lib).rglob("*.py"):
            imported = _imports(path)
            assert not imported & set(ENTRY_POINTS), f"{path} imports an entry point"
            if lib == "translate":
                assert not imported & {"models", "datasets", "workflows"}, f"{path}: {imported}"
