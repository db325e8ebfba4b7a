"""Hostile checks of the crash-safety promises: SIGKILLed recordings and trainings, and bad inputs.

    python bench/reliability.py --record-kills 20 --train-kills 3 --json bench/results/reliability.json

- Recording: ``record_real.py`` on a 150-frame folder, SIGKILLed at random moments and resumed
  each time, then resumed to the end: frames listed that do not decode (broken), source frames
  missing between listed ones (lost), source frames listed twice (duplicated).
- Training: a tiny CPU CUT run SIGKILLed at random moments and resumed with ``ckpt_path=last``
  until it reaches its step count: max |weight difference| against an uninterrupted run.
- Bad inputs: commands with broken input, each must end with one line naming the culprit (no
  traceback, non-zero exit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PY = sys.executable
N_SOURCE = 150  # frames in the recorded folder (the index is written into each frame's pixel)
_QUIET = ["hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


def _images(folder: Path, n: int, size: int = 32) -> None:
    from translate.imageio import write_image

    for i in range(n):
        img = np.full((size, size, 3), (i * 4) % 256, np.uint8)
        img[0, 0] = (i, 255 - i, 7)
        write_image(folder / f"{i:03d}.png", img)


def recording(kills: int, seed: int, work: Path) -> dict[str, Any]:
    """SIGKILL a folder recording ``kills`` times at random moments, resuming each time."""
    from translate.recording import RecordingSession

    rng = random.Random(seed)
    src, out = work / "src", work / "session"
    _images(src, N_SOURCE)
    cmd = [PY, str(REPO / "record_real.py"), "source=folder", f"source.path={src}", "fps=30", "pace_files=true", "format=png",
           f"out={out}", "live=false", "width=null", "height=null", *_QUIET]
    for k in range(kills):
        proc = subprocess.Popen([*cmd, *(["resume=true"] if k else [])], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.2, 2.4))  # start-up ~1.2 s, then a frame every ~33 ms
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run([*cmd, "resume=true"], cwd=REPO, check=True, capture_output=True)
    s = RecordingSession(out)
    broken = 0
    seen: list[int] = []
    for i in range(len(s)):
        try:
            img = s.load_frame(i)
            seen.append(int(img[0, 0, 0]))  # the source frame's index, written into its pixel
        except Exception:  # noqa: BLE001 - counting, not handling
            broken += 1
    dup = len(seen) - len(set(seen))
    lost = len(set(range(N_SOURCE)) - set(seen))
    return {"kills": kills, "frames_listed": len(s), "broken": broken, "lost": lost, "duplicated": dup}


def _train_cmd(data: Path, runs: Path, name: str, extra: list[str]) -> list[str]:
    return [PY, str(REPO / "train_translate.py"), "model=cut", "data=folders", f"data.root={data}",
            "data.load_size=null", "data.crop_size=null", "data.num_workers=0", "policy=none",
            "experiment=cpu_demo", "trainer.max_steps=150", "model.generator.ngf=8", "model.generator.n_blocks=2",
            "model.discriminator.ndf=8", "model.num_patches=16", f"paths.runs_dir={runs}", f"run_name={name}",
            "trainer.enable_progress_bar=false", "callbacks.last_checkpoint.every_n_train_steps=7",
            "data.steps_per_epoch=7", "model.n_epochs=15", "model.n_epochs_decay=15", "export.enabled=false",
            "evaluate.enabled=false", "model.policy_losses.cycle=0", "model.policy_losses.sim_identity=0",
            *_QUIET, *extra]


def training(kills: int, seed: int, work: Path) -> dict[str, Any]:
    """Kill a tiny CPU run at random moments, resume until done, compare with an uninterrupted run."""
    import torch

    from models.checkpointing import load_checkpoint

    rng = random.Random(seed)
    data, runs = work / "data", work / "runs"
    for dom in ("real", "sim"):
        _images(data / dom, 8)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(_train_cmd(data, runs, "ref", []), cwd=REPO, check=True, capture_output=True, env=env)
    ref = load_checkpoint(runs / "ref" / "checkpoints" / "last.ckpt")
    last = runs / "killed" / "checkpoints" / "last.ckpt"
    killed_at: list[int] = []
    for _ in range(kills):
        extra = ["ckpt_path=last"] if last.exists() else []
        proc = subprocess.Popen(_train_cmd(data, runs, "killed", extra), cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(5.0, 7.5))  # start-up ~4.5 s, then ~40 it/s
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at.append(int(load_checkpoint(last)["global_step"]) if last.exists() else -1)
    subprocess.run(_train_cmd(data, runs, "killed", ["ckpt_path=last"] if last.exists() else []),
                   cwd=REPO, check=True, capture_output=True, env=env)
    end = load_checkpoint(last)
    diff = max(float((ref["state_dict"][k].float() - end["state_dict"][k].float()).abs().max())
               for k in ref["state_dict"])
    adam = max(float((t.float() - end["optimizer_states"][i]["state"][j][n].float()).abs().max())
               for i, o in enumerate(ref["optimizer_states"]) for j, st in o["state"].items()
               for n, t in st.items() if isinstance(t, torch.Tensor))
    return {"kills": kills, "last_checkpoint_step_after_each_kill": killed_at, "steps": int(end["global_step"]),
            "max_weight_diff": diff, "max_adam_state_diff": adam}


def bad_inputs(work: Path) -> list[dict[str, Any]]:
    """Run commands with broken input; each should exit non-zero with one line and no traceback."""
    from PIL import Image

    data = work / "bad"
    for dom in ("real", "sim"):
        _images(data / dom, 4)
    bomb = work / "bomb"
    _images(bomb / "real", 3)
    _images(bomb / "sim", 3)
    Image.new("L", (20000, 20000)).save(bomb / "real" / "huge.png", optimize=True)
    (work / "trunc.pth").write_bytes(b"PK\x03\x04" + b"\0" * 50)
    absurd = work / "absurd"
    _images(absurd / "real", 3)
    _images(absurd / "sim", 3)
    (absurd / "camera.yaml").write_text(
        "real: {width: 32, height: 32, fx: 10, fy: 10, cx: 15.5, cy: 15.5, model: pinhole, dist: [50, -80, 0, 0]}\n"
        "sim: {width: 32, height: 32, fx: 20, fy: 20, cx: 15.5, cy: 15.5}\n")
    train = [PY, "train_translate.py", "model=cut", "data=folders", "policy=none", "experiment=cpu_demo",
             "trainer.max_steps=1", f"paths.runs_dir={work / 'runs'}", "trainer.enable_progress_bar=false",
             "export.enabled=false", "model.policy_losses.cycle=0", "model.policy_losses.sim_identity=0"]
    cases = [
        ("data.batch_size=abc", [*train, f"data.root={data}", "data.batch_size=abc"]),
        ("data.batch_size=0", [*train, f"data.root={data}", "data.batch_size=0"]),
        ("data.crop_size=-32", [*train, f"data.root={data}", "data.crop_size=-32"]),
        ("crop larger than the resize", [*train, f"data.root={data}", "data.load_size=64", "data.crop_size=128"]),
        ("data.crop_size=null with load_size 286", [*train, f"data.root={data}", "data.crop_size=null",
                                                    "data.load_size=286"]),
        ("missing data folder", [*train, f"data.root={work / 'nowhere'}"]),
        ("20000x20000 PNG, on_error=raise", [*train, f"data.root={bomb}", "data.on_error=raise", "data.cache=true",
                                             "data.crop_size=32"]),
        ("crop larger than the frames", [*train, f"data.root={data}", "data.crop_size=64"]),
        ("absurd camera.yaml", [*train, f"data.root={absurd}"]),
        ("ckpt_path=last without a checkpoint", [*train, f"data.root={data}", "ckpt_path=last",
                                                 f"run_dir={work / 'fresh'}"]),
        ("unknown model", [*train, f"data.root={data}", "model=cyclegun"]),
        ("truncated official .pth", [PY, "export_translator.py", "--official", str(work / "trunc.pth"),
                                     "--model", "cyclegan", "--out", str(work / "exp")]),
        ("record every_nth=0", [PY, "record_real.py", "source=folder", f"source.path={data / 'real'}",
                                "every_nth=0", f"out={work / 'rec'}", "live=false"]),
        ("eval bootstrap.n=-5", [PY, "eval_policy_on_translated.py", "translator=identity",
                                 f"data={data / 'real'}", "bootstrap.n=-5", f"out_dir={work / 'ev'}"]),
    ]
    rows = []
    for name, cmd in cases:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        text = (r.stdout + r.stderr).strip()
        lines = [ln for ln in r.stderr.splitlines() + r.stdout.splitlines()
                 if ("ERROR" in ln or "error:" in ln or "Could not" in ln) and "HYDRA_FULL_ERROR" not in ln]
        rows.append({"input": name, "exit_code": r.returncode, "traceback": "Traceback" in text,
                     "message": (lines[0] if lines else text.splitlines()[-1] if text else "")[:300]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record-kills", type=int, default=20)
    ap.add_argument("--train-kills", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    out: dict[str, Any] = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                       "python": platform.python_version()}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "r").mkdir()
        (work / "t").mkdir()
        (work / "b").mkdir()
        out["recording"] = recording(args.record_kills, args.seed, work / "r")
        out["training"] = training(args.train_kills, args.seed, work / "t")
        out["bad_inputs"] = bad_inputs(work / "b")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    r, t = out["recording"], out["training"]
    print(f"recording: {r['kills']} SIGKILLs, {r['frames_listed']} frames listed: {r['broken']} broken, "
          f"{r['lost']} lost, {r['duplicated']} duplicated")
    print(f"training: {t['kills']} SIGKILLs (last.ckpt at steps {t['last_checkpoint_step_after_each_kill']}), "
          f"resumed to {t['steps']}: max weight diff {t['max_weight_diff']:.3g}, "
          f"max Adam state diff {t['max_adam_state_diff']:.3g}")
    print("| input | exit | traceback | message |\n|---|---|---|---|")
    for b in out["bad_inputs"]:
        print(f"| {b['input']} | {b['exit_code']} | {'yes' if b['traceback'] else 'no'} | {b['message']} |")
    bad_ok = all(b["exit_code"] != 0 and not b["traceback"] for b in out["bad_inputs"])
    return 0 if (r["broken"] == r["lost"] == r["duplicated"] == 0 and t["max_weight_diff"] == 0 and bad_ok) else 1


if __name__ == "__main__":
    sys.exit(main())
