"""Translator networks, losses and the CycleGAN / CUT LightningModules."""
