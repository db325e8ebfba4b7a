"""CUT (Park et al. 2020) and FastCUT as a LightningModule: one-sided real→sim with PatchNCE."""

from models.cut.module import CUTModule

__all__ = ["CUTModule"]
