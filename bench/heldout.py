"""Held-out real looks: train a recipe untouched on each look's own folders, score it on the look's test split.

The looks (``datasets/jetbot_synth/looks.py``) post-process jetbot_synth's sim renders into real
cameras nobody tuned on (colour cast, optics, noise, texture, lighting), keeping the paired sim
frames and expert actions for scoring. For each look × seed this runs::

    python train_translate.py experiment=<recipe> data=folders data.root=<look> \\
        data.val_dir=<look>/val policy=custom policy.path=<the jetbot_synth policy> seed=<seed>

(validation picks the checkpoint on the look's own val split, as a user with paired val frames
would; the look's test split is only scored), and prints raw / translated / sim rows per run with
95 % intervals, the iterations and the wall time. Use it to report, never to choose::

    python bench/heldout.py --recipe gpu --looks cool_led sodium_dusk overcast_phone --seeds 0 1 2
    python bench/heldout.py --recipe cpu_demo --threads 2 --json bench/results/heldout_cpu.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ablation import _fmt_ci, _headline, _val_curve  # noqa: E402  (bench/ is on sys.path)


def stages_by_kind(metrics_json: Path) -> dict[str, dict[str, Any]]:
    """Stage kind (raw, corrected, translated, sim) → its metrics.json entry."""
    if not metrics_json.exists():
        return {}
    return {st.get("kind", st.get("name")): st for st in json.loads(metrics_json.read_text()).get("stages", [])}


def run_one(recipe: str, look_root: Path, seed: int, policy: Path, runs_dir: Path,
            threads: int | None, extra: list[str]) -> dict[str, Any]:
    """Train and evaluate one (recipe, look, seed); returns its record."""
    name = f"heldout_{recipe}_{look_root.name}_s{seed}"
    cmd = [sys.executable, str(REPO / "train_translate.py"), f"experiment={recipe}", "data=folders",
           f"data.root={look_root}", f"data.val_dir={look_root / 'val'}", "policy=custom",
           f"policy.path={policy}", f"seed={seed}", f"run_name={name}", f"paths.runs_dir={runs_dir}",
           "trainer.enable_progress_bar=false", *extra]
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    run_dir = runs_dir / name
    (runs_dir / f"{name}.log").write_text(proc.stdout + proc.stderr)
    stages = stages_by_kind(run_dir / "eval" / "metrics.json")
    curve = _val_curve(run_dir)
    return {"recipe": recipe, "look": look_root.name, "seed": seed, "returncode": proc.returncode,
            "wall_s": wall, "run_dir": str(run_dir), "stages": stages, "val_curve": curve,
            "command": " ".join(cmd[1:])}


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per run with raw / translated / sim turn agreement and gap closed [95 % CI]."""
    lines = ["| recipe | look | seed | raw turn agr. % | translated turn agr. % [95 % CI] | sim turn agr. % "
             "| gap closed % [95 % CI] | iterations | wall min |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        st = r.get("stages") or {}

        def cell(kind: str, key: str, st: dict[str, Any] = st) -> str:
            return _fmt_ci(*_headline(st[kind], key)) if kind in st else "failed"

        raw = _headline(st["raw"], "turn_agreement")[0] if "raw" in st else None
        sim = _headline(st["sim"], "turn_agreement")[0] if "sim" in st else None
        it = r["val_curve"][-1][0] if r.get("val_curve") else "?"
        lines.append(f"| {r['recipe']} | {r['look']} | {r['seed']} | "
                     f"{_fmt_ci(raw, None)} | {cell('translated', 'turn_agreement')} | {_fmt_ci(sim, None)} | "
                     f"{cell('translated', 'gap_closed')} | {it} | {r['wall_s'] / 60:.1f} |")
    return "\n".join(lines)


def worst_table(results: list[dict[str, Any]]) -> str:
    """Markdown: per recipe × look, the worst seed's gap closed [95 % CI] and the seeds it is the worst of."""
    groups: dict[tuple[str, str], list[tuple[float, str, int]]] = {}
    for r in results:
        st = (r.get("stages") or {}).get("translated")
        value, ci = _headline(st, "gap_closed") if st else (None, None)
        key = (r["recipe"], r["look"])
        # a failed run counts as the worst
        groups.setdefault(key, []).append((float("-inf") if value is None else value,
                                           _fmt_ci(value, ci) if st else "failed", r["seed"]))
    lines = ["| recipe | look | seeds | worst gap closed % [95 % CI] | worst seed |", "|---|---|---|---|---|"]
    for (recipe, look), rows in sorted(groups.items()):
        _, cell, seed = min(rows)
        lines.append(f"| {recipe} | {look} | {len(rows)} | {cell} | {seed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from datasets.jetbot_synth.looks import LOOKS, build_heldout_dataset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="gpu", help="experiment=... to run untouched (gpu, cpu_demo)")
    ap.add_argument("--looks", nargs="+", default=sorted(LOOKS), choices=sorted(LOOKS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--src", type=Path, default=REPO / "data" / "jetbot_synth_128px_seed0",
                    help="the jetbot_synth dataset whose sim renders the looks are made from")
    ap.add_argument("--looks-dir", type=Path, default=REPO / "data" / "heldout")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "heldout")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per run")
    ap.add_argument("--parallel", type=int, default=1,
                    help="runs at a time (on one GPU only with CUDA MPS running: without it they "
                         "time-slice the GPU and each runs fewer iterations in its wall-clock guard)")
    ap.add_argument("--extra", nargs="*", default=[], help="overrides for every run (say why in the report)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--table", type=Path, default=None, help="print the table of a saved JSON and exit")
    args = ap.parse_args(argv)
    if args.table:
        saved = json.loads(args.table.read_text())["results"]
        print(table(saved) + "\n\n" + worst_table(saved))
        return 0
    policy = args.src / "policy" / "policy.onnx"
    if not policy.exists():
        raise SystemExit(f"--src {args.src} has no policy/policy.onnx (run python train_translate.py once)")
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
               "cores": os.cpu_count()}
    try:
        import torch

        if torch.cuda.is_available():
            machine["gpu"] = torch.cuda.get_device_name(0)
        machine["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    results: list[dict[str, Any]] = []
    jobs = [(build_heldout_dataset(args.src, args.looks_dir / look, look, seed=0), seed)
            for look in args.looks for seed in args.seeds]
    lock = threading.Lock()

    def one(job: tuple[Path, int]) -> None:
        root, seed = job
        print(f"[heldout] {args.recipe} on {root.name}, seed {seed}", flush=True)
        rec = run_one(args.recipe, root, seed, policy, args.runs_dir, args.threads, args.extra)
        with lock:
            results.append(rec)
            results.sort(key=lambda r: (r["look"], r["seed"]))
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({"machine": machine, "parallel": args.parallel,
                                                 "results": results}, indent=1))

    with concurrent.futures.ThreadPoolExecutor(max(1, args.parallel)) as pool:
        list(pool.map(one, jobs))
    print(table(results) + "\n\n" + worst_table(results))
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
