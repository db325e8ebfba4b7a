"""Tests for models.base: the translator modules name their deployable network for the export."""

from __future__ import annotations

import torch

from models.cut.module import CUTModule
from models.cyclegan.module import CycleGANModule


def test_deployable_generator_is_what_forward_runs() -> None:
    tiny = {"ngf": 8, "n_blocks": 1}
    cut = CUTModule(generator=tiny, discriminator={"ndf": 8}, num_patches=16).eval()
    cyc = CycleGANModule(generator=tiny, discriminator={"ndf": 8}).eval()
    assert cut.deployable_generator() is cut.netG
    assert cyc.deployable_generator() is cyc.netG_A
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        for m in (cut, cyc):
            assert torch.equal(m.deployable_generator()(x), m(x))
