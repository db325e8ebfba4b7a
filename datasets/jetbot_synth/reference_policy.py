"""Build (once) and cache jetbot_synth's frozen reference sim policy: BC on sim renders → rl_games ONNX."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.jetbot_synth.generate import render_arrays
from datasets.jetbot_synth.policy_net import export_rl_games_onnx
from datasets.jetbot_synth.train_policy import train_bc
from datasets.jetbot_synth.world import WorldConfig
from translate.fsutil import atomic_write_json

__all__ = ["POLICY_RECIPE_VERSION", "ensure_policy", "policy_params"]

#: Bump when the same parameters would train a different policy.
POLICY_RECIPE_VERSION = 2
# Seeds the BC training states apart from the dataset's splits (which use SeedSequence(seed)).
_POLICY_SEED_OFFSET = 7_919


def policy_params(
    *, size: int, seed: int, n_frames: int, epochs: int, randomize: float, world: dict[str, Any]
) -> dict[str, Any]:
    """The parameters a cached policy must match to be reused."""
    return {
        "recipe_version": POLICY_RECIPE_VERSION,
        "size": size,
        "seed": seed,
        "n_frames": n_frames,
        "epochs": epochs,
        "randomize": randomize,
        "world": world,
    }


def _dataset_world(root: Path) -> tuple[int, int, WorldConfig]:
    meta_path = root / "dataset.json"
    if not meta_path.exists():
        raise FileNotFoundError(
            f"{root} is not a complete jetbot_synth dataset ({meta_path} missing); generate it first "
            "with `python -m datasets.jetbot_synth --out ...`"
        )
    meta = json.loads(meta_path.read_text())
    return int(meta["size"]), int(meta["seed"]), WorldConfig.from_dict(meta["world"])


def ensure_policy(
    root: str | os.PathLike[str],
    *,
    n_frames: int = 10000,
    epochs: int = 8,
    randomize: float = 1.0,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Return ``root/policy/policy.onnx``, training and exporting it first if needed.

    The policy has the seed's rl_games architecture and export (input ``obs`` NHWC float32 0–255,
    outputs ``mu``, ``log_std``, ``value``), and is behaviour-cloned on SIM renders only — from
    states drawn apart from the dataset's splits — with the expert's wheel commands, under the
    kind of domain randomisation a simulator offers (brightness, contrast, small per-channel gains,
    pixel noise, blur; see ``train_policy._augment``). That randomisation makes it tolerate a
    near-sim image, as an Isaac Lab policy would, but not the real camera: as the user found,
    randomisation alone does not close the gap. It is cached
    in the dataset folder (which is keyed by image size and seed) together with ``policy.json``
    (parameters and training metrics); a cached policy is reused when those parameters match.

    Args:
        root: a jetbot_synth dataset folder (with ``dataset.json``).
        n_frames: sim frames to clone from.
        epochs: passes over them.
        randomize: strength of the simulator-style domain randomisation (0 = mild jitter only).
        force: retrain even if a matching policy exists.
        progress: print progress.

    Returns:
        Path of ``policy.onnx`` (``policy_spec.yaml`` lies next to it).
    """
    root = Path(root)
    size, seed, world = _dataset_world(root)
    out = root / "policy"
    onnx_path = out / "policy.onnx"
    params = policy_params(size=size, seed=seed, n_frames=n_frames, epochs=epochs,
                           randomize=randomize, world=world.to_dict())
    info_path = out / "policy.json"
    if not force and onnx_path.exists() and info_path.exists():
        try:
            if json.loads(info_path.read_text()).get("params") == params:
                return onnx_path
        except json.JSONDecodeError:
            pass
    t0 = time.perf_counter()
    if progress:
        print(f"[jetbot_synth] training the reference sim policy: {n_frames} sim frames at "
              f"{size} px, {epochs} epochs (cached in {out})", flush=True)
    frames, actions, _ = render_arrays(n_frames, seed + _POLICY_SEED_OFFSET, "sim", size,
                                       config=dataclasses.replace(world, size=size),
                                       progress=progress)
    assert isinstance(frames, np.ndarray)
    net, metrics = train_bc(frames, actions, epochs=epochs, seed=seed, randomize=randomize,
                            progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    export_rl_games_onnx(net, onnx_path, height=size, width=size)
    info: dict[str, Any] = {
        "params": params,
        "metrics": {k: v for k, v in metrics.items() if k != "history"},
        "seconds": round(time.perf_counter() - t0, 1),
        "torch_version": torch.__version__,
        "note": "trained on sim renders only; the real frames of the dataset were never seen",
    }
    atomic_write_json(info_path, info)  # written last: its presence means "complete"
    if progress:
        m: dict[str, Any] = info["metrics"]
        print(f"[jetbot_synth] reference policy ready in {info['seconds']} s: sim val MAE "
              f"{m.get('val/action_mae', float('nan')):.3f}, turn agreement "
              f"{m.get('val/turn_agreement', float('nan')):.3f} → {onnx_path}", flush=True)
    return onnx_path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m datasets.jetbot_synth.reference_policy --root data/jetbot_synth_128px_seed0``."""
    ap = argparse.ArgumentParser(description=ensure_policy.__doc__.splitlines()[0])  # type: ignore[union-attr]
    ap.add_argument("--root", required=True, help="jetbot_synth dataset folder")
    ap.add_argument("--n-frames", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--randomize", type=float, default=1.0, help="domain randomisation strength")
    ap.add_argument("--force", action="store_true", help="retrain even if cached")
    args = ap.parse_args(argv)
    print(ensure_policy(args.root, n_frames=args.n_frames, epochs=args.epochs,
                        randomize=args.randomize, force=args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
