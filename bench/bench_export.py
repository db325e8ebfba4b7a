"""Benchmark: ONNX export of full-size translators: parity figures, export time, CPU latency.

A script, not a test. Usage: ``python bench/bench_export.py [--out /tmp/bench_export]
[--threads 4]``. Exports CycleGAN's and CUT's ResNet-9 ngf 64 generator at 256x256 and the edge
generator at 224x224 (PyTorch's default init: outputs span [-1, 1], a harder parity check than
the GAN init's near-constant outputs), each with a fisheye → pinhole correction in the robot
graph, and prints the parity figures, the export time and onnxruntime's CPU latency per frame.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.networks import ResnetGenerator, edge_generator_kwargs  # noqa: E402
from translate.camera import CameraCorrection, CameraModel  # noqa: E402
from translate.export import export_generator  # noqa: E402

__all__ = ["main"]

CASES = {
    "cyclegan": ({"ngf": 64, "n_blocks": 9}, 256),
    "cut": ({"ngf": 64, "n_blocks": 9, "antialias": True, "antialias_up": True}, 256),
    "edge": (edge_generator_kwargs(), 224),
}


def _latency_ms(path: str, frames: np.ndarray, threads: int, repeats: int = 5) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: frames})  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, {name: frames})
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one line per generator."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="/tmp/bench_export")
    p.add_argument("--threads", type=int, default=4)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {args.threads} threads")
    for name, (kwargs, size) in CASES.items():
        torch.manual_seed(0)
        gen = ResnetGenerator(**kwargs).eval()
        real = CameraModel.from_fov(size + 64, size + 32, 150.0, model="fisheye",
                                    dist=(0.05, -0.01, 0.002, 0.0))
        corr = CameraCorrection(real, CameraModel.from_fov(size, size, 100.0))
        t = time.perf_counter()
        info = export_generator(gen, Path(args.out) / name, camera=corr, model_name=name,
                                input_channel_order="BGR")
        took = time.perf_counter() - t
        frame = np.zeros((1, *corr.in_size, 3), np.uint8)
        ms = _latency_ms(info["robot_onnx"], frame, args.threads)
        par = info["parity"]
        print(f"{name:9s} {size}x{size}: core max|diff| {par['core_max_abs_diff']:.2e}, robot "
              f"{par['robot_max_abs_diff']:.0f} grey levels, dynamic H/W "
              f"{info['metadata']['dynamic_size']}, export+checks {took:.1f} s, robot graph "
              f"{ms:.0f} ms/frame (onnxruntime CPU)")


if __name__ == "__main__":
    main()
