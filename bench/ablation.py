"""Run train_translate.py over configs × seeds (in parallel), then tabulate the test-split scores with CIs."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Policy losses off: every config states its own, so a recipe's defaults (cpu_demo turns the
#: policy losses on) do not leak into the "without" rows.
_OFF = ["model.policy_losses.cycle=0", "model.policy_losses.sim_identity=0"]
#: The edge generator preset, stated in full so a recipe's generator size does not override it.
_EDGE = ["generator=edge", "model.generator.ngf=8", "model.generator.n_blocks=6"]

#: The issue-6 ablation: each model with and without its policy-consistency losses (the recipe's
#: small generator), then the winning recipe with the official full-size generator (ResNet-9,
#: ngf 64) and with the robot-sized edge generator (issue 5: edge keeps >= 90 % of full's gap).
ABLATION: dict[str, list[str]] = {
    "cut": ["model=cut", *_OFF],
    "cut+policy": ["model=cut", *_OFF, "model.policy_losses.sim_identity=2.0"],
    "fastcut": ["model=fastcut", *_OFF],
    "fastcut+policy": ["model=fastcut", *_OFF, "model.policy_losses.sim_identity=2.0"],
    "cyclegan": ["model=cyclegan", *_OFF],
    "cyclegan+policy": ["model=cyclegan", "model.policy_losses.cycle=5.0",
                        "model.policy_losses.sim_identity=2.0"],
    "cyclegan+policy full": ["model=cyclegan", "generator=resnet9", "model.generator.ngf=64",
                             "model.generator.n_blocks=9", "model.policy_losses.cycle=5.0",
                             "model.policy_losses.sim_identity=2.0"],
    "cyclegan+policy edge": ["model=cyclegan", *_EDGE, "model.policy_losses.cycle=5.0",
                             "model.policy_losses.sim_identity=2.0"],
}


def _slug(name: str) -> str:
    """Run-folder name of an ablation config (``cyclegan+policy edge`` → ``cyclegan_policy_edge``)."""
    return name.replace("+", "_").replace(" ", "_")


def _val_curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """(step, val/gap_closed, val/turn_agreement) from the run's TensorBoard events."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:  # pragma: no cover
        return []
    out: dict[int, list[float]] = {}
    for f in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        ea = EventAccumulator(str(f))
        ea.Reload()
        tags = ea.Tags().get("scalars", [])
        if "val/gap_closed" not in tags:
            continue
        for g, t in zip(ea.Scalars("val/gap_closed"), ea.Scalars("val/turn_agreement"), strict=False):
            out[g.step] = [g.value, t.value]
    return [(s, v[0], v[1]) for s, v in sorted(out.items())]


def _translated_row(metrics_json: Path) -> dict[str, Any] | None:
    if not metrics_json.exists():
        return None
    m = json.loads(metrics_json.read_text())
    for stage in m.get("stages", []):
        if stage.get("kind") == "translated":
            return stage
    return None


def _headline(stage: dict[str, Any], key: str) -> tuple[float | None, list[float] | None]:
    """Value and CI of a headline metric in a metrics.json stage (tolerant of layout)."""
    node = (stage.get("metrics") or {}).get(key)
    if isinstance(node, dict):
        return node.get("value"), node.get("ci")
    return node, None


def _fmt_ci(value: Any, ci: Any, pct: bool = True) -> str:
    if not isinstance(value, (int, float)):
        return "failed"
    k = 100.0 if pct else 1.0
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        return f"{value * k:.1f} [{ci[0] * k:.1f}, {ci[1] * k:.1f}]"
    return f"{value * k:.1f}"


