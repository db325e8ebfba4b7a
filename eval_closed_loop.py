"""Closed-loop evaluation of real→sim translators in jetbot_synth episodes (Hydra entry point)."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as eval_policy_on_translated.py: small maths

import dataclasses
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from translate.eval_translators import TranslatorOutputError
from translate.policy import PolicySpecError, load_policy
from workflows.evaluation import load_translator, resolve_policy

__all__ = ["default_config", "evaluate_closed_loop", "load_world", "main", "run"]

log = logging.getLogger("eval_closed_loop")

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def load_world(setting: Any, policy_path: Path) -> Any:
    """The jetbot_synth world to drive in.

    Args:
        setting: ``auto`` (``dataset.json`` of the policy's jetbot_synth folder, i.e. the world
            the policy and translators were made for), a ``dataset.json`` or a dataset folder.
        policy_path: the policy file (for ``auto``).

    Returns:
        A :class:`datasets.jetbot_synth.world.WorldConfig`.

    Raises:
        FileNotFoundError: no dataset.json there (the message names the path and the key).
    """
    from datasets.jetbot_synth.world import WorldConfig

    if str(setting).lower() == "auto":
        path = policy_path.parent.parent / "dataset.json"
    else:
        path = Path(str(setting))
        if path.is_dir():
            path = path / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"closed_loop.world: {path} not found (give a jetbot_synth "
                                "dataset.json or its folder)")
    try:
        return WorldConfig.from_dict(json.loads(path.read_text())["world"])
    except (KeyError, json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"closed_loop.world: {path} has no valid 'world' entry ({exc})") from None


def _threads(value: Any) -> int | None:
    # auto, as in eval: half the CPUs each for the two concurrent streams (rendering in torch,
    # translator and policy in onnxruntime, pipelined over chunks of the batch)
    if value is None or value == 0:
        return None
    if str(value).lower() == "auto":
        return max(1, (os.cpu_count() or 2) // 2)
    n = int(value)
    if n < 0:
        raise ValueError(f"threads must be auto, null or a positive integer; got {value!r}")
    return n or None


def _translators(cfg: DictConfig, threads: int | None) -> list[Any]:
    value = cfg.get("translator")
    specs = [] if value is None else [str(v) for v in value] if isinstance(
        value, (list, tuple, ListConfig)) else [str(value)]
    out = [load_translator(s, batch_size=int(cfg.batch_size), device=str(cfg.get("device", "cpu")),
                           model=str(cfg.get("translator_model", "auto")), threads=threads)
           for s in specs if s.strip().lower() not in ("identity", "none", "null", "")]
    seen: dict[str, int] = {}
    for t in out:  # unique row names
        k = seen.get(t.name, 0)
        seen[t.name] = k + 1
        if k:
            t.name = f"{t.name}-{k + 1}"
    return out


def evaluate_closed_loop(cfg: DictConfig) -> dict[str, Any]:
    """Drive the episodes through every stage, write the report, print the table.

    Args:
        cfg: the composed ``configs/closed_loop.yaml``.

    Returns:
        The summary (as in metrics.json).

    Raises:
        FileNotFoundError: a missing policy, translator, world or session.
        ValueError: bad settings (the message names the key).
    """
    import torch

    from datasets.jetbot_synth.closed_loop import (
        ClosedLoopSettings,
        build_stages,
        run_closed_loop,
        session_temporal,
    )
    from datasets.jetbot_synth.closed_loop_report import summary_rows, write_closed_loop_report
    from datasets.jetbot_synth.drive import DriveConfig, start_states
    from datasets.jetbot_synth.world import make_rig
    from translate.camera import CameraCorrection, resolve_camera_setting
    from translate.recording import RecordingSession

    cl: Any = cfg.closed_loop
    threads = _threads(cfg.get("threads", "auto"))
    if threads:
        torch.set_num_threads(threads)
    policy_kwargs: dict[str, Any] = {}
    policy_path = resolve_policy(cfg)
    if threads and policy_path.suffix.lower() == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        policy_kwargs["session_options"] = options
    policy = load_policy(policy_path, cfg.policy.get("spec") or None,
                         batch_size=int(cfg.batch_size), **policy_kwargs)
    world = load_world(cl.get("world", "auto"), policy_path)
    drive_cfg = OmegaConf.to_container(cl.get("drive") or {}, resolve=True)
    drive = DriveConfig.from_dict(dict(drive_cfg))  # type: ignore[arg-type]
    cam_setting = cfg.get("camera", "auto")
    camera: CameraCorrection | None
    if str(cam_setting).strip().lower() == "auto":  # the world's own camera pair
        camera = CameraCorrection.from_rig(make_rig(world))
    else:
        cam_path = resolve_camera_setting(cam_setting)
        camera = CameraCorrection.from_yaml(cam_path) if cam_path is not None else None
    translators = _translators(cfg, threads)
    stages = build_stages(list(cl.stages), translators, camera)
    if int(cl.episodes) < 1:
        raise ValueError(f"closed_loop.episodes must be >= 1, got {cl.episodes}")
    boot: Any = cfg.get("bootstrap") or {}
    gif = cl.get("gif_episode")
    settings = ClosedLoopSettings(
        noise_seed=int(cl.noise_seed), jpeg=bool(cl.jpeg),
        gif_episode=None if gif is None else int(gif), gif_every=int(cl.gif_every),
        bootstrap_n=int(boot.get("n", 1000)), bootstrap_seed=int(boot.get("seed", 0)),
        level=float(boot.get("level", 0.95)), dead_zone=float(cfg.get("dead_zone", 0.05)),
        batch_size=int(cfg.batch_size), pipeline_chunks=int(cl.get("pipeline_chunks", 4)),
        progress=bool(cfg.get("progress", True)))
    starts = start_states(int(cl.episodes), int(cl.seed), world, drive)
    result = run_closed_loop(stages, policy, starts, world, drive, camera=camera,
                             settings=settings)
    session = None
    if cl.get("session"):
        session = session_temporal(RecordingSession(str(cl.session)), stages, policy, camera,
                                   max_frames=cl.get("session_max_frames"),
                                   batch_size=int(cfg.batch_size))
    config: dict[str, Any] = {str(k): v for k, v in
                              dict(OmegaConf.to_container(cfg, resolve=True)).items()}  # type: ignore[arg-type]
    config["drive_resolved"] = dataclasses.asdict(drive)
    files = write_closed_loop_report(result, Path(str(cfg.out_dir)), config=config,
                                     session=session, gif_every=settings.gif_every,
                                     html_report=bool((cfg.get("report") or {}).get("html", True)))
    if cfg.get("print_table", True):
        header, rows = summary_rows(result.metrics)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        if session:
            for s in session:
                print(f"session {s['label']}: frame change {s['frame_change']:.2f}, flicker "
                      f"{s['flicker'] if s['flicker'] is None else round(s['flicker'], 3)}, "
                      f"jitter {s['action_jitter']:.4f}")
        print(f"report → {files.get('html', files['markdown'])}")
    out = dict(result.metrics)
    if session is not None:
        out["session"] = session
    return out


def run(cfg: DictConfig) -> int:
    """Evaluate; 0 = done, 1 = an error (one line naming the file or key)."""
    try:
        evaluate_closed_loop(cfg)
    except (FileNotFoundError, ValueError, PolicySpecError, TranslatorOutputError) as exc:
        log.error("%s", exc)
        print(f"eval_closed_loop.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


def default_config(overrides: Mapping[str, Any] | Sequence[str] = ()) -> DictConfig:
    """``configs/closed_loop.yaml`` on top of ``configs/eval.yaml`` (and its groups: ``policy``,
    ``paths``), plus overrides, without Hydra's runtime.

    Args:
        overrides: a mapping of (dotted) keys to values, or ``key=value`` strings
            (``policy=custom`` picks the group's entry, as on the command line).

    Returns:
        The config (``defaults`` and ``hydra`` sections dropped).
    """
    from workflows.evaluation import default_config as eval_default

    return eval_default(overrides, on_top=["closed_loop.yaml"])


def _app_config_dir() -> Path:
    """A private copy of the configs the app composes (see eval_policy_on_translated.py: the
    ``data`` / ``policy`` groups of train.yaml must not be on the search path)."""
    tmp = Path(tempfile.mkdtemp(prefix="sim2real-closed-loop-config-"))
    for name in ("eval.yaml", "closed_loop.yaml"):
        shutil.copy2(CONFIG_DIR / name, tmp / name)
    for group in ("paths", "policy"):
        shutil.copytree(CONFIG_DIR / group, tmp / group)
    return tmp


def main() -> None:
    """``python eval_closed_loop.py translator=x.onnx``; exits 0 when done, 1 on an error."""
    config_dir = _app_config_dir()
    try:
        @hydra.main(version_base="1.3", config_path=str(config_dir), config_name="closed_loop")
        def _app(cfg: DictConfig) -> None:
            code = run(cfg)
            if code:
                sys.exit(code)

        _app()
    finally:
        shutil.rmtree(config_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
