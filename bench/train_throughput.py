"""Training throughput of CycleGAN, CUT and FastCUT: plain fp32 eager vs the fast path (bf16, channels_last, CUDA graphs).

One GPU:      python bench/train_throughput.py --json bench/results/train_throughput.json
Data-parallel (one process per GPU; bench/ddp_scaling.py runs 1, 2, 4 GPUs and the efficiency):
              torchrun --standalone --nproc_per_node=4 bench/train_throughput.py --ddp --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.cut.module import CUTModule  # noqa: E402
from models.cyclegan.module import CycleGANModule  # noqa: E402
from models.fast_step import FastStepConfig, TrainStep  # noqa: E402

#: Official code, H100, 256², batch 1, fp32, torch 2.11 (DESIGN.md): iterations per second.
OFFICIAL_IT_S = {"cyclegan": 11.8, "cut": 14.6, "fastcut": 21.6}

VARIANTS: dict[str, FastStepConfig] = {
    "eager_fp32": FastStepConfig.plain(),
    "graph_fp32": FastStepConfig(bf16=False, channels_last=False, fused_adam=True, cuda_graph=True,
                                 batched_generators=True, cudnn_benchmark=True),
    "eager_bf16_cl": FastStepConfig(cuda_graph=False),
    "graph_bf16_cl": FastStepConfig(),
    "graph_bf16_compiled": FastStepConfig(compile=True),
}


def build(model: str, ngf: int, n_blocks: int) -> CycleGANModule | CUTModule:
    """The official-size module (the configs' defaults) for ``model``."""
    g = {"ngf": ngf, "n_blocks": n_blocks}
    if model == "cyclegan":
        return CycleGANModule(generator=g, discriminator={"ndf": 64})
    if model == "cut":
        return CUTModule(generator=g, discriminator={"ndf": 64})
    return CUTModule(generator=g, discriminator={"ndf": 64}, lambda_NCE=10.0, nce_idt=False,
                     flip_equivariance=True)


def step_flops(model: str, batch: int, size: int, ngf: int, n_blocks: int, device: str) -> float:
    """FLOPs of one training iteration (forward + backward of every pass), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    step = TrainStep(build(model, ngf, n_blocks), batch_size=batch, image_size=size,
                     config=FastStepConfig.plain(), device=device, warmup=0)
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    with FlopCounterMode(display=False) as fc:
        step(x, x)
    return float(fc.get_total_flops())


def time_variant(
    model: str, batch: int, size: int, cfg: FastStepConfig, *, ngf: int, n_blocks: int,
    device: str, iters: int, repeats: int,
) -> dict[str, float]:
    """Median iterations/s over ``repeats`` timed runs of ``iters`` iterations, and peak memory."""
    torch.manual_seed(0)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t_build = time.perf_counter()
    step = TrainStep(build(model, ngf, n_blocks), batch_size=batch, image_size=size, config=cfg,
                     device=device, warmup=3)
    setup_s = time.perf_counter() - t_build
    rank = torch.distributed.get_rank() if cfg.ddp else 0
    g = torch.Generator(device=device).manual_seed(1 + rank)  # each rank its own batches
    data = [(torch.rand(batch, 3, size, size, device=device, generator=g) * 2 - 1,
             torch.rand(batch, 3, size, size, device=device, generator=g) * 2 - 1) for _ in range(4)]
    for i in range(5):
        step(*data[i % 4])
    rates = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for i in range(iters):
                out = step(*data[i % 4])
            end.record()
            torch.cuda.synchronize()
            secs = start.elapsed_time(end) / 1000
        else:
            t0 = time.perf_counter()
            for i in range(iters):
                out = step(*data[i % 4])
            secs = time.perf_counter() - t0
        rates.append(iters / secs)
    losses = {k: float(v) for k, v in out.items()}
    if not all(v == v and abs(v) < 1e6 for v in losses.values()):
        raise RuntimeError(f"{model} b{batch}: non-finite losses {losses}")
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    out_row = {"it_s": statistics.median(rates),
               "spread": (max(rates) - min(rates)) / statistics.median(rates),
               "peak_gib": peak, "setup_s": setup_s, "loss_G": losses.get("loss_G", float("nan"))}
    if cfg.ddp:
        out_row["replicas_equal"] = _replicas_equal(step.m)
    return out_row


def _replicas_equal(module: torch.nn.Module) -> bool:
    """Whether every rank holds the same weights (gradients were averaged, steps identical)."""
    import torch.distributed as dist

    with torch.no_grad():
        vec = torch.cat([p.detach().float().reshape(-1) for p in module.parameters()])
        ref = vec.clone()
        dist.broadcast(ref, src=0)
        diff = (vec - ref).abs().max()
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return bool(diff.item() <= 1e-5 * max(1.0, float(ref.abs().max())))


def bf16_peak(device: str) -> float:
    """Measured bf16 matrix-product rate (TFLOP/s): an 8192³ product, median of 10."""
    if not device.startswith("cuda"):
        return float("nan")
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ b
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1000)
    return 2 * n**3 / statistics.median(times) / 1e12


def machine() -> str:
    """One line naming the machine and the software."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{gpu}; {platform.processor() or platform.machine()}; torch {torch.__version__}; "
            f"CUDA {torch.version.cuda}; cuDNN {torch.backends.cudnn.version()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", default=["cyclegan", "cut", "fastcut"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--n-blocks", type=int, default=9)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path, default=None, help="write all figures here")
    ap.add_argument("--all-variants", action="store_true", help="also graph_fp32 at batch > 1")
    ap.add_argument("--ddp", action="store_true",
                    help="data-parallel under torchrun: gradients averaged across ranks each step "
                         "(NCCL on GPUs, gloo on CPUs); img/s counts every rank's images")
    args = ap.parse_args(argv)
    dev = args.device
    world, rank = 1, 0
    if args.ddp:
        import torch.distributed as dist

        if "RANK" not in os.environ:
            ap.error("--ddp runs under torchrun: torchrun --standalone --nproc_per_node=N "
                     "bench/train_throughput.py --ddp ...")
        local = int(os.environ.get("LOCAL_RANK", 0))
        if dev.startswith("cuda"):
            torch.cuda.set_device(local)
            dev = f"cuda:{local}"
        dist.init_process_group("nccl" if dev.startswith("cuda") else "gloo")
        world, rank = dist.get_world_size(), dist.get_rank()
    say = print if rank == 0 else (lambda *a, **k: None)
    say(f"machine: {machine()}; processes: {world}", flush=True)
    peak = bf16_peak(dev) if rank == 0 else float("nan")
    say(f"measured bf16 matmul rate: {peak:.0f} TFLOP/s", flush=True)
    rows: list[dict[str, Any]] = []
    for model in args.models:
        for batch in args.batches:
            flops = step_flops(model, batch, args.size, args.ngf, args.n_blocks, dev)
            base = None
            for name in args.variants:
                cfg = dataclasses.replace(VARIANTS[name], ddp=args.ddp)
                if cfg.cuda_graph and not dev.startswith("cuda"):
                    continue
                if batch > 1 and name == "graph_fp32" and not args.all_variants:
                    continue  # graphs matter at batch 1 (launch-bound); skip to save device time
                try:
                    r = time_variant(model, batch, args.size, cfg, ngf=args.ngf, n_blocks=args.n_blocks,
                                     device=dev, iters=args.iters if batch == 1 else max(10, args.iters // 2),
                                     repeats=args.repeats)
                except Exception as exc:  # report and go on: one failing variant must not lose the rest
                    print(f"FAILED {model} b{batch} {name} (rank {rank}): {type(exc).__name__}: {exc}",
                          flush=True)
                    if args.ddp:
                        raise  # the other ranks wait in a collective: stop them all
                    continue
                base = base or r["it_s"]
                row = {"model": model, "batch": batch, "variant": name, "world_size": world, **r,
                       "img_s": r["it_s"] * batch * world, "speedup": r["it_s"] / base,
                       "vs_official": r["it_s"] / OFFICIAL_IT_S[model] if batch == 1 else None,
                       "tflop_s": flops * r["it_s"] / 1e12, "gflop_per_it": flops / 1e9}
                row["frac_bf16_peak"] = row["tflop_s"] / peak if peak == peak else None
                rows.append(row)
                say(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
                      flush=True)
    if args.ddp:
        dist.destroy_process_group()
    if rank != 0:
        return 0
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "world_size": world, "bf16_peak_tflop_s": peak,
                                         "rows": rows}, indent=1))
    print(f"\nTraining throughput at {args.size}², ResNet-{args.n_blocks} ngf {args.ngf}, {world} "
          f"process(es), img/s of all — {machine()}")
    print(f"{'model':9} {'batch':>5} {'variant':14} {'it/s':>8} {'img/s':>8} {'×plain':>7} {'×official':>9} "
          f"{'TFLOP/s':>8} {'%bf16':>6} {'peak GiB':>8}")
    for r in rows:
        off = f"{r['vs_official']:.1f}" if r["vs_official"] else "-"
        frac = f"{100 * r['frac_bf16_peak']:.1f}" if r["frac_bf16_peak"] is not None else "-"
        print(f"{r['model']:9} {r['batch']:>5} {r['variant']:14} {r['it_s']:8.1f} {r['img_s']:8.1f} "
              f"{r['speedup']:7.2f} {off:>9} {r['tflop_s']:8.1f} {frac:>6} {r['peak_gib']:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
