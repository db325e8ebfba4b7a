"""How far the random camera moves the frozen policy, next to how far the real look moves it: a paired val split, before any training.

The random-camera pairs (``data.randomized_pairs``) teach the translator to take a camera's look
back to the sim render. If the random camera moves the policy's actions much less than the real
look does, the translator is taught on inputs easier than the ones it will meet. This scores, on
a paired folder (jetbot_synth's **val** split by default: the split that chooses recipes), the
policy on

- the real frames (raw, and lens-corrected when a ``camera.yaml`` is found),
- the sim frames through the random camera (``datasets.randomize.build_camera_randomizer``),
  ``--draws`` seeded draws per frame, for each ``--surfaces`` probability (with the object hue
  turn of ``--objects``, 0 by default),

each against the policy on the paired sim frames, with the report's own definitions
(``translate.metrics.turn_agreement`` and ``per_frame_abs_error``)::

    python bench/camera_gap.py --surfaces 0 0.6 --json bench/results/camera_gap_cpu.json
    python bench/camera_gap.py --surfaces 0.6 --objects 0.5
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_DATA = REPO / "data" / "jetbot_synth_128px_seed0"


def agreement(actions: np.ndarray, sim_actions: np.ndarray) -> dict[str, float]:
    """Turn agreement and mean action error of ``actions`` (N, A) against ``sim_actions`` (N, A)."""
    from translate.metrics import per_frame_abs_error, turn_agreement

    return {"turn_agreement": float(turn_agreement(actions, sim_actions).mean()),
            "action_mae": float(per_frame_abs_error(actions, sim_actions).mean())}


def randomized(sim: np.ndarray, *, surfaces: float, draw: int, objects: float = 0.0) -> np.ndarray:
    """The sim frames (N, H, W, 3) uint8 through the random camera, draw ``draw`` (seeded per frame)."""
    from datasets.randomize import build_camera_randomizer

    camera = build_camera_randomizer(surfaces=surfaces, objects=objects)
    out = np.empty_like(sim)
    for i, frame in enumerate(sim):
        camera.set_random_seed(100_003 * draw + i)
        out[i] = camera(image=frame)["image"]
    return out


def camera_gap(data: Path, policy_path: Path, *, surfaces: list[float], draws: int,
               max_frames: int | None = None, objects: float = 0.0) -> dict[str, Any]:
    """Score the policy on real, corrected and randomised frames of a paired folder.

    Returns:
        ``{"n_frames", "rows": [{"input", "turn_agreement", "action_mae"}, ...]}``; randomised
        rows also carry ``surfaces`` and the per-draw figures.
    """
    from translate.camera import CameraCorrection
    from translate.eval_sets import load_eval_set
    from translate.imageio import read_images
    from translate.policy import load_policy

    es = load_eval_set(data, max_frames=max_frames)
    if es.sim_paths is None:
        raise SystemExit(f"{data}: not a paired folder (it needs sim partners for the real frames)")
    real = np.stack(read_images(es.real_paths, on_error="raise")[0])
    sim = np.stack(read_images(es.sim_paths, on_error="raise")[0])
    policy = load_policy(policy_path)
    a_sim = policy.act(sim)
    rows: list[dict[str, Any]] = [{"input": "real (raw)", **agreement(policy.act(real), a_sim)}]
    if es.camera_yaml is not None:
        corrected = CameraCorrection.from_yaml(es.camera_yaml).apply(real)
        rows.append({"input": "real (lens-corrected)", **agreement(policy.act(corrected), a_sim)})
    for p in surfaces:
        per_draw = [agreement(policy.act(randomized(sim, surfaces=p, draw=d, objects=objects)), a_sim)
                    for d in range(draws)]
        label = f"surfaces={p:g}" + (f", objects={objects:g}" if objects else "")
        rows.append({"input": f"sim through the random camera ({label})", "surfaces": p, "objects": objects,
                     "turn_agreement": float(np.mean([r["turn_agreement"] for r in per_draw])),
                     "action_mae": float(np.mean([r["action_mae"] for r in per_draw])),
                     "draws": per_draw})
    return {"n_frames": len(sim), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA / "val", help="a paired folder (default: jetbot_synth's val split)")
    ap.add_argument("--policy", type=Path, default=DEFAULT_DATA / "policy" / "policy.onnx")
    ap.add_argument("--surfaces", type=float, nargs="+", default=[0.0, 0.6],
                    help="data.randomized_surfaces values to score (probabilities in [0, 1])")
    ap.add_argument("--objects", type=float, default=0.0,
                    help="data.randomized_objects for every random-camera row (a probability in [0, 1])")
    ap.add_argument("--draws", type=int, default=3, help="random-camera draws per frame")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    for path, what in ((args.data, "--data"), (args.policy, "--policy")):
        if not path.exists():
            raise SystemExit(f"{what} {path} does not exist (python train_translate.py makes jetbot_synth and its policy once)")
    if args.draws < 1 or any(not 0.0 <= p <= 1.0 for p in [*args.surfaces, args.objects]):
        raise SystemExit("--draws must be >= 1 and each --surfaces value and --objects a probability in [0, 1]")
    from translate.fsutil import atomic_write_json

    t0 = time.perf_counter()
    result = camera_gap(args.data, args.policy, surfaces=args.surfaces, draws=args.draws,
                        max_frames=args.max_frames, objects=args.objects)
    record = {"machine": {"python": platform.python_version(), "cpu": platform.machine()},
              "data": str(args.data), "policy": str(args.policy), "draws": args.draws,
              "seconds": round(time.perf_counter() - t0, 1), **result}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, record, indent=1)
    print(f"\n{result['n_frames']} frames of {args.data}; the policy on each input against the policy on the paired sim frame")
    print("| input | turn agreement % | action MAE |\n|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['input']} | {100 * r['turn_agreement']:.1f} | {r['action_mae']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
