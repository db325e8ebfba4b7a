"""The docstring examples of the libraries run (those marked ``+SKIP`` need data or a trained model)."""

from __future__ import annotations

import doctest
import importlib

import pytest
from conftest import REPO

PACKAGES = ("translate", "models", "datasets", "workflows")
MODULES = sorted(
    ".".join(p.relative_to(REPO).with_suffix("").parts)
    for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if p.name != "__main__.py"
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name.removesuffix(".__init__"))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             report=False, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (run python -m doctest -v)"
