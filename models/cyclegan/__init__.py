"""CycleGAN (Zhu et al. 2017) as a LightningModule: real→sim (G_A) and sim→real (G_B) with cycle losses."""

from models.cyclegan.module import CycleGANModule

__all__ = ["CycleGANModule"]
