"""Lightning DDP (2 gloo ranks × batch 1) computes the gradients of 1 process × batch 2 (issue 7)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "scripts" / "ddp_first_step_grads.py"


@pytest.mark.parametrize("model", ["cut", "cyclegan"])
def test_ddp_first_step_gradients_equal_the_global_batch(tmp_path: Path, model: str) -> None:
    prefix = str(tmp_path / model)
    for mode in ("ddp", "single"):
        p = subprocess.run([sys.executable, str(SCRIPT), model, mode, prefix], capture_output=True,
                           text=True, timeout=300, cwd=tmp_path)
        assert p.returncode == 0, p.stderr[-3000:]
    single = torch.load(f"{prefix}_single_0.pt", weights_only=True)
    ranks = [torch.load(f"{prefix}_ddp_{r}.pt", weights_only=True) for r in (0, 1)]
    assert single and ranks[0].keys() == single.keys() == ranks[1].keys()
    # one absolute scale for all: conv biases before an instance norm have ~0 true gradient
    scale = max(float(g.abs().max()) for g in single.values())
    for name, ref in single.items():
        for r, grads in enumerate(ranks):
            torch.testing.assert_close(grads[name], ref, atol=1e-6 * scale, rtol=1e-4,
                                       msg=lambda m, n=name, r=r: f"rank {r} {n}: {m}")
