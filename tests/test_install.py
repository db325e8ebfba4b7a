"""The robot's install is light: the base requirements hold no torch, and the robot modules run on them alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

import translate

HEAVY = {"torch", "torchvision", "lightning", "hydra-core", "omegaconf", "kornia", "albumentations",
         "onnx", "onnxscript", "lpips", "matplotlib", "tensorboard", "rich", "opencv-python-headless"}
ROBOT_MODULES = [f"translate.{m}" for m in (*translate.CORE, *translate.ROBOT)]


def _name(req: str) -> str:
    import re

    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].strip().lower()


def test_base_requirements_are_the_robot_set() -> None:
    from importlib.metadata import requires

    reqs = requires("sim2real-translate") or []  # as installed from pyproject.toml
    base = {_name(r) for r in reqs if "extra ==" not in r}
    assert base == {"numpy", "pillow", "pyyaml", "onnxruntime"}
    train = {_name(r) for r in reqs if "extra == \"train\"" in r}
    assert {"torch", "lightning", "hydra-core"} <= train


def test_robot_modules_import_with_only_the_base_set_installed(tmp_path: Path) -> None:
    """Every third-party import outside the base requirements (and what they pull in) is blocked."""
    code = f"""
import importlib, importlib.metadata as md, re, sys
allowed = {{"translate"}}
todo = ["numpy", "pillow", "pyyaml", "onnxruntime"]
seen = set()
while todo:
    dist = todo.pop()
    if dist in seen:
        continue
    seen.add(dist)
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        continue
    top = (d.read_text("top_level.txt") or "").split()
    allowed |= set(top) or {{dist.replace("-", "_")}}
    allowed |= {{f.parts[0].removesuffix(".py") for f in (d.files or []) if f.parts and not f.parts[0].endswith(".dist-info")}}
    for r in d.requires or []:
        if "extra ==" not in r:
            todo.append(re.split(r"[<>=!~\\[; (]", r, maxsplit=1)[0].strip().lower())
class Block:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top not in sys.stdlib_module_names and top not in allowed and not top.startswith("_"):
            raise ImportError(f"{{name}} is not in the robot's install")
sys.meta_path.insert(0, Block())
for m in {ROBOT_MODULES!r}:
    importlib.import_module(m)
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_pip_resolves_the_base_install_without_torch(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
                        "--report", str(report), str(REPO)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.skip(f"pip could not resolve here (no package index?): {r.stderr.strip()[-300:]}")
    names = {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}
    assert {"numpy", "onnxruntime", "pillow", "pyyaml"} <= names
    assert not names & HEAVY, names & HEAVY


def test_the_layers_cover_the_package_and_import_only_downwards() -> None:
    """CORE imports no ROBOT or TOOLS module, ROBOT no TOOLS module, at import time (module level)."""
    import ast

    layers = {m: i for i, group in enumerate((translate.CORE, translate.ROBOT, translate.TOOLS))
              for m in group}
    files = {p.stem for p in (REPO / "translate").glob("*.py") if p.stem != "__init__"}
    assert files == set(layers), f"modules in no layer: {sorted(files - set(layers))}"
    for name, level in layers.items():
        tree = ast.parse((REPO / "translate" / f"{name}.py").read_text(encoding="utf-8"))
        for node in tree.body:  # top-level statements: what importing the module runs
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("translate."):
                dep = str(node.module).split(".")[1]
                assert layers[dep] <= level, f"translate.{name} imports translate.{dep} (a later layer)"
