"""Export a trained real→sim translator (Lightning or official checkpoint) to ONNX for the robot."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from models.checkpointing import CheckpointKindError, checkpoint_kind, load_lightning_generator
from translate.camera import CameraCorrection
from translate.export import ExportParityError, export_generator

__all__ = [
    "CheckpointKindError",
    "checkpoint_kind",
    "export_checkpoint",
    "load_lightning_generator",
    "main",
]

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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export_translator.py",
        description="Export the real→sim generator to ONNX (core + robot-ready uint8 graph), "
        "checked against torch with onnxruntime.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="Lightning checkpoint written by train_translate.py")
    src.add_argument("--official", help="official CycleGAN/CUT generator .pth")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", choices=("cyclegan", "cut"), help="which project wrote --official")
    p.add_argument("--ngf", type=int, help="--official: generator width (default: inferred)")
    p.add_argument("--n-blocks", type=int, help="--official: residual blocks (default: inferred)")
    p.add_argument("--size", type=int, nargs="+", metavar="N",
                   help="export size: S (square) or H W; multiples of 4 (default: the camera's "
                   "sim size, else the training crop, else 256)")
    p.add_argument("--camera", help="camera.yaml: the lens correction, embedded in the robot graph")
    p.add_argument("--no-robot", action="store_true", help="skip the robot-ready uint8 graph")
    p.add_argument("--bgr", action="store_true", help="the robot graph takes BGR frames")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; default 17)")
    p.add_argument("--config-hash", default="", help="training config hash for the metadata")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python export_translator.py --ckpt last.ckpt --out export/``.

    Returns:
        0 on success, 1 on an error (printed to stderr, naming the file or option).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.size is not None and len(args.size) not in (1, 2):
        parser.error(f"--size takes S or H W, got {len(args.size)} values")
    size: int | tuple[int, int] | None = None
    if args.size:
        size = args.size[0] if len(args.size) == 1 else (args.size[0], args.size[1])
    try:
        info = export_checkpoint(
            args.out, ckpt=args.ckpt, official=args.official, model=args.model, ngf=args.ngf,
            n_blocks=args.n_blocks, size=size, camera=args.camera, robot=not args.no_robot,
            bgr=args.bgr, opset=args.opset, config_hash=args.config_hash,
        )
    except (FileNotFoundError, ValueError, ExportParityError) as exc:
        print(f"export_translator.py: error: {exc}", file=sys.stderr)
        return 1
    parity = info["parity"]
    print(f"translator (float NCHW [-1, 1]) → {info['onnx']}  "
          f"max |onnx - torch| = {parity['core_max_abs_diff']:.2g}")
    if info["robot_onnx"]:
        print(f"robot-ready (uint8 NHWC) → {info['robot_onnx']}  "
              f"max |onnx - torch| = {parity['robot_max_abs_diff']:.0f} grey levels")
    print(f"summary → {info['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