def markdown_table(results: list[dict[str, Any]], order: list[str] | None = None) -> str:
    """The README table of an ablation: one row per config, mean over seeds, then each seed.

    Args:
        results: ``ablation.json``'s ``results`` (config, seed, stage, val_curve, ...).
        order: config names in display order (default: first appearance).

    Returns:
        A Markdown table: gap closed and turn agreement in % (mean over seeds; per seed with the
        run's 95 % bootstrap interval over test frames) and the training iterations reached.
    """
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["config"], []).append(r)
    lines = ["| config | seeds | gap closed % (mean) | per seed [95 % CI] | turn agreement % (mean) "
             "| per seed [95 % CI] | iterations |",
             "|---|---|---|---|---|---|---|"]
    for name in order or list(by):
        rows = sorted(by.get(name, []), key=lambda r: r["seed"])
        gaps, turns, steps = [], [], []
        for r in rows:
            st = r.get("stage") or {}
            gaps.append(_headline(st, "gap_closed") if st else (None, None))
            turns.append(_headline(st, "turn_agreement") if st else (None, None))
            curve = r.get("val_curve") or []
            steps.append(str(curve[-1][0]) if curve else "?")
        g = [v for v, _ in gaps if isinstance(v, (int, float))]
        t = [v for v, _ in turns if isinstance(v, (int, float))]
        gm = f"{100 * statistics.mean(g):+.1f}" if g else "-"
        tm = f"{100 * statistics.mean(t):.1f}" if t else "-"
        lines.append(f"| {name} | {len(rows)} | {gm} | "
                     f"{'; '.join(_fmt_ci(v, c) for v, c in gaps)} | {tm} | "
                     f"{'; '.join(_fmt_ci(v, c) for v, c in turns)} | {', '.join(steps)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--configs", nargs="+", default=list(ABLATION),
                    help="names from ABLATION, or NAME:override,override,... for custom runs "
                         "({seed} in an override becomes the run's seed)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--common", nargs="*", default=["experiment=cpu_demo"],
                    help="overrides for every run (the budget: recipe, trainer, steps)")
    ap.add_argument("--parallel", type=int, default=1, help="runs at a time")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "ablation")
    ap.add_argument("--threads", type=int, default=None, help="OMP/torch threads per run")
    ap.add_argument("--table", type=Path, default=None,
                    help="only print the Markdown table of a saved ablation.json")
    ap.add_argument("--eval-device", default=None,
                    help="score each run's best checkpoint with eval_policy_on_translated.py on this "
                         "torch device (e.g. cuda) instead of the exported ONNX on the CPU")
    args = ap.parse_args(argv)
    if args.table:
        saved = json.loads(args.table.read_text())
        print(f"common: {' '.join(saved.get('common', []))}; machine: {saved.get('machine')}")
        print(markdown_table(saved["results"]))
        return 0

    # data and the frozen policy once, before the runs race for them
    from datasets.jetbot_synth.generate import ensure_dataset
    from datasets.jetbot_synth.reference_policy import ensure_policy

    root = ensure_dataset(REPO / "data" / "jetbot_synth_128px_seed0", size=128, seed=0)
    ensure_policy(root)

    configs: list[tuple[str, list[str]]] = []
    for name in args.configs:
        if ":" in name:
            name, spec = name.split(":", 1)
            configs.append((name, [o for o in spec.split(",") if o]))
        elif name in ABLATION:
            configs.append((name, ABLATION[name]))
        else:
            ap.error(f"unknown config {name!r}; choose from {', '.join(ABLATION)} or NAME:overrides")
    # seed-major: an ablation cut short still has every config at its first seeds
    jobs = [(name, seed, overrides) for seed in args.seeds for name, overrides in configs]
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(args.threads)
    running: list[tuple[subprocess.Popen[bytes], str, int, float]] = []
    results: list[dict[str, Any]] = []
    t_all = time.time()

    def save() -> None:
        """Write what has finished so far (a killed ablation keeps its finished runs)."""
        tmp = args.out / "ablation.json.tmp"
        tmp.write_text(json.dumps(
            {"machine": f"{platform.node()} {platform.processor()}", "common": args.common,
             "results": results, "minutes": (time.time() - t_all) / 60}, indent=1, default=str))
        os.replace(tmp, args.out / "ablation.json")

    def launch(name: str, seed: int, overrides: list[str]) -> None:
        run_name = f"{_slug(name)}_s{seed}"
        overrides = [o.replace("{seed}", str(seed)) for o in overrides]  # e.g. a teacher per seed
        cmd = [sys.executable, str(REPO / "train_translate.py"), *args.common, *overrides,
               f"seed={seed}", f"run_name={run_name}",
               f"paths.runs_dir={args.out}", "trainer.enable_progress_bar=false"]
        if args.eval_device:
            run_dir = args.out / run_name
            ev = [sys.executable, str(REPO / "eval_policy_on_translated.py"),
                  'translator="$ck"', f"device={args.eval_device}", f"out_dir={run_dir / 'eval'}",
                  f"data={root / 'test'}", "policy=custom", f"policy.path={root / 'policy' / 'policy.onnx'}",
                  f"threads={args.threads or 'auto'}", "progress=false", "synth.build_if_missing=false",
                  "policy.build_if_missing=false"]
            script = (f"{shlex.join([*cmd, 'evaluate.enabled=false'])} && "
                      f"ck={shlex.quote(str(run_dir / 'checkpoints' / 'best.ckpt'))} && "
                      f"{{ [ -f \"$ck\" ] || ck={shlex.quote(str(run_dir / 'checkpoints' / 'last.ckpt'))}; }} && "
                      + " ".join(a if a.startswith("translator=") else shlex.quote(a) for a in ev))
            cmd = ["bash", "-c", script]
        log = open(args.out / f"{run_name}.log", "wb")  # noqa: SIM115 - closed with the process
        running.append((subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT),
                        name, seed, time.time()))

    def reap(block: bool) -> None:
        while running:
            for item in list(running):
                proc, name, seed, t0 = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                run_dir = args.out / f"{_slug(name)}_s{seed}"
                stage = _translated_row(run_dir / "eval" / "metrics.json")
                results.append({"config": name, "seed": seed, "returncode": proc.returncode,
                                "minutes": (time.time() - t0) / 60, "stage": stage,
                                "val_curve": _val_curve(run_dir)})
                gap = _headline(stage, "gap_closed")[0] if stage else None
                turn = _headline(stage, "turn_agreement")[0] if stage else None
                print(f"[ablation] {name} seed {seed}: exit {proc.returncode} after "
                      f"{(time.time() - t0) / 60:.1f} min; test gap closed {gap}, "
                      f"turn agreement {turn}", flush=True)
                save()
            if not block:
                return
            time.sleep(2)

    for job in jobs:
        while len(running) >= args.parallel:
            reap(block=False)
            time.sleep(2)
        launch(*job)
    reap(block=True)
    save()

    print(f"\nAblation on jetbot_synth (test split) — common: {' '.join(args.common)}")
    print(markdown_table(results, [c[0] for c in configs]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
