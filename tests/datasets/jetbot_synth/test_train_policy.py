"""Tests for datasets.jetbot_synth.train_policy: behaviour cloning and the turn-agreement metric."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from datasets.jetbot_synth.train_policy import train_bc, turn_agreement


def _blob_task(n: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A red disc on grey; its x position sets the wheel commands (turn toward it)."""
    g = torch.Generator().manual_seed(seed)
    r = 5
    cx = torch.randint(r, size - r, (n,), generator=g)
    cy = torch.randint(r, size - r, (n,), generator=g)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2 <= r * r
    frames = torch.full((n, size, size, 3), 60, dtype=torch.uint8)
    frames[disc] = torch.tensor([230, 30, 30], dtype=torch.uint8)
    bearing = (cx.float() - (size - 1) / 2) / ((size - 1) / 2)  # -1 left .. +1 right
    actions = torch.stack([0.5 + 0.5 * bearing, 0.5 - 0.5 * bearing], dim=1)
    return frames.numpy(), actions.numpy()


def test_train_bc_learns_tiny_task() -> None:
    frames, actions = _blob_task(256)
    net, metrics = train_bc(frames, actions, epochs=8, batch_size=16, lr=1e-3, val_fraction=0.25,
                            seed=0, progress=False)
    assert metrics["num_train"] == 192 and metrics["num_val"] == 64
    assert metrics["val/turn_agreement"] >= 0.85
    assert metrics["val/action_mae"] < 0.12
    assert len(metrics["history"]) == 8
    assert not net.training
    # The returned net's own prediction reproduces the reported agreement.
    with torch.no_grad():
        pred = net(torch.from_numpy(frames).float())[0].numpy()
    assert turn_agreement(pred, actions) >= 0.85


def test_train_bc_is_deterministic_by_seed() -> None:
    frames, actions = _blob_task(48)
    kw: dict[str, Any] = {"epochs": 1, "batch_size": 16, "seed": 3, "progress": False}
    a, ma = train_bc(frames, actions, **kw)
    b, mb = train_bc(frames, actions, **kw)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert ma["val/action_mae"] == mb["val/action_mae"]


def test_train_bc_checks_inputs() -> None:
    frames, actions = _blob_task(8)
    with pytest.raises(ValueError, match=r"frames must be RGB uint8"):
        train_bc(frames.astype(np.float32), actions)
    with pytest.raises(ValueError, match=r"actions must be finite with shape \(8, 2\)"):
        train_bc(frames, actions[:4])


def test_turn_agreement() -> None:
    target = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.52, 0.5]], np.float32)
    pred = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.31], [0.5, 0.5]], np.float32)
    assert turn_agreement(pred, target) == 0.75  # right, (wrong), straight, straight (dead zone)
