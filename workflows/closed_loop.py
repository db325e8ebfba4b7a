"""The closed-loop evaluation as configured (``configs/closed_loop.yaml`` over ``eval.yaml``): jetbot_synth episodes driven by the policy on each stage's frames."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from workflows.evaluation import default_config as eval_default_config
from workflows.evaluation import load_configured_policy, load_translators, threads_setting

__all__ = ["default_config", "evaluate_closed_loop", "load_world"]


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
    threads = threads_setting(cfg.get("threads", "auto"))
    if threads:
        torch.set_num_threads(threads)
    policy = load_configured_policy(cfg, threads=threads, batch_size=int(cfg.batch_size))
    world = load_world(cl.get("world", "auto"), Path(str(policy.path)))
    drive_cfg = OmegaConf.to_container(cl.get("drive") or {}, resolve=True)
    drive = DriveConfig.from_dict(dict(drive_cfg))  # type: ignore[arg-type]
    cam_setting = cfg.get("camera", "auto")
    camera: CameraCorrection | None
    if str(cam_setting).strip().lower() == "auto":  # the world's own camera pair
        camera = CameraCorrection.from_rig(make_rig(world))
    else:
        cam_path = resolve_camera_setting(cam_setting)
        camera = CameraCorrection.from_yaml(cam_path) if cam_path is not None else None
    translators = load_translators(cfg, threads=threads, batch_size=int(cfg.batch_size),
                                  skip_identity=True)
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
        workers=int(cl.get("workers", 2)),
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


def default_config(overrides: Mapping[str, Any] | Sequence[str] = ()) -> DictConfig:
    """``configs/closed_loop.yaml`` on top of ``configs/eval.yaml`` (and its groups: ``policy``,
    ``paths``), plus overrides, without Hydra's runtime.

    Args:
        overrides: a mapping of (dotted) keys to values, or ``key=value`` strings
            (``policy=custom`` picks the group's entry, as on the command line).

    Returns:
        The config (``defaults`` and ``hydra`` sections dropped).
    """
    return eval_default_config(overrides, on_top=["closed_loop.yaml"])
