"""Data-parallel scaling of train_translate.py's training: images/s on 1, 2, 4 GPUs and the efficiency.

Runs ``bench/train_speed.py`` (the product's own ``train(cfg)``) with ``trainer=ddp`` once per
process count (Lightning starts one process per device), then prints scaling efficiency =
img/s(N) / (N × img/s(1)) for each model and per-GPU batch, with the executor of ``--step``
(default ``fast``: CUDA graphs, the executor's own gradient all-reduce). A script, not a test.
Usage::

    python bench/ddp_scaling.py --gpus 1 2 4 --json bench/results/ddp_scaling.json
    python bench/ddp_scaling.py --gpus 1 2 --accelerator cpu --size 32 --extra model.generator.ngf=8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_world(n: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One ``train_speed.py`` run with ``n`` DDP processes; its JSON."""
    extra = ["trainer=ddp", f"trainer.devices={n}", f"trainer.accelerator={args.accelerator}",
             f"trainer.precision={args.precision}", *args.extra]
    cmd = [sys.executable, str(REPO / "bench" / "train_speed.py"), "--json", str(out),
           "--models", *args.models, "--batch", *map(str, args.batches), "--policy", "off",
           "--step", args.step, "--size", str(args.size), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--extra", *extra]
    print(f"[ddp_scaling] {n} process(es): {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return dict(json.loads(out.read_text()))


def efficiency_rows(runs: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Scaling efficiency per row name (model, batch) against the 1-process run.

    Args:
        runs: process count → that run's JSON (``rows`` with ``name`` and global ``img_s``).

    Returns:
        One dict per (row, N): img_s, efficiency (None without a 1-process row).
    """
    base = {r["name"]: r.get("img_s") for r in runs.get(1, {}).get("rows", [])}
    out = []
    for n, run in sorted(runs.items()):
        for r in run["rows"]:
            one = base.get(r["name"])
            img = r.get("img_s")
            out.append({"row": r["name"], "processes": n, "img_s": img,
                        "efficiency": img / (n * one) if one and img else None})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", nargs="+", type=int, default=[1, 2, 4], help="process counts to run")
    ap.add_argument("--models", nargs="+", default=["cyclegan", "cut"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8], help="per-GPU batch sizes")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=130)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--step", default="fast", choices=["eager", "fast"], help="the executor")
    ap.add_argument("--accelerator", default="gpu")
    ap.add_argument("--precision", default="bf16-mixed")
    ap.add_argument("--extra", nargs="*", default=[], help="overrides for every run")
    ap.add_argument("--json", type=Path, default=None, help="write every run and the efficiencies here")
    args = ap.parse_args(argv)
    runs: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.gpus:
            runs[n] = run_world(n, args, Path(tmp) / f"world{n}.json")
    rows = efficiency_rows(runs)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "efficiency": rows}, indent=1))
    machine = next(iter(runs.values()))["machine"] if runs else "?"
    print(f"\nDDP scaling at {args.size}² — {machine}")
    print(f"{'row':30} {'procs':>5} {'img/s':>8} {'efficiency':>10}")
    for r in rows:
        eff = f"{r['efficiency']:.2f}" if r["efficiency"] is not None else "-"
        img = f"{r['img_s']:8.1f}" if r["img_s"] else "       -"
        print(f"{r['row']:30} {r['processes']:>5} {img} {eff:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
