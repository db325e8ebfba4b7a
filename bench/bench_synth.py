"""Benchmark: jetbot_synth paired (sim + real) rendering throughput on the CPU. A script, not a test.

Usage: ``python bench/bench_synth.py [--sizes 128 224] [--frames 256] [--repeats 3]
[--threads 1 2]``. Prints frames/s per size and thread count, the machine and the settings.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_model  # noqa: E402
from datasets.jetbot_synth.render import Renderer  # noqa: E402
from datasets.jetbot_synth.world import WorldConfig, sample_states  # noqa: E402

__all__ = ["main"]



def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _measure(r: Renderer, states: list, jpeg: bool) -> tuple[float, float, float]:
    """Seconds for sim, real, and CPU seconds for the pair, over ``states``."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    r.render(states, "sim")
    t1 = time.perf_counter()
    r.render(states, "real", seed=0, jpeg=jpeg)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    p.add_argument("--frames", type=int, default=256, help="states per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    args = p.parse_args(argv)

    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.machine()}, "
          f"python {platform.python_version()}, torch {torch.__version__}")
    print(f"load average before: {_load()} (other processes share these cores: the figures "
          "vary from run to run; the best of the repeats is the machine's, the median is typical)")
    print(f"settings: {args.frames} states per measurement, {args.repeats} repeats, "
          "default WorldConfig, real frames with JPEG round trip (quality 75) and without")
    for threads in dict.fromkeys(args.threads):
        torch.set_num_threads(threads)
        for size in args.sizes:
            cfg = WorldConfig(size=size)
            states = sample_states(args.frames, 0, cfg)
            r = Renderer(cfg)
            r.render(states[:16], "sim")  # warm-up: texture atlas, noise bank, allocator
            r.render(states[:16], "real")
            for jpeg in (False, True):
                runs = [_measure(r, states, jpeg) for _ in range(args.repeats)]
                pair = sorted(args.frames / (s + q) for s, q, _ in runs)
                sim = max(args.frames / s for s, _, _ in runs)
                real = max(args.frames / q for _, q, _ in runs)
                cpu_ms = min(c for _, _, c in runs) / args.frames * 1e3
                print(f"threads={threads} size={size:3d} jpeg={'on ' if jpeg else 'off'}  "
                      f"PAIRED frames/s best {pair[-1]:6.1f}  median {pair[len(pair) // 2]:6.1f}"
                      f"  |  sim {sim:6.1f}/s  real {real:6.1f}/s (best)  |  "
                      f"CPU {cpu_ms:5.2f} ms/pair")
    print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
