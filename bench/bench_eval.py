"""Benchmark: the evaluation harness end to end on paired jetbot_synth frames, in frames/s.

A script, not a test. Usage: ``python bench/bench_eval.py [--n 1000] [--size 128]
[--root /tmp/bench_eval]``. Generates (once, cached under ``--root``) a jetbot_synth test split
of ``--n`` paired frames, an untrained rl_games policy and a ResnetGenerator (ngf 16, 6 blocks)
exported to ONNX with the dataset's lens correction, then runs ``eval_policy_on_translated``'s
``evaluate(cfg)`` — decoding, correction, translation, four policy passes, every metric with
1000 bootstrap resamples, figures and the HTML report — and prints frames/s with a breakdown.
Target: 1,000 frames at 128 px in under 60 s on a 2-core CPU.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the entry point does, before numpy loads

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["main"]


def _prepare(root: Path, n: int, size: int, ngf: int, blocks: int) -> tuple[Path, Path, Path]:
    import torch

    from datasets.jetbot_synth.generate import ensure_dataset
    from datasets.jetbot_synth.policy_net import RlGamesJetbotNet, export_rl_games_onnx
    from models.networks import ResnetGenerator
    from translate.camera import CameraCorrection
    from translate.export import export_generator

    data = root / f"jetbot_synth_{size}px_seed0_n{n}"
    t0 = time.perf_counter()
    ensure_dataset(data, size=size, seed=0, n_real=4, n_sim=4, n_val=4, n_test=n,
                   progress=True, contact_sheet=False)
    policy = data / "policy" / "policy.onnx"
    if not policy.exists():
        torch.manual_seed(0)
        export_rl_games_onnx(RlGamesJetbotNet(image_size=size), policy, height=size, width=size)
    onnx = root / f"translator_ngf{ngf}_b{blocks}_{size}px" / "translator.onnx"
    if not onnx.exists():
        torch.manual_seed(0)
        g = ResnetGenerator(ngf=ngf, n_blocks=blocks)
        export_generator(g, onnx.parent, camera=CameraCorrection.from_yaml(data / "camera.yaml"),
                         model_name=f"resnet_ngf{ngf}_{blocks}blocks")
    print(f"data, policy and translator ready in {time.perf_counter() - t0:.1f} s (cached in "
          f"{root})")
    return data, policy, onnx


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the machine, the settings and frames/s."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="/tmp/bench_eval", help="cache folder for data and models")
    p.add_argument("--n", type=int, default=1000, help="paired frames")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="decoding threads")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--threads", default="auto",
                   help="onnxruntime / torch threads each: auto (half the CPUs), 0 = the "
                   "libraries' defaults, or N")
    p.add_argument("--out", default=None, help="report folder (default ROOT/report)")
    args = p.parse_args(argv)

    import onnxruntime as ort
    import torch

    from workflows import evaluation as ept

    root = Path(args.root)
    data, policy, onnx = _prepare(root, args.n, args.size, args.ngf, args.blocks)
    out = Path(args.out) if args.out else root / "report"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          "(shared with other users: figures vary with their load)")
    print(f"software: python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {ort.__version__} "
          f"({', '.join(ort.get_available_providers())}), OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(f"settings: {args.n} paired frames at {args.size} px, translator ResnetGenerator ngf "
          f"{args.ngf} × {args.blocks} blocks (ONNX core graph), batch {args.batch_size}, "
          f"{args.workers} decoding threads, {args.bootstrap} bootstrap resamples, LPIPS auto, "
          f"compute threads {ept.threads_setting(args.threads) or 'library defaults'} each")
    cfg = ept.default_config({
        "translator": str(onnx), "policy.path": str(policy), "data": str(data / "test"),
        "out_dir": str(out), "batch_size": args.batch_size, "num_workers": args.workers,
        "bootstrap.n": args.bootstrap, "progress": True, "print_table": False,
        "policy.build_if_missing": False, "synth.build_if_missing": False,
        "threads": None if args.threads == "0" else args.threads,
    })
    t0 = time.perf_counter()
    m = ept.evaluate(cfg)
    total = time.perf_counter() - t0
    n = m["data"]["n_frames"]
    timing = m["timing"]
    print(f"\n{n} frames in {total:.1f} s end to end (report included) = {n / total:.1f} "
          f"frames/s; evaluation core {timing['seconds']:.1f} s = "
          f"{timing['frames_per_second']:.1f} frames/s")
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in timing["parts"].items())
    print(f"core breakdown: {parts}")
    print(f"target (1,000 frames at 128 px in < 60 s on 2 cores): "
          f"{'met' if total < 60 * n / 1000 else 'NOT met'}")
    print(f"report: {out / 'report.html'}")


if __name__ == "__main__":
    main()
