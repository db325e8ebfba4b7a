"""Which part of jetbot_synth's real look limits a translator: its val split rendered with one factor of the real look at a time, scored by the product's evaluation.

jetbot_synth's real look (:class:`datasets.jetbot_synth.world.RealStyle`) is the sum of four
factors: the fisheye lens (always there: the real camera), the camera pipeline (exposure, white
balance, saturation, vignetting, blur, noise, black level), the materials (each state's floor and
wall colours and textures) and the lighting (light direction, colour and intensity, shadows,
ambient occlusion, the Kong's specular). This renders the **val** split's states (the split that
chooses recipes; never the test split) once per factor, with every other knob off, and scores a
trained translator on each through ``eval_policy_on_translated.py``::

    python bench/factors.py --translator runs/X/export/translator.onnx --json bench/results/factors.json

A factor whose frames the translator leaves far from the sim frames' actions (low gap closed
where the raw gap is large) is what the next lever has to cover.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Every knob of the real look at its "off" value (RealStyle's docstring): the lens alone.
OFF: dict[str, Any] = {
    "material_mix": 0.0, "light_mix": 0.0, "texture_strength": 0.0, "specular": 0.0,
    "ambient_occlusion": 0.0, "shadow_softness": 0.0, "auto_exposure": False,
    "wb_gains": (1.0, 1.0, 1.0), "saturation": 1.0, "vignetting": 0.0, "blur_sigma": 0.0,
    "shot_noise": 0.0, "read_noise": 0.0, "black_level": 0.0,
}
#: The knobs each factor turns back on (to RealStyle's defaults).
FACTORS: dict[str, tuple[str, ...]] = {
    "lens": (),
    "camera": ("auto_exposure", "wb_gains", "saturation", "vignetting", "blur_sigma", "shot_noise",
               "read_noise", "black_level"),
    "materials": ("material_mix", "texture_strength"),
    "lighting": ("light_mix", "specular", "ambient_occlusion", "shadow_softness"),
    "full": tuple(OFF),
}


def factor_style(factor: str) -> Any:
    """The :class:`RealStyle` of one factor: every knob off except the factor's own."""
    from datasets.jetbot_synth.world import RealStyle

    default = RealStyle()
    values = {k: v for k, v in OFF.items() if k not in FACTORS[factor]}
    return dataclasses.replace(default, **values)


def render_factor(root: Path, factor: str, *, size: int, seed: int, n_val: int) -> Path:
    """Render the val split (``n_val`` states of world ``seed``) with one factor; returns ``root``."""
    from datasets.jetbot_synth.generate import ensure_dataset
    from datasets.jetbot_synth.world import WorldConfig

    config = dataclasses.replace(WorldConfig(), size=size, real=factor_style(factor))
    ensure_dataset(root, size=size, seed=seed, n_real=1, n_sim=1, n_val=n_val, n_test=1,
                   config=config, progress=False, contact_sheet=False)
    return root


def _row(metrics_json: Path) -> dict[str, Any]:
    """Stage kind → turn agreement, gap closed and its interval, action MAE, from a metrics.json."""
    from heldout import stages_by_kind  # bench/ is on sys.path (this script's folder)

    out: dict[str, Any] = {}
    for kind, st in stages_by_kind(metrics_json).items():
        m = st["metrics"]
        gap = m.get("gap_closed") or {}
        out[kind] = {"turn_agreement": m["turn_agreement"]["value"], "gap_closed": gap.get("value"),
                     "gap_closed_ci": gap.get("ci"), "action_mae": m["action_mae"]["value"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--translator", required=True, help="an exported translator.onnx (or .ckpt)")
    ap.add_argument("--factors", nargs="+", default=list(FACTORS), choices=list(FACTORS))
    ap.add_argument("--out-dir", type=Path, default=REPO / "data" / "factors")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "factors")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0, help="the world seed (0: jetbot_synth's val states)")
    ap.add_argument("--n-val", type=int, default=200)
    ap.add_argument("--policy", type=Path, default=REPO / "data" / "jetbot_synth_128px_seed0" / "policy" / "policy.onnx")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from translate.fsutil import atomic_write_json

    if not args.policy.exists():
        raise SystemExit(f"--policy {args.policy} does not exist (run python train_translate.py once)")
    results: dict[str, Any] = {}
    for factor in args.factors:
        t0 = time.perf_counter()
        root = render_factor(args.out_dir / f"{factor}_{args.size}px_seed{args.seed}", factor,
                             size=args.size, seed=args.seed, n_val=args.n_val)
        out = args.runs_dir / factor
        cmd = [sys.executable, str(REPO / "eval_policy_on_translated.py"), f"translator={args.translator}",
               f"data={root / 'val'}", "policy=custom", f"policy.path={args.policy}",
               "policy.spec=rl_games", f"out_dir={out}", "progress=false", "print_table=false",
               "report.strips=4", "report.worst=0", "bootstrap.n=1000"]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"evaluation of factor {factor} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        results[factor] = {**_row(out / "metrics.json"), "seconds": round(time.perf_counter() - t0, 1)}
        r = results[factor]
        print(f"[factors] {factor:9s} raw turn {r['raw']['turn_agreement']:.3f}  translated turn "
              f"{r['translated']['turn_agreement']:.3f}  gap closed {r['translated']['gap_closed']}", flush=True)
    record = {"machine": {"python": platform.python_version(), "cpu": platform.machine()},
              "translator": str(args.translator), "world_seed": args.seed, "split": "val",
              "n_frames": args.n_val, "results": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, record, indent=1)
    print("\n| factor | raw turn agr. % | corrected | translated | sim | gap closed % [95 % CI] |\n|---|---|---|---|---|---|")
    for f, r in results.items():
        g, ci = r["translated"]["gap_closed"], r["translated"]["gap_closed_ci"]
        cor = r.get("corrected", {}).get("turn_agreement")
        print(f"| {f} | {100 * r['raw']['turn_agreement']:.1f} | "
              f"{'' if cor is None else f'{100 * cor:.1f}'} | {100 * r['translated']['turn_agreement']:.1f} | "
              f"{100 * r['sim']['turn_agreement']:.1f} | "
              f"{'n/a' if g is None else f'{100 * g:.1f}'} [{'' if not ci else f'{100 * ci[0]:.1f}, {100 * ci[1]:.1f}'}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
