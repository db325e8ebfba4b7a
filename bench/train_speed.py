"""Training speed of train_translate.py's own train(cfg) (workflows.training): it/s after warm-up, wall time with start-up, peak memory, share of bf16 peak.

Every row is a real ``workflows.training.train(cfg)`` run (Lightning, the configured executor,
TensorBoard, checkpoint callbacks) capped at ``--steps`` iterations, with export and evaluation
off and validation off (they are not iterations). A callback times the iterations after
``--warmup`` (CUDA-synchronised); wall time is from before ``train`` to its return, start-up and
``torch.compile`` included.

    python bench/train_speed.py --json bench/results/train_speed.json            # the default rows
    python bench/train_speed.py --models cut --batch 8 --step fast --steps 200   # one row
    python bench/train_speed.py --recipe gpu                                       # experiment=gpu as shipped

The official code's figures (DESIGN.md: H100, 256², batch 1, fp32) are the ×-official reference.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Official code, H100, 256², batch 1, fp32, torch 2.11 (DESIGN.md): iterations per second.
OFFICIAL_IT_S = {"cyclegan": 11.8, "cut": 14.6, "fastcut": 21.6}
#: Policy-loss overrides per model (CUT has no cycle).
POLICY = {"cyclegan": ["model.policy_losses.cycle=5.0", "model.policy_losses.sim_identity=2.0"],
          "cut": ["model.policy_losses.sim_identity=2.0"],
          "fastcut": ["model.policy_losses.sim_identity=2.0"]}
_OFF = ["model.policy_losses.cycle=0", "model.policy_losses.sim_identity=0"]


class SpeedTimer(Callback):
    """Times training iterations after ``warmup`` and writes ``{it_s, steps, peak_gib}`` to ``out``.

    With ``profile`` > 0 it also runs ``torch.profiler`` over that many iterations after the
    warm-up and adds ``profile``: the wall time, the summed GPU kernel time (``gpu_busy_share`` =
    kernel time / wall: near 1 means the GPU bounds the step, far below 1 means the host does),
    and the kernels with the most GPU time. With ``sync_debug`` > 0 it counts the host's GPU syncs
    over that many iterations by stack (:class:`SyncPoints`) and adds ``sync_points``. Neither
    window counts towards ``it_s``.
    """

    def __init__(self, out: str, warmup: int = 30, profile: int = 0, sync_debug: int = 0) -> None:
        self.out, self.warmup, self.profile_n = out, int(warmup), int(profile)
        self.sync_n = int(sync_debug)
        self.syncs: SyncPoints | None = None
        self.sync_points: dict[str, Any] | None = None
        self.t0: float | None = None
        self.n0 = 0
        self.prof: Any = None
        self.prof_t0 = 0.0
        self.prof_at = -1
        self.profile: dict[str, Any] | None = None
        self.excluded_s, self.excluded_steps = 0.0, 0  # the profiled and sync-counted windows are not timed

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if (self.sync_n > 0 and self.syncs is None and self.sync_points is None
                and trainer.global_step >= self.warmup + 10 and torch.cuda.is_available()):
            self._sync()
            self.syncs = SyncPoints()
            self.syncs.start(trainer.global_step)
        if self.profile_n <= 0 or self.prof is not None or self.profile is not None:
            return
        if trainer.global_step >= self.warmup + 10 and torch.cuda.is_available():
            from torch.profiler import ProfilerActivity, profile

            self._sync()
            self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            self.prof.__enter__()
            self.prof_at, self.prof_t0 = trainer.global_step, time.perf_counter()

    def _finish_profile(self, trainer: Any) -> None:
        self._sync()
        wall = time.perf_counter() - self.prof_t0
        n = trainer.global_step - self.prof_at
        try:
            self._summarise_profile(wall, n)
        finally:
            self.prof = None
            self.excluded_s += time.perf_counter() - self.prof_t0
            self.excluded_steps += n

    def _summarise_profile(self, wall: float, n: int) -> None:
        self.prof.__exit__(None, None, None)
        kernels: dict[str, float] = {}
        try:
            for ev in self.prof.events():  # the GPU's own records (kernels, copies), not host ops
                if ev.device_type == torch.autograd.DeviceType.CUDA:
                    kernels[ev.name] = kernels.get(ev.name, 0.0) + ev.time_range.elapsed_us() / 1e6
        except Exception as exc:  # a profile is a figure, not a reason to lose the row
            self.profile = {"error": f"{type(exc).__name__}: {exc}"}
            return
        busy = sum(kernels.values())
        top = sorted(kernels.items(), key=lambda kv: -kv[1])[:15]
        self.profile = {"iterations": n, "wall_s": wall, "gpu_kernel_s": busy,
                        "gpu_busy_share": busy / wall if wall > 0 else None,
                        "ms_per_it": 1000 * wall / max(n, 1), "gpu_ms_per_it": 1000 * busy / max(n, 1),
                        "top_kernels_ms_per_it": [(k[:90], 1000 * v / max(n, 1)) for k, v in top],
                        **self._host_summary(n)}

    def _host_summary(self, n: int) -> dict[str, Any]:
        """Where the host's time goes: the host ops with the most own (self) and inclusive time
        per iteration, with their calls per iteration (loader waits, syncs, copies, graph launches
        and Python-side ops show up here)."""
        try:
            avgs = [a for a in self.prof.key_averages() if a.device_type != torch.autograd.DeviceType.CUDA]
        except Exception as exc:
            return {"host_error": f"{type(exc).__name__}: {exc}"}
        k = max(n, 1)

        def rows(attr: str) -> list[tuple[str, float, float]]:
            best = sorted(avgs, key=lambda a: -getattr(a, attr))[:20]
            return [(a.key[:90], getattr(a, attr) / 1000 / k, a.count / k) for a in best]

        return {"host_self_ms_per_it": rows("self_cpu_time_total"),
                "host_total_ms_per_it": rows("cpu_time_total")}

    def _finish_syncs(self, trainer: Any) -> None:
        assert self.syncs is not None
        self._sync()
        self.sync_points = self.syncs.stop(trainer.global_step)
        self.excluded_s += time.perf_counter() - self.syncs.t0  # the debug mode slows the host
        self.excluded_steps += int(self.sync_points["iterations"])
        self.syncs = None

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.syncs is not None and trainer.global_step - self.syncs.at >= self.sync_n:
            self._finish_syncs(trainer)
        if self.prof is not None and trainer.global_step - self.prof_at >= self.profile_n:
            self._finish_profile(trainer)
        if self.t0 is None and trainer.global_step >= self.warmup:
            self._sync()
            self.t0, self.n0 = time.perf_counter(), trainer.global_step
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.syncs is not None:
            self._finish_syncs(trainer)
        self._sync()
        if self.prof is not None:
            self._finish_profile(trainer)
        if trainer.global_rank != 0:
            return
        steps = trainer.global_step - self.n0 - self.excluded_steps
        secs = (time.perf_counter() - self.t0 - self.excluded_s) if self.t0 is not None else float("nan")
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
        Path(self.out).write_text(json.dumps({"it_s": steps / secs if secs > 0 else float("nan"),
                                              "timed_steps": steps, "peak_gib": peak,
                                              "world_size": int(trainer.world_size),
                                              "optimizer_in_graph": getattr(pl_module.executor, "opt_in_graph", None),
                                              **({"profile": self.profile} if self.profile else {}),
                                              **({"sync_points": self.sync_points} if self.sync_points else {})}))


class SyncPoints:
    """Counts the host calls that synchronise the GPU (``torch.cuda.set_sync_debug_mode("warn")``)
    between :meth:`start` and :meth:`stop`, by the last frames of the Python stack that made them.

    A sync makes the host wait for every queued kernel, so the host's own work of the next
    iteration (Lightning's hooks, the phases' draws, the graph launches) no longer overlaps the
    GPU's: at batch 1 that is most of an iteration. Only syncs torch reports (``.item()``, a
    blocking copy, ...); a blocking H2D copy from pageable memory is not among them.
    """

    def __init__(self) -> None:
        self.at, self.t0 = 0, 0.0
        self.counts: dict[tuple[str, ...], int] = {}
        self._show: Any = None
        self._saved: Any = None

    def start(self, step: int) -> None:
        """Arm at iteration ``step``."""
        import warnings

        self.at, self.t0 = step, time.perf_counter()
        self._saved = warnings.catch_warnings()  # restores the filters and showwarning on exit
        self._saved.__enter__()
        self._show = warnings.showwarning
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = self._record  # type: ignore[assignment]
        torch.cuda.set_sync_debug_mode("warn")

    def _record(self, message: Any, category: Any, filename: str, lineno: int, *args: Any) -> None:
        import traceback

        if "synchroniz" not in str(message):
            self._show(message, category, filename, lineno, *args)
            return
        frames = [f for f in traceback.extract_stack()[:-1] if "/warnings.py" not in f.filename]
        key = tuple(f"{'/'.join(f.filename.split('/')[-2:])}:{f.lineno} {f.name}" for f in frames[-4:])
        self.counts[key] = self.counts.get(key, 0) + 1

    def stop(self, step: int) -> dict[str, Any]:
        """Disarm; returns ``{iterations, per_iteration, stacks: [(stack, calls per iteration)]}``."""
        torch.cuda.set_sync_debug_mode(0)
        self._saved.__exit__(None, None, None)
        n = max(step - self.at, 1)
        top = sorted(self.counts.items(), key=lambda kv: -kv[1])[:10]
        return {"iterations": step - self.at, "per_iteration": sum(self.counts.values()) / n,
                "stacks": [(list(k), c / n) for k, c in top]}


def iteration_flops(cfg: Any) -> float:
    """FLOPs of one iteration (every phase's forward + backward), counted by torch on ``cfg.model``."""
    from omegaconf import OmegaConf
    from torch.utils.flop_counter import FlopCounterMode

    from models.fast_step import FastExecutor, StepConfig
    from workflows import training

    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(kwargs, dict)
    kwargs.update(training._policy_kwargs(cfg, None))
    m = training.instantiate_model(kwargs).to("cuda" if torch.cuda.is_available() else "cpu")
    size = int(cfg.data.crop_size or cfg.data.synth.size)
    b = int(cfg.data.batch_size)
    dev = next(m.parameters()).device
    ctx: dict[str, Any] = {"real": torch.rand(b, 3, size, size, device=dev) * 2 - 1,
                           "sim": torch.rand(b, 3, size, size, device=dev) * 2 - 1}
    ex = FastExecutor(StepConfig(name="fast"))  # not set up: fp32, its body is forward + backward
    with FlopCounterMode(display=False) as fc:
        m.eager_iteration(ctx, body=lambda phase, c: ex.body(m, phase, c), step=False, live=False)
    return float(fc.get_total_flops())


def bf16_matmul_tflops() -> float:
    """Measured dense bf16 matrix rate of this GPU (8192³, median of 10), TFLOP/s."""
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
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
    times.sort()
    return 2 * n**3 / times[len(times) // 2] / 1e12


def compose(overrides: list[str]) -> Any:
    """The training config with ``overrides``, as ``train_translate.py`` composes it."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    import workflows.training  # noqa: F401  (registers the ${sum:} resolver)

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return hcompose(config_name="train", overrides=overrides)


def run_row(name: str, overrides: list[str], *, steps: int, warmup: int, runs_dir: Path,
            profile: int = 0, sync_debug: int = 0) -> dict[str, Any]:
    """One capped ``train(cfg)`` run; returns its figures."""
    from workflows.training import train

    safe = "".join(c if c.isalnum() else "_" for c in name)
    out = runs_dir / f"{safe}.json"
    ov = [*overrides, f"trainer.max_steps={steps}", "++trainer.limit_val_batches=0",
          "export.enabled=false", "evaluate.enabled=false", "trainer.enable_progress_bar=false",
          "callbacks.last_checkpoint.every_n_train_steps=1000000", f"paths.runs_dir={runs_dir}",
          f"run_name={out.stem}", "+callbacks.speed._target_=bench.train_speed.SpeedTimer",
          f"+callbacks.speed.out={out}", f"+callbacks.speed.warmup={warmup}",
          f"+callbacks.speed.profile={profile}", f"+callbacks.speed.sync_debug={sync_debug}"]
    cfg = compose(ov)
    t0 = time.perf_counter()
    res = train(cfg)
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"name": name, "overrides": overrides, "steps": res["global_step"],
                           "wall_s": wall}
    if out.exists():
        row.update(json.loads(out.read_text()))
    if res.get("rank", 0) != 0:
        return row
    row["img_s"] = row["it_s"] * int(cfg.data.batch_size) * int(row.get("world_size", 1))
    try:
        row["flops_per_it"] = iteration_flops(cfg)
    except Exception as exc:  # a FLOP count is a figure, not a reason to lose the row
        row["flops_per_it"] = None
        row["flops_error"] = str(exc)
    return row


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cpu": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["cyclegan", "cut", "fastcut"])
    ap.add_argument("--policy", choices=["both", "on", "off"], default="both",
                    help="rows with and/or without the policy losses")
    ap.add_argument("--step", nargs="+", default=["fast"], help="executors to time (eager, fast)")
    ap.add_argument("--batch", nargs="+", type=int, default=[1])
    ap.add_argument("--size", type=int, default=256, help="training crop size (official: 256)")
    ap.add_argument("--compile", action="store_true", help="also rows with step.compile=true")
    ap.add_argument("--compile-only", action="store_true", help="only rows with step.compile=true")
    ap.add_argument("--steps", type=int, default=330)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--data-root", default=None, help="dataset root (default: a small jetbot_synth at --size)")
    ap.add_argument("--policy-path", default=None,
                    help="frozen policy for the policy rows (default: the dataset's reference policy)")
    ap.add_argument("--recipe", default=None, help="time an experiment as shipped instead, e.g. gpu")
    ap.add_argument("--extra", nargs="*", default=[], help="overrides added to every row")
    ap.add_argument("--profile", type=int, default=0,
                    help="profile this many iterations after the warm-up (GPU kernel time vs wall)")
    ap.add_argument("--sync-debug", type=int, default=0,
                    help="count the GPU syncs the host makes over this many iterations after the warm-up, by stack")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    rows: list[dict[str, Any]] = []
    runs_dir = Path(tempfile.mkdtemp(prefix="train_speed_"))
    peak = bf16_matmul_tflops() if torch.cuda.is_available() else None
    common = ["select_by=null", *args.extra]
    if args.recipe:
        plan = [(f"experiment={args.recipe}", [f"experiment={args.recipe}", *common])]
    else:
        data = [f"data.synth.size={args.size}", "data.synth.n_real=200", "data.synth.n_sim=200",
                "data.synth.n_val=20", "data.synth.n_test=20", "data.load_size=null",
                "data.crop_size=null", "data.num_workers=4", "data.steps_per_epoch=100000"]
        if args.data_root:
            data.append(f"data.root={args.data_root}")
        pol = [f"policy.path={args.policy_path}"] if args.policy_path else []
        plan = []
        for model in args.models:
            for batch in args.batch:
                for step in args.step:
                    for compiled in ([True] if args.compile_only else [False, True] if args.compile else [False]):
                        for on in {"both": [False, True], "on": [True], "off": [False]}[args.policy]:
                            ov = [f"model={model}", "experiment=full", f"step={step}", *data, *pol,
                                  f"data.batch_size={batch}", *_OFF, *(POLICY[model] if on else []),
                                  *(["step.compile=true"] if compiled else []), *common]
                            name = (f"{model}{'+policy' if on else ''} b{batch} {step}"
                                    f"{' compile' if compiled else ''}")
                            plan.append((name, ov))
    for name, ov in plan:
        print(f"[train_speed] {name}", flush=True)
        try:
            row = run_row(name, ov, steps=args.steps, warmup=args.warmup, runs_dir=runs_dir,
                          profile=args.profile, sync_debug=args.sync_debug)
        except Exception as exc:  # keep going: one failing row must not lose the others
            row = {"name": name, "overrides": ov, "error": f"{type(exc).__name__}: {exc}"}
        if peak and row.get("flops_per_it"):
            row["tflops"] = row["flops_per_it"] * row["it_s"] / 1e12
            row["share_of_bf16_peak"] = row["tflops"] / peak
        model = name.split("+")[0].split(" ")[0]
        if model in OFFICIAL_IT_S and " b1 " in f" {name} " and "it_s" in row:
            row["x_official"] = row["it_s"] / OFFICIAL_IT_S[model]
        rows.append(row)
        if args.json and _rank() == 0:
            _save(args.json, rows, peak)
    if _rank() == 0:
        _print(rows, peak)
    return 0 if all("error" not in r for r in rows) else 1


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _save(path: str, rows: list[dict[str, Any]], peak: float | None) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"machine": machine(), "bf16_matmul_tflops": peak, "rows": rows}, indent=1))


def _print(rows: list[dict[str, Any]], peak: float | None) -> None:
    m = machine()
    print(f"\nmachine: {m.get('gpu', m['cpu'])}, torch {m['torch']}"
          + (f", bf16 matmul {peak:.0f} TFLOP/s measured" if peak else ""))
    print(f"{'row':34s} {'it/s':>7s} {'img/s':>7s} {'x off.':>6s} {'TFLOP/s':>8s} {'% peak':>6s} "
          f"{'wall s':>7s} {'GiB':>5s}")
    for r in rows:
        if "error" in r:
            print(f"{r['name']:34s} ERROR {r['error'][:60]}")
            continue

        def f(k: str, fmt: str, r: dict[str, Any] = r) -> str:
            v = r.get(k)
            return format(v, fmt) if isinstance(v, (int, float)) else "–"

        share = r.get("share_of_bf16_peak")
        print(f"{r['name']:34s} {f('it_s', '7.1f')} {f('img_s', '7.1f')} {f('x_official', '6.2f')} "
              f"{f('tflops', '8.1f')} {format(100 * share, '6.1f') if share else '     –'} "
              f"{f('wall_s', '7.1f')} {f('peak_gib', '5.1f')}")
    for r in rows:
        sp = r.get("sync_points")
        if sp:
            print(f"GPU syncs {r['name']}: {sp['per_iteration']:.2f} per iteration"
                  + "".join(f"\n  {c:.2f}/it  {' > '.join(st[-2:])}" for st, c in sp["stacks"][:5]))
        pr = r.get("profile")
        if pr and "error" not in pr:
            print(f"profile {r['name']}: {pr['ms_per_it']:.2f} ms/it wall, {pr['gpu_ms_per_it']:.2f} ms/it of GPU "
                  f"kernels (busy {100 * (pr['gpu_busy_share'] or 0):.0f} %); top: "
                  + "; ".join(f"{k[:40]} {v:.2f}" for k, v in pr["top_kernels_ms_per_it"][:5]))
            if pr.get("host_self_ms_per_it"):
                print("  host, own ms/it (calls/it): " + "; ".join(
                    f"{k[:40]} {v:.2f} ({c:g})" for k, v, c in pr["host_self_ms_per_it"][:8]))


if __name__ == "__main__":
    sys.exit(main())
