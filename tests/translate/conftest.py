"""Fixtures shared by the runtime and fusion tests: a tiny generator exported with a fisheye
correction and BGR robot input, and BGR frames for it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from models.networks import ResnetGenerator
from translate.camera import CameraCorrection, CameraModel
from translate.export import export_generator


@pytest.fixture(scope="module")
def gen() -> torch.nn.Module:
    torch.manual_seed(0)
    return ResnetGenerator(ngf=8, n_blocks=2).eval()


@pytest.fixture(scope="module")
def corr() -> CameraCorrection:
    real = CameraModel.from_fov(24, 20, 150.0, model="fisheye", dist=(0.05, -0.01, 0.002, 0.0))
    return CameraCorrection(real, CameraModel.from_fov(16, 16, 100.0))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, gen: torch.nn.Module,
             corr: CameraCorrection) -> dict[str, Any]:
    """Core + robot graphs of a tiny generator with a fisheye correction and BGR robot input."""
    out = tmp_path_factory.mktemp("rt_export")
    return export_generator(gen, out, camera=corr, input_channel_order="BGR")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)  # BGR
