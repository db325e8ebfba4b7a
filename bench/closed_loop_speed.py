"""Benchmark: closed-loop episodes per second — 100 episodes × 200 steps at 128 px through an edge translator.

The target of issue 15: the ``translated`` stage of ``eval_closed_loop.py`` (render the real
camera at every pose, lens-correct, translate with an edge generator through the robot runtime,
run the frozen policy, step the robots), 100 episodes × 200 steps at 128 px, in ≤ 2 minutes on
the 2-core CPU. The edge generator is untrained (random weights; the speed does not depend on
them), so its episodes rarely end early: close to the full 20,000 steps are timed.

    PYTHONPATH=$PWD python bench/closed_loop_speed.py                  # the target run
    PYTHONPATH=$PWD python bench/closed_loop_speed.py --episodes 20 --steps 50   # a quick look

Prints the machine, the figures and the split per part; writes ``bench/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.machine import cpu_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="torch and onnxruntime threads per worker (the workers run concurrently)")
    p.add_argument("--chunks", type=int, default=4, help="chunks per step's batch (1 = one batch)")
    p.add_argument("--workers", type=int, default=2, help="threads working on chunks at once")
    p.add_argument("--policy", default=str(REPO / "data/jetbot_synth_128px_seed0/policy/policy.onnx"))
    p.add_argument("--translator", default=None,
                   help="a translator.onnx (default: export an untrained edge generator)")
    p.add_argument("--name", default="closed_loop_speed_cpu", help="results file stem")
    p.add_argument("--note", default="", help="free text stored with the figures (e.g. load)")
    args = p.parse_args(argv)

    import dataclasses

    import onnxruntime as ort
    import torch

    from datasets.jetbot_synth.closed_loop import ClosedLoopSettings, build_stages, run_closed_loop
    from datasets.jetbot_synth.drive import DriveConfig, start_states
    from datasets.jetbot_synth.world import WorldConfig, make_rig
    from translate.camera import CameraCorrection
    from translate.eval_translators import OnnxTranslator
    from translate.policy import load_policy

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = (f"{platform.node()}, CPU {cpu_model()}, {cores} usable cores, python "
               f"{platform.python_version()}, torch {torch.__version__}, onnxruntime "
               f"{ort.__version__}")
    print(f"machine: {machine}\nload average at start: {load_start}", flush=True)

    world = WorldConfig.from_dict(json.loads((Path(args.policy).parent.parent / "dataset.json")
                                             .read_text())["world"])
    size = world.size
    with tempfile.TemporaryDirectory() as tmp:
        if args.translator is None:
            from models.networks import ResnetGenerator, edge_generator_kwargs
            from translate.export import export_generator

            torch.manual_seed(0)
            gen = ResnetGenerator(**edge_generator_kwargs()).eval()
            export_generator(gen, Path(tmp) / "edge", image_size=size, model_name="edge",
                             robot=False)
            t_path = str(Path(tmp) / "edge" / "translator.onnx")
            t_name = "edge (untrained)"
        else:
            t_path, t_name = args.translator, Path(args.translator).parent.parent.name
        translator = OnnxTranslator(t_path, name="edge", batch_size=args.episodes,
                                    threads=args.threads)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        policy = load_policy(args.policy, session_options=opts, batch_size=args.episodes)
        camera = CameraCorrection.from_rig(make_rig(world))
        drive = dataclasses.replace(DriveConfig(), max_steps=args.steps)
        starts = start_states(args.episodes, 0, world, drive)
        stages = build_stages(["translated"], [translator], camera)
        settings = ClosedLoopSettings(progress=False, bootstrap_n=0, gif_episode=None,
                                      batch_size=args.episodes, pipeline_chunks=args.chunks,
                                      workers=args.workers)
        t0 = time.perf_counter()
        res = run_closed_loop(stages, policy, starts, world, drive, camera=camera,
                              settings=settings)
        wall = time.perf_counter() - t0
    m = res.metrics["stages"][0]
    steps = m["steps"]
    timing = m["timing"]
    drive_s = wall - sum(timing.values())
    out = {
        "machine": machine,
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "threads": args.threads,
        "pipeline_chunks": args.chunks,
        "workers": args.workers,
        "translator": t_name,
        "episodes": args.episodes,
        "max_steps": args.steps,
        "size": size,
        "steps_run": steps,
        "seconds": round(wall, 2),
        "steps_per_s": round(steps / wall, 1),
        "target_s": 120.0 * (args.episodes * args.steps) / 20000.0,
        # pipelined, the parts overlap (rendering runs beside translator and policy), so they
        # add up to more than the wall time; sequential, the rest is kinematics and scene states
        "split_s": timing if args.chunks > 1 else {
            **timing, "kinematics_and_scene_states": round(drive_s, 2)},
        "success": m["success"]["value"],
        "note": args.note,
    }
    print(f"{args.episodes} episodes × {args.steps} steps at {size} px, {t_name}: {steps} steps "
          f"in {wall:.1f} s ({steps / wall:.0f} steps/s; target ≤ {out['target_s']:.0f} s)")
    print("split (s" + (", overlapping" if args.chunks > 1 else "") + "): "
          + ", ".join(f"{k} {v:.1f}" for k, v in out["split_s"].items()))
    print(f"load average at end: {out['load_average_end']}")
    res_dir = REPO / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / f"{args.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"→ bench/results/{args.name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
