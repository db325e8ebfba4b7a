"""Datasets: folder, paired and recording-session datasets, augmentation and the LightningDataModule."""
