"""Tests for models/complexity.py: the official networks' parameter and MAC figures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.complexity import count_macs, count_macs_by_module, count_parameters
from models.networks import NLayerDiscriminator, ResnetGenerator, edge_generator_kwargs


@pytest.fixture(scope="module")
def nets() -> dict[str, nn.Module]:
    with torch.device("meta"):  # shapes only: counting costs no compute
        return {
            "cyclegan": ResnetGenerator(),
            "cut": ResnetGenerator(antialias=True, antialias_up=True),
            "d": NLayerDiscriminator(),
            "edge": ResnetGenerator(**edge_generator_kwargs()),
        }


def test_design_figures(nets):
    assert count_parameters(nets["cyclegan"]) == 11_378_179
    assert count_parameters(nets["d"]) == 2_764_737
    assert round(count_macs(nets["cyclegan"], (1, 3, 256, 256)) / 1e9, 1) == 49.6
    assert round(count_macs(nets["cyclegan"], (1, 3, 224, 224)) / 1e9, 1) == 37.9
    assert round(count_macs(nets["cut"], (1, 3, 256, 256)) / 1e9, 1) == 64.1
    assert count_macs(nets["edge"], (1, 3, 224, 224)) <= 3e9


def test_exact_counts(nets):
    assert count_macs(nets["cyclegan"], (1, 3, 256, 256)) == 49_551_507_456
    assert count_macs(nets["cut"], (1, 3, 256, 256)) == 64_127_787_008
    assert count_macs(nets["edge"], (1, 3, 224, 224)) == 225_189_888
    assert count_macs(nets["cyclegan"], (2, 3, 256, 256)) == 2 * 49_551_507_456


def test_blur_layers_are_counted(nets):
    table = count_macs_by_module(nets["cut"], (1, 3, 256, 256))
    # BlurDownsample at 7 (128 ch -> 128x128) and BlurUpsample at 21 (256 ch, 64x64 padded)
    assert table["model.7"] == 128 * 128 * 128 * 9
    assert table["model.21"] == 256 * 66 * 66 * 16
    blur = sum(v for k, v in table.items() if k in {"model.7", "model.11", "model.21", "model.25"})
    assert sum(table.values()) - blur == 64_047_022_080


def test_layer_conventions():
    lin = nn.Sequential(nn.Linear(10, 5))
    assert count_macs(lin, (4, 10)) == 4 * 10 * 5
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_macs(dw, (1, 8, 6, 6)) == 8 * 6 * 6 * 9
    up = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
    assert count_macs(up, (1, 4, 5, 5)) == 4 * 5 * 5 * 2 * 9


def test_mode_restored_and_parameter_options():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout())
    net.train()
    count_macs(net, (1, 3, 8, 8))
    assert net.training
    net[0].bias.requires_grad_(False)
    assert count_parameters(net) == 3 * 4 * 9 + 4
    assert count_parameters(net, trainable_only=True) == 3 * 4 * 9
    g = ResnetGenerator(ngf=4, n_blocks=1, antialias=True)
    assert count_parameters(g) == count_parameters(ResnetGenerator(ngf=4, n_blocks=1))
