"""Data-parallel scaling of CycleGAN and CUT training: images/s on 1, 2, 4 GPUs and the efficiency.

Runs ``bench/train_throughput.py --ddp`` under ``torchrun`` once per process count, then prints
scaling efficiency = img/s(N) / (N × img/s(1)) for each model, per-GPU batch and variant. A
script, not a test. Usage::

    python bench/ddp_scaling.py --gpus 1 2 4 --json bench/results/ddp_scaling.json
    python bench/ddp_scaling.py --gpus 1 2 --device cpu --size 64 --ngf 16   # gloo, to try it out
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
    """One ``torchrun`` of the throughput benchmark with ``n`` processes; its JSON."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           str(REPO / "bench" / "train_throughput.py"), "--ddp", "--json", str(out),
           "--models", *args.models, "--batches", *map(str, args.batches),
           "--variants", *args.variants, "--size", str(args.size), "--ngf", str(args.ngf),
           "--n-blocks", str(args.n_blocks), "--iters", str(args.iters),
           "--repeats", str(args.repeats), "--device", args.device]
    print(f"[ddp_scaling] {n} process(es): {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return dict(json.loads(out.read_text()))


def efficiency_rows(runs: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Scaling efficiency per (model, batch, variant) against the 1-process run.

    Args:
        runs: process count → that run's JSON (``rows`` with model, batch, variant, img_s).

    Returns:
        One dict per (model, batch, variant, N): img_s, efficiency (None without a 1-process row),
        replicas_equal.
    """
    base = {(r["model"], r["batch"], r["variant"]): r["img_s"] for r in runs.get(1, {}).get("rows", [])}
    out = []
    for n, run in sorted(runs.items()):
        for r in run["rows"]:
            key = (r["model"], r["batch"], r["variant"])
            one = base.get(key)
            out.append({"model": key[0], "batch": key[1], "variant": key[2], "processes": n,
                        "img_s": r["img_s"], "efficiency": r["img_s"] / (n * one) if one else None,
                        "replicas_equal": r.get("replicas_equal")})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", nargs="+", type=int, default=[1, 2, 4], help="process counts to run")
    ap.add_argument("--models", nargs="+", default=["cyclegan", "cut"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8], help="per-GPU batch sizes")
    ap.add_argument("--variants", nargs="+", default=["eager_fp32", "eager_bf16_cl", "graph_bf16_cl"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--n-blocks", type=int, default=9)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda")
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
    print(f"\nDDP scaling at {args.size}², ResNet-{args.n_blocks} ngf {args.ngf} — {machine}")
    print(f"{'model':9} {'batch/GPU':>9} {'variant':14} {'procs':>5} {'img/s':>8} {'efficiency':>10} {'same weights':>12}")
    for r in rows:
        eff = f"{r['efficiency']:.2f}" if r["efficiency"] is not None else "-"
        print(f"{r['model']:9} {r['batch']:>9} {r['variant']:14} {r['processes']:>5} {r['img_s']:8.1f} "
              f"{eff:>10} {str(r['replicas_equal']):>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
