"""Export a trained checkpoint's real→sim generator (Lightning or official) to ONNX, as ``export_translator.py`` does."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.checkpointing import load_lightning_generator
from translate.camera import CameraCorrection, resolve_camera_setting
from translate.export import export_generator

__all__ = ["export_checkpoint", "trained_correction"]

_DEFAULT_SIZE = 256  # the official training crop


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _default_size(ckpt: Mapping[str, Any] | None) -> int:
    # the datamodule's crop size, when Lightning saved its hyper-parameters
    dm = (ckpt or {}).get("datamodule_hyper_parameters") or {}
    for key in ("crop_size", "load_size", "image_size"):
        v = dm.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return _DEFAULT_SIZE


def export_checkpoint(
    out: str | os.PathLike[str],
    *,
    ckpt: str | os.PathLike[str] | None = None,
    official: str | os.PathLike[str] | None = None,
    model: str | None = None,
    ngf: int | None = None,
    n_blocks: int | None = None,
    size: int | tuple[int, int] | None = None,
    camera: str | os.PathLike[str] | None = None,
    robot: bool = True,
    bgr: bool = False,
    opset: int = 17,
    config_hash: str = "",
) -> dict[str, Any]:
    """Export a checkpoint's real→sim generator (what ``main`` does; tests call this).

    Args:
        out: output folder.
        ckpt: a Lightning checkpoint (exclusive with ``official``).
        official: an official ``latest_net_G_A.pth`` / ``latest_net_G.pth``.
        model: ``cyclegan`` | ``cut``, for ``official``.
        ngf, n_blocks: checked against the official file (None: inferred from it).
        size: export size, int or (H, W); None: the camera's sim size, else the datamodule's
            crop size saved in the checkpoint, else 256.
        camera: a camera.yaml whose correction belongs before the translator; None: for
            ``ckpt``, the correction the run trained with (:func:`trained_correction`).
        robot: also write the robot-ready graph.
        bgr: the robot graph takes BGR frames.
        opset: ONNX opset.
        config_hash: recorded in the metadata.

    Returns:
        As :func:`translate.export.export_generator`, plus ``notes``: lines about the lens
        correction (where it came from; ``warning: ...`` when the checkpoint does not say).
    """
    if (ckpt is None) == (official is None):
        raise ValueError("give exactly one of --ckpt (Lightning) or --official (official .pth)")
    source = Path(ckpt if ckpt is not None else official)  # type: ignore[arg-type]
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint not found: {source}")
    correction = None
    notes: list[str] = []
    if camera is not None:
        correction = CameraCorrection.from_yaml(camera)
    loaded: Mapping[str, Any] | None = None
    if ckpt is not None:
        if model is not None or ngf is not None or n_blocks is not None:
            raise ValueError("--model, --ngf and --n-blocks apply to --official checkpoints only")
        generator, name, loaded = load_lightning_generator(source)
        trained, where = trained_correction(loaded, source)
        if correction is None and trained is not None:
            correction = trained
            notes.append(f"lens correction: the one the run trained with ({where})")
        elif correction is not None and trained is not None and trained.to_dict() != correction.to_dict():
            notes.append(f"warning: --camera {camera} differs from the lens correction the run trained "
                         f"with ({where}); exporting with --camera")
        elif correction is None and where == "":
            notes.append(f"warning: {source} does not record the run's lens correction (an older "
                         "checkpoint) and no run config was found beside it; if the run trained with "
                         "one, pass --camera camera.yaml")
    else:
        from models.official import load_official_checkpoint

        if model not in ("cyclegan", "cut"):
            raise ValueError(f"--official needs --model cyclegan or cut, got {model!r}")
        generator = load_official_checkpoint(source, model=model, which="G", ngf=ngf,
                                             n_blocks=n_blocks)
        name = model
    if size is None:
        size = correction.out_size if correction is not None else _default_size(loaded)
    info = export_generator(
        generator, out, image_size=size, camera=correction, model_name=name,
        config_hash=config_hash, checkpoint=str(source), robot=robot,
        input_channel_order="BGR" if bgr else "RGB", opset=opset,
        extra_metadata={"checkpoint_sha256": _file_sha256(source)},
    )
    info["notes"] = notes
    return info


def trained_correction(
    ckpt: Mapping[str, Any], path: Path
) -> tuple[CameraCorrection | None, str]:
    """The lens correction a ``train_translate.py`` run trained with.

    Read from the checkpoint's ``camera_correction`` (written since checkpoints keep it), else
    from the run folder's saved config (``RUN/.hydra/config.yaml``: ``data.camera_yaml``, with
    ``"auto"`` meaning ``data.root/camera.yaml``) for a checkpoint at ``RUN/checkpoints/``.

    Args:
        ckpt: the loaded checkpoint.
        path: its file.

    Returns:
        ``(correction or None, where it came from)``; ``where`` is ``""`` when neither the
        checkpoint nor a run config says (an older checkpoint outside its run folder).

    Raises:
        ValueError: the recorded correction or the configured camera.yaml is invalid (named).
    """
    if "camera_correction" in ckpt:
        rec = ckpt["camera_correction"]
        if rec is None:
            return None, f"{path}: trained without a lens correction"
        return CameraCorrection.from_dict(rec, where=f"{path}: camera_correction"), f"{path}"
    cfg_file = path.resolve().parent.parent / ".hydra" / "config.yaml"
    if not cfg_file.is_file():
        return None, ""
    import yaml

    data = (yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}).get("data") or {}
    root = data.get("root")
    near = [Path(str(root)) / "camera.yaml"] if root else []
    setting = data.get("camera_yaml", "auto") if data.get("correct_real", True) else None
    cam_path = resolve_camera_setting(setting, near, what=f"{cfg_file}: data.camera_yaml")
    if cam_path is None:
        missing = f" (no {near[0]})" if near and str(setting).lower() == "auto" else ""
        return None, f"{cfg_file}: trained without a lens correction{missing}"
    correction = CameraCorrection.from_yaml(cam_path)
    return (None if correction.is_identity else correction), f"{cam_path}, from {cfg_file}"
