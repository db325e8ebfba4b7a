"""Datasets: folder, paired and recording-session datasets, augmentation and the LightningDataModule."""

import os

# albumentations asks PyPI for a newer version on import: no network calls at run time (set here,
# before any module of the package imports it)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
