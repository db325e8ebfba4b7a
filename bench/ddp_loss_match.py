"""Do DDP losses match one process with the same global batch? N ranks × b vs 1 process × N·b, two seeds.

A script, not a test (the fast 60-step check is ``pytest -m slow -k ddp``). For each model it trains
``train_translate.py`` three times on jetbot_synth (the CPU recipe, policy losses as the recipe
sets them, no validation or export):

- ``ddp``: ``trainer=ddp`` with ``--processes`` ranks × per-rank batch ``--batch`` (``--seed``);
- ``single``: one process × batch processes·batch (the same seed), the same global batch;
- ``single_seed1``: the same with the next seed: the seed-to-seed difference is the noise yardstick;
- ``single_small``: one process × the per-rank batch b (the control: ranks that trained apart,
  without averaging their gradients, would look like this one).

It then compares the mean of each logged loss over the last ``--window`` steps: DDP matches
"within noise" when |ddp − single| ≤ max(|single − single_seed1|, 2 standard errors). The
runs of a model go ``--parallel`` at a time (split the cores with ``--threads``). Usage::

    python bench/ddp_loss_match.py                                   # 2 gloo ranks on the CPU
    python bench/ddp_loss_match.py --accelerator gpu --processes 2   # 2 GPUs, NCCL
    python bench/ddp_loss_match.py --models cut --steps 300 --json bench/results/ddp_loss_match.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: losses compared per model (TensorBoard tags train_translate.py logs)
LOSS_TAGS: dict[str, list[str]] = {
    "cyclegan": ["train/loss_G", "train/loss_D_A", "train/loss_D_B", "train/loss_cycle_A",
                 "train/loss_cycle_B"],
    "cut": ["train/loss_G", "train/loss_D", "train/loss_NCE"],
    "fastcut": ["train/loss_G", "train/loss_D", "train/loss_NCE"],
}


def tb_scalars(run_dir: Path, tag: str) -> dict[int, float]:
    """step → value of one TensorBoard scalar of a run (all event files, the last write wins)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[int, float] = {}
    for f in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        ea = EventAccumulator(str(f), size_guidance={"scalars": 0})
        ea.Reload()
        if tag in ea.Tags().get("scalars", []):
            out.update({e.step: e.value for e in ea.Scalars(tag)})
    return out


def window_stats(values: dict[int, float], last_step: int, window: int) -> tuple[float, float, int]:
    """(mean, standard error, count) of the values logged in the last ``window`` steps."""
    v = [x for s, x in values.items() if s > last_step - window]
    if not v:
        return math.nan, math.nan, 0
    se = statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else math.nan
    return statistics.fmean(v), se, len(v)


def command(model: str, name: str, overrides: list[str], args: argparse.Namespace, out: Path) -> list[str]:
    """The ``train_translate.py`` command line of one run."""
    cmd = [sys.executable, str(REPO / "train_translate.py"), f"model={model}", "experiment=cpu_demo",
           f"trainer.max_steps={args.steps}", "trainer.log_every_n_steps=1",
           "++trainer.limit_val_batches=0", "evaluate.enabled=false", "export.enabled=false",
           "trainer.enable_progress_bar=false", "logger=tensorboard", f"paths.runs_dir={out}",
           f"run_name={model}_{name}", f"data.num_workers={args.workers}", *overrides,
           *args.extra]
    print(f"[ddp_loss_match] {model} {name}: {' '.join(cmd[2:])}", flush=True)
    return cmd


