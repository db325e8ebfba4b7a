"""Benchmark: ONNX translator latency at 224², batch 1, full ResNet-9 (ngf 64) vs edge generator.

A script, not a test. Usage::

    python bench/infer_latency.py                      # onnxruntime CPU, 2 threads
    python bench/infer_latency.py --device cuda        # + CUDA EP, + TensorRT EP when available
    python bench/infer_latency.py --threads 4 --runs 100 --fp16

Exports both generators' core graphs (float NCHW [-1, 1], PyTorch default init) with
translate.export, then times ``session.run`` at batch 1 after a warm-up: p50 / p95 / mean over
``--runs`` runs, and the frame rate p50 allows. On a GPU each run includes the host↔device copies
of the 224² input and output (as the robot loop does). The robot graph (uint8 in/out) is timed
too on the CPU. Prints the machine (CPU model, cores, GPU, versions) and a table last.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_model  # noqa: E402

__all__ = ["main"]



def _gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def machine() -> str:
    """One paragraph describing the machine and the library versions."""
    import onnxruntime as ort
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = _gpu_name()
    lines = [
        f"machine: {platform.node()}, CPU {cpu_model()}, {cores} usable cores "
        f"(os.cpu_count {os.cpu_count()}), GPU {gpu or 'none'}",
        f"versions: python {platform.python_version()}, onnxruntime {ort.__version__} "
        f"(providers {ort.get_available_providers()}), torch {torch.__version__}, "
        f"numpy {np.__version__}",
    ]
    try:
        load = os.getloadavg()
        lines.append(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
                     "(a shared machine: other jobs inflate the figures)")
    except OSError:
        pass
    return "\n".join(lines)


def _export(name: str, kwargs: dict[str, Any], size: int, out: Path) -> dict[str, Any]:
    import torch

    from models.complexity import count_macs
    from models.networks import ResnetGenerator
    from translate.export import export_generator

    torch.manual_seed(0)
    gen = ResnetGenerator(**kwargs).eval()
    macs = count_macs(gen, (1, 3, size, size))
    params = sum(p.numel() for p in gen.parameters())
    info = export_generator(gen, out / name, image_size=size, model_name=name,
                            dynamic_size=False, robot=True)
    return {"onnx": info["onnx"], "robot_onnx": info["robot_onnx"], "macs": macs,
            "params": params}


def _session(path: str, provider: str, threads: int, fp16: bool, cache: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if provider == "TensorrtExecutionProvider":
        cache.mkdir(parents=True, exist_ok=True)
        providers: list[Any] = [(provider, {"trt_fp16_enable": fp16,
                                            "trt_engine_cache_enable": True,
                                            "trt_engine_cache_path": str(cache)}),
                                "CUDAExecutionProvider", "CPUExecutionProvider"]
    elif provider == "CUDAExecutionProvider":
        providers = [provider, "CPUExecutionProvider"]
    else:
        providers = [provider]
    sess = ort.InferenceSession(path, opts, providers=providers)
    if sess.get_providers()[0] != provider:
        raise RuntimeError(f"{provider} did not load (session has {sess.get_providers()})")
    return sess


def _time(sess: Any, x: np.ndarray, warmup: int, runs: int) -> dict[str, float]:
    name = sess.get_inputs()[0].name
    for _ in range(warmup):
        sess.run(None, {name: x})
    times = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times[i] = time.perf_counter() - t
    ms = times * 1000
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "mean": float(ms.mean()), "min": float(ms.min()), "runs": runs}


def _profile(path: str, x: np.ndarray, threads: int, runs: int, out: Path) -> str:
    """Time per ONNX operator type (onnxruntime's profiler), ms per run, largest first."""
    import json
    from collections import defaultdict

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    opts.profile_file_prefix = str(out / "ort_profile")
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for _ in range(runs):
        sess.run(None, {name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1000.0 / runs
    total = sum(per_op.values())
    return ", ".join(f"{op} {ms:.1f} ms ({100 * ms / total:.0f}%)"
                     for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1]))


def _torch_cuda_rows(cases: dict[str, dict[str, Any]], size: int, runs: int) -> list[tuple[str, str, float]]:
    """GPU latency through torch (when onnxruntime has no CUDA provider): fp32, fp16, fp16 + CUDA graph.

    Each run copies a 224² frame to the GPU, translates it and copies the result back, as the
    robot loop would; times are wall-clock medians after a warm-up.
    """
    import torch

    from models.networks import ResnetGenerator

    rows: list[tuple[str, str, float]] = []
    torch.backends.cudnn.benchmark = True
    host = torch.rand(1, 3, size, size).pin_memory()
    for name, kwargs in cases.items():
        for label, dtype, graph in (("torch fp32", torch.float32, False),
                                    ("torch fp16", torch.float16, False),
                                    ("torch fp16+graph", torch.float16, True)):
            g = ResnetGenerator(**kwargs).cuda().eval().to(dtype)
            static = torch.zeros(1, 3, size, size, device="cuda", dtype=dtype)
            with torch.no_grad():
                for _ in range(10):
                    g(static)
                torch.cuda.synchronize()
                cg = None
                if graph:
                    cg = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(cg):
                        out = g(static)
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    static.copy_(host, non_blocking=True)
                    if cg is not None:
                        cg.replay()
                        y = out
                    else:
                        y = g(static)
                    y.float().cpu()
                    times.append((time.perf_counter() - t0) * 1000)
            rows.append((name, label, float(np.median(times))))
            print(f"{name} {label}: p50 {rows[-1][2]:.2f} ms", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints the machine, progress lines, then the table."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: also time the CUDA and (if available) TensorRT providers")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (CPU)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per case (>= 30)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--fp16", action="store_true", help="TensorRT fp16 engines")
    p.add_argument("--only", choices=("full", "edge"), default=None, help="one generator only")
    p.add_argument("--out", default=None, help="export folder (default: a temporary one)")
    p.add_argument("--torch-cuda", action="store_true",
                   help="also time the generators in torch on the GPU (fp32, fp16, CUDA graph)")
    p.add_argument("--profile", action="store_true",
                   help="also print onnxruntime's time per operator type (CPU, core graph)")
    args = p.parse_args(argv)
    if args.runs < 30:
        p.error("--runs must be >= 30")

    import onnxruntime as ort
    import torch

    from models.networks import edge_generator_kwargs

    torch.set_num_threads(max(1, args.threads))
    print(machine(), flush=True)
    cases = {"full": {"ngf": 64, "n_blocks": 9}, "edge": edge_generator_kwargs()}
    if args.only:
        cases = {args.only: cases[args.only]}
    providers = ["CPUExecutionProvider"]
    if args.device == "cuda":
        have = ort.get_available_providers()
        if "CUDAExecutionProvider" not in have and not args.torch_cuda:
            print(f"error: --device cuda but onnxruntime has no CUDAExecutionProvider ({have}); "
                  "pip install onnxruntime-gpu, or add --torch-cuda", file=sys.stderr)
            return 2
        if "CUDAExecutionProvider" in have:
            providers.append("CUDAExecutionProvider")
        else:
            print(f"note: onnxruntime has no CUDAExecutionProvider ({have}): GPU timed in torch")
        if "TensorrtExecutionProvider" in have:
            providers.append("TensorrtExecutionProvider")
        else:
            print("note: no TensorrtExecutionProvider in this onnxruntime build: TensorRT skipped")
    rows: list[tuple[str, str, str, dict[str, float], dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="infer_latency-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        cache = out / "trt_cache"
        for name, kwargs in cases.items():
            t = time.perf_counter()
            exp = _export(name, dict(kwargs), args.size, out)
            print(f"exported {name}: {exp['macs'] / 1e9:.2f} GMAC, {exp['params'] / 1e6:.2f} M "
                  f"params ({time.perf_counter() - t:.1f} s)", flush=True)
            x = np.random.default_rng(0).uniform(-1, 1, (1, 3, args.size, args.size))
            x = x.astype(np.float32)
            frames = np.random.default_rng(0).integers(0, 256, (1, args.size, args.size, 3),
                                                       dtype=np.uint8)
            if args.profile:
                print(f"{name} per operator (CPU, {args.threads} threads): "
                      f"{_profile(exp['onnx'], x, args.threads, 10, out)}", flush=True)
            for prov in providers:
                graphs: list[tuple[str, str, np.ndarray]] = [("core", exp["onnx"], x)]
                if prov == "CPUExecutionProvider":
                    graphs.append(("robot", exp["robot_onnx"], frames))
                for graph, path, inp in graphs:
                    threads = args.threads if prov == "CPUExecutionProvider" else 1
                    try:
                        sess = _session(path, prov, threads, args.fp16, cache)
                    except Exception as exc:  # report and go on with the other cases
                        print(f"{name} {graph} {prov}: failed to load: {exc}", flush=True)
                        continue
                    warm = args.warmup + (10 if prov != "CPUExecutionProvider" else 0)
                    res = _time(sess, inp, warm, args.runs)
                    short = prov.replace("ExecutionProvider", "")
                    if prov == "TensorrtExecutionProvider" and args.fp16:
                        short += " fp16"
                    print(f"{name} {graph} {short}: p50 {res['p50']:.2f} ms", flush=True)
                    rows.append((name, graph, short, res, exp))
    torch_rows = _torch_cuda_rows(cases, args.size, args.runs) if args.torch_cuda else []
    print()
    if torch_rows:
        print(f"GPU translator latency in torch, {args.size}x{args.size}, batch 1, host->GPU->host "
              "copies included (median ms)")
        for name, label, ms in torch_rows:
            print(f"{name:<10} {label:<18} {ms:>8.2f} ms {1000 / ms:>8.1f} fps")
    print(f"ONNX translator latency, {args.size}x{args.size}, batch 1, {args.runs} runs after "
          f"warm-up, CPU threads = {args.threads}")
    print(f"{'generator':<10} {'GMAC':>6} {'graph':<6} {'provider':<14} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'mean ms':>8} {'min ms':>8} {'fps@p50':>8}")
    for name, graph, prov, res, exp in rows:
        print(f"{name:<10} {exp['macs'] / 1e9:>6.2f} {graph:<6} {prov:<14} {res['p50']:>8.2f} "
              f"{res['p95']:>8.2f} {res['mean']:>8.2f} {res['min']:>8.2f} "
              f"{1000 / res['p50']:>8.1f}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, GPU {_gpu_name() or 'none'}, "
          f"onnxruntime {ort.__version__}, load average now {load:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
