"""Export a trained checkpoint's real→sim generator (Lightning or official) to ONNX, as ``export_translator.py`` does."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.checkpointing import load_lightning_generator
from translate.camera import CameraCorrection
from translate.export import export_generator

__all__ = ["export_checkpoint"]

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
        camera: a camera.yaml whose correction belongs before the translator.
        robot: also write the robot-ready graph.
        bgr: the robot graph takes BGR frames.
        opset: ONNX opset.
        config_hash: recorded in the metadata.

    Returns:
        As :func:`translate.export.export_generator`.
    """
    if (ckpt is None) == (official is None):
        raise ValueError("give exactly one of --ckpt (Lightning) or --official (official .pth)")
    source = Path(ckpt if ckpt is not None else official)  # type: ignore[arg-type]
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint not found: {source}")
    correction = None
    if camera is not None:
        correction = CameraCorrection.from_yaml(camera)
    loaded: Mapping[str, Any] | None = None
    if ckpt is not None:
        if model is not None or ngf is not None or n_blocks is not None:
            raise ValueError("--model, --ngf and --n-blocks apply to --official checkpoints only")
        generator, name, loaded = load_lightning_generator(source)
    else:
        from models.official import load_official_checkpoint

        if model not in ("cyclegan", "cut"):
            raise ValueError(f"--official needs --model cyclegan or cut, got {model!r}")
        generator = load_official_checkpoint(source, model=model, which="G", ngf=ngf,
                                             n_blocks=n_blocks)
        name = model
    if size is None:
        size = correction.out_size if correction is not None else _default_size(loaded)
    return export_generator(
        generator, out, image_size=size, camera=correction, model_name=name,
        config_hash=config_hash, checkpoint=str(source), robot=robot,
        input_channel_order="BGR" if bgr else "RGB", opset=opset,
        extra_metadata={"checkpoint_sha256": _file_sha256(source)},
    )
