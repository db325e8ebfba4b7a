"""Fixtures shared by the workflow tests: a tiny exported ONNX translator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def onnx_translator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ResNet generator exported at 48 px (core + robot graphs)."""
    from models.networks import ResnetGenerator
    from translate.export import export_generator

    out = tmp_path_factory.mktemp("export48") / "tiny" / "export"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = ResnetGenerator(ngf=4, n_blocks=1).eval()
    export_generator(g, out, image_size=48)
    return out / "translator.onnx"