def binned(values: dict[int, float], width: int) -> list[float]:
    """Means of the values over consecutive ``width``-step bins (the loss curve, for the JSON)."""
    bins: dict[int, list[float]] = {}
    for step, v in values.items():
        bins.setdefault(step // width, []).append(v)
    return [round(statistics.fmean(bins[k]), 4) for k in sorted(bins)]


def run_all(cmds: dict[str, list[str]], args: argparse.Namespace) -> dict[str, float]:
    """Run the commands ``args.parallel`` at a time (logs in ``--out``); name → wall seconds.

    Raises:
        RuntimeError: a run failed; the message holds its log's tail (the others are stopped).
    """
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    walls: dict[str, float] = {}
    todo = list(cmds.items())
    running: list[tuple[str, subprocess.Popen[bytes], float]] = []
    while todo or running:
        while todo and len(running) < args.parallel:
            name, cmd = todo.pop(0)
            with open(args.out / f"{name}.log", "wb") as log:
                proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((name, proc, time.perf_counter()))
        for item in list(running):
            name, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode != 0:
                for _, other, _ in running:
                    other.kill()
                tail = (args.out / f"{name}.log").read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{name} failed (exit {proc.returncode}):\n{tail}")
            walls[name] = time.perf_counter() - t0
        time.sleep(0.5)
    return walls


def compare(model: str, out: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows (one per loss tag) comparing the three runs of ``model`` over the last window."""
    rows = []
    for tag in LOSS_TAGS[model]:
        stats = {name: window_stats(tb_scalars(out / f"{model}_{name}", tag), args.steps, args.window)
                 for name in RUNS}
        (d, d_se, n), (s, s_se, _) = stats["ddp"], stats["single"]
        s1, small = stats["single_seed1"][0], stats["single_small"][0]
        noise = max(abs(s - s1), 2 * math.hypot(d_se, s_se))
        curves = {name: binned(tb_scalars(out / f"{model}_{name}", tag), 50) for name in RUNS}
        rows.append({"model": model, "loss": tag.removeprefix("train/"), "ddp": d, "single": s,
                     "single_seed1": s1, "single_small": small, "diff": d - s, "noise": noise,
                     "n": n, "within_noise": bool(abs(d - s) <= noise), "curves_per_50": curves})
    return rows


#: the runs of one model
RUNS = ("ddp", "single", "single_seed1", "single_small")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["cyclegan", "cut"], choices=sorted(LOSS_TAGS))
    ap.add_argument("--processes", type=int, default=2, help="DDP ranks")
    ap.add_argument("--batch", type=int, default=1, help="per-rank batch")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--window", type=int, default=100, help="compare the mean over the last N steps")
    ap.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--threads", type=int, default=None, help="OMP threads per process")
    ap.add_argument("--parallel", type=int, default=1, help="runs at a time (a DDP run is N processes)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the DDP and 1-process runs (+1: the yardstick)")
    ap.add_argument("--workers", type=int, default=0, help="data.num_workers")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "ddp_loss_match")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("extra", nargs="*", help="more Hydra overrides for every run")
    args = ap.parse_args(argv)

    from datasets.jetbot_synth.generate import ensure_dataset
    from datasets.jetbot_synth.reference_policy import ensure_policy

    ensure_policy(ensure_dataset(REPO / "data" / "jetbot_synth_128px_seed0", size=128, seed=0))
    n, b = args.processes, args.batch
    common = [f"trainer.accelerator={args.accelerator}"]
    rows: list[dict[str, Any]] = []
    walls: dict[str, float] = {}
    for model in args.models:
        one = [*common, "trainer.devices=1"]
        s0, s1 = args.seed, args.seed + 1
        runs = {"ddp": [*common, "trainer=ddp", f"trainer.devices={n}", f"data.batch_size={b}", f"seed={s0}"],
                "single": [*one, f"data.batch_size={n * b}", f"seed={s0}"],
                "single_seed1": [*one, f"data.batch_size={n * b}", f"seed={s1}"],
                "single_small": [*one, f"data.batch_size={b}", f"seed={s0}"]}
        cmds = {f"{model}_{name}": command(model, name, ov, args, args.out) for name, ov in runs.items()}
        walls.update(run_all(cmds, args))
        rows += compare(model, args.out, args)
    import torch

    machine = (f"{platform.node()}, {os.cpu_count()} CPUs, "
               f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}, "
               f"torch {torch.__version__}, python {platform.python_version()}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows, "wall_s": walls}, indent=1))
    print(f"\nDDP {n} × batch {b} vs 1 × batch {n * b} ({args.accelerator}), {args.steps} steps, "
          f"mean of the last {args.window} — {machine}")
    print(f"columns: DDP {n}×{b}; 1×{n * b} seeds 0 and 1; 1×{b} (control); DDP − 1×{n * b}; noise")
    print(f"{'model':9} {'loss':13} {'ddp':>8} {'single':>8} {'seed 1':>8} {'1×' + str(b):>8} {'diff':>8} "
          f"{'noise':>8}  within noise")
    for r in rows:
        print(f"{r['model']:9} {r['loss']:13} {r['ddp']:8.4f} {r['single']:8.4f} {r['single_seed1']:8.4f} "
              f"{r['single_small']:8.4f} {r['diff']:+8.4f} {r['noise']:8.4f}  {r['within_noise']}")
    return 0 if all(r["within_noise"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
