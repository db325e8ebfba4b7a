"""Export a trained real→sim translator (Lightning or official checkpoint) to ONNX for the robot (argparse entry point)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from translate.export import ExportParityError
from workflows.export import export_checkpoint

__all__ = ["main"]


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
    p.add_argument("--camera", help="camera.yaml: the lens correction, embedded in the robot graph "
                   "(default for --ckpt: the one the run trained with)")
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
    for note in info.get("notes", []):
        print(f"export_translator.py: {note}", file=sys.stderr if note.startswith("warning") else sys.stdout)
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
