"""Export the real→sim translator to ONNX (core and robot-ready graphs), with metadata and parity checks."""

from __future__ import annotations

import copy
import datetime
import functools
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from translate.camera import CameraCorrection
from translate.export_format import (
    CORE_FILE,
    EXPORT_FORMAT_VERSION,
    ROBOT_FILE,
    SUMMARY_FILE,
    parse_metadata,
)
from translate.fsutil import atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "CORE_TOLERANCE",
    "ExportParityError",
    "ROBOT_TOLERANCE",
    "export_from_module",
    "export_generator",
    "robot_module",
]

log = logging.getLogger(__name__)

#: Largest accepted |onnxruntime − torch| on the core graph, in [-1, 1] units.
CORE_TOLERANCE = 1e-4
#: Largest accepted |onnxruntime − torch| on the robot graph, in uint8 grey levels (rounding ties).
ROBOT_TOLERANCE = 1

_MIN_OPSET = 17  # GridSample needs 16; InstanceNormalization and Pad(reflect) are older
_SIZE_MULTIPLE = 4  # the ResNet generator's two stride-2 downsamplings must be undone exactly
_MIN_SIZE = 8
_CHANNEL_ORDERS = ("RGB", "BGR")
# Warnings the TorchScript exporter always emits for these generators; none is actionable:
# InstanceNorm without running stats is exported with train=True (the same maths as eval),
# the reflect-pad slices are not constant-folded when H and W are dynamic.
# torch's own modules (instance_norm's channel check, ...) also emit TracerWarnings about shape
# checks that hold for every input; a TracerWarning from the exported model's code is kept.
_EXPORTER_NOISE = (
    (DeprecationWarning, r".*legacy TorchScript-based ONNX export.*", ""),
    (DeprecationWarning, r".*The feature will be removed.*", r"torch\.onnx"),
    (UserWarning, r".*operator 'instance_norm' is set to train=True.*", ""),
    (UserWarning, r".*Constant folding - Only steps=1 can be constant folded.*", ""),
    (Warning, r".*Converting a tensor to a Python boolean.*", r"torch\.nn\."),
)


class ExportParityError(RuntimeError):
    """onnxruntime's output differs from torch's by more than the tolerance; nothing was written."""


def _check_size(size: Any) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        h = w = size
    elif (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        h, w = int(size[0]), int(size[1])
    else:
        raise ValueError(f"image_size must be an int or (H, W) ints, got {size!r}")
    if h % _SIZE_MULTIPLE or w % _SIZE_MULTIPLE or h < _MIN_SIZE or w < _MIN_SIZE:
        raise ValueError(
            f"image_size must have H and W that are multiples of {_SIZE_MULTIPLE} and at least "
            f"{_MIN_SIZE} (the generator's two stride-2 downsamplings must be undone exactly), "
            f"got {h}x{w} (HxW)"
        )
    return h, w


def _resolve_size(
    image_size: int | tuple[int, int] | None, camera: CameraCorrection | None
) -> tuple[int, int]:
    if camera is not None and not isinstance(camera, CameraCorrection):
        raise TypeError(f"camera must be a CameraCorrection or None, got {type(camera).__name__}")
    if image_size is None:
        if camera is None:
            raise ValueError("image_size is required when no camera correction is given")
        return _check_size(camera.out_size)
    size = _check_size(image_size)
    if camera is not None and size != camera.out_size:
        h, w = camera.out_size
        raise ValueError(
            f"image_size {size[0]}x{size[1]} (HxW) differs from the camera correction's sim "
            f"camera {h}x{w}: the translator runs on corrected frames, export it at {h}x{w} "
            "(or pass image_size=None)"
        )
    return size


def _frozen_copy(module: nn.Module) -> nn.Module:
    """A CPU, float32, eval-mode copy without gradients; the caller's module is left as it was."""
    # LightningModule.__getstate__ drops the trainer reference, so deepcopy is safe on it too.
    import torch

    twin = copy.deepcopy(module).to(device="cpu", dtype=torch.float32).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@functools.cache
def _robot_class() -> type:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class RobotTranslator(nn.Module):
        """uint8 NHWC frames → (lens correction) → generator → uint8 NHWC frames. See robot_module."""

        grid: torch.Tensor | None
        perm: torch.Tensor | None

        def __init__(
            self,
            generator: nn.Module,
            grid: torch.Tensor | None,
            in_size: tuple[int, int] | None,
            bgr: bool,
        ) -> None:
            super().__init__()
            self.generator = generator
            # Python ints, so the reshapes around GridSample are constants in the graph
            self.in_size = in_size
            self.out_size = None if grid is None else (int(grid.shape[1]), int(grid.shape[2]))
            self.register_buffer("grid", grid)
            self.register_buffer("perm", torch.tensor([2, 1, 0]) if bgr else None)

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            x = frames.to(torch.float32)  # (N, H_in, W_in, 3) in [0, 255]
            if self.perm is not None:
                x = torch.index_select(x, 3, self.perm)  # BGR → RGB (an ONNX Gather)
            x = x.permute(0, 3, 1, 2)  # (N, 3, H_in, W_in)
            if self.grid is not None and self.in_size is not None and self.out_size is not None:
                # On pixel values, before normalising, so sim pixels the real lens does not see
                # come out 0 = black, as CameraCorrection.apply made the training data. The batch
                # is folded into channels so one constant (1, H, W, 2) grid serves any N without
                # an Expand, and every shape after it stays static (TensorRT).
                x = F.grid_sample(
                    x.reshape(1, -1, *self.in_size), self.grid, mode="bilinear",
                    padding_mode="zeros", align_corners=True,
                )  # (1, N*3, H, W)
                x = x.reshape(-1, 3, *self.out_size)  # (N, 3, H, W)
            y = self.generator(x / 127.5 - 1.0)
            y = ((y + 1.0) * 127.5).round().clamp(0.0, 255.0).to(torch.uint8)
            return y.permute(0, 2, 3, 1)  # (N, H, W, 3)

    return RobotTranslator


def robot_module(
    generator: nn.Module,
    *,
    camera: CameraCorrection | None = None,
    input_channel_order: str = "RGB",
) -> nn.Module:
    """Wrap a generator into the robot-ready module that :func:`export_generator` exports.

    The module casts uint8 frames to float, reorders BGR to RGB if asked, goes to NCHW, applies
    the lens correction (``GridSample`` with the constant grid of
    :meth:`CameraCorrection.grid`, bilinear, zeros padding, on pixel values so uncovered sim
    pixels are black as in training), maps to [-1, 1], runs the generator and maps back to uint8
    (``(y + 1) * 127.5``, rounded half to even, clamped). The output is always RGB.

    ``GridSample`` needs ONNX opset 16+ and TensorRT 8.6+ (``IGridSampleLayer``); without a
    correction, or with an identity one, the graph has no GridSample.

    Args:
        generator: maps (N, 3, H, W) in [-1, 1] to the same shape; used as given (not copied).
        camera: the real→sim lens correction to embed, or None.
        input_channel_order: ``"RGB"`` or ``"BGR"`` (the Jetbot's CSI camera gives BGR).

    Returns:
        An ``nn.Module`` in the generator's training mode.

    Shape:
        - input: :math:`(N, H_{in}, W_{in}, 3)` uint8; :math:`H_{in} \\times W_{in}` is the real
          camera's size when a non-identity correction is embedded, else the generator's size.
        - output: :math:`(N, H, W, 3)` uint8 RGB.

    Example:
        >>> m = robot_module(generator, input_channel_order="BGR")  # doctest: +SKIP
        >>> m(torch.zeros(1, 64, 64, 3, dtype=torch.uint8)).dtype  # doctest: +SKIP
        torch.uint8
    """
    import torch

    if input_channel_order not in _CHANNEL_ORDERS:
        raise ValueError(
            f"input_channel_order must be one of {_CHANNEL_ORDERS}, got {input_channel_order!r}"
        )
    if camera is not None and not isinstance(camera, CameraCorrection):
        raise TypeError(f"camera must be a CameraCorrection or None, got {type(camera).__name__}")
    if camera is None or camera.is_identity:
        return _robot_class()(generator, None, None, input_channel_order == "BGR")
    grid = torch.from_numpy(camera.grid())  # (1, H, W, 2)
    return _robot_class()(generator, grid, camera.in_size, input_channel_order == "BGR")


def _onnx_export(
    module: nn.Module,
    example: torch.Tensor,
    input_name: str,
    output_name: str,
    dynamic_axes: dict[int, str],
    opset: int,
) -> bytes:
    import torch

    axes = {input_name: dynamic_axes, output_name: dynamic_axes}
    # torch.onnx.export is typed for paths: export into a private folder, read the bytes back
    with tempfile.TemporaryDirectory(prefix="sim2real-export-") as tmp:
        path = Path(tmp) / "graph.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            for category, message, module_re in _EXPORTER_NOISE:
                warnings.filterwarnings("ignore", message=message, category=category,
                                        module=module_re)
            torch.onnx.export(
                module, (example,), path, dynamo=False, opset_version=opset,
                input_names=[input_name], output_names=[output_name], dynamic_axes=axes,
                do_constant_folding=True,
            )
        return path.read_bytes()


def _set_dims(value: Any, dims: list[int | str]) -> None:
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = d


def _finish(
    model_bytes: bytes,
    metadata: Mapping[str, str],
    input_dims: list[int | str],
    output_dims: list[int | str],
) -> bytes:
    import onnx

    model = onnx.load_from_string(model_bytes)
    # the exporter names inferred output dims after internal nodes: declare them plainly
    _set_dims(model.graph.input[0], input_dims)
    _set_dims(model.graph.output[0], output_dims)
    del model.metadata_props[:]
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    model.doc_string = "sim2real translate: real->sim image translator (see metadata_props)"
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _session(model_bytes: bytes) -> Any:
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def _max_diff_core(
    session: Any, generator: nn.Module, shapes: list[tuple[int, ...]], gen: torch.Generator
) -> float:
    import torch

    worst = 0.0
    for shape in shapes:
        x = torch.rand(shape, generator=gen) * 2 - 1
        with torch.no_grad():
            want = generator(x).numpy()
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        if got.shape != want.shape:
            raise ExportParityError(
                f"onnxruntime returned shape {got.shape} for input {tuple(shape)}, "
                f"torch {want.shape}"
            )
        worst = max(worst, float(abs(got.astype("float64") - want).max()))
    return worst


def _metadata(
    *,
    variant: str,
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    camera: CameraCorrection | None,
    model_name: str,
    config_hash: str,
    checkpoint: str,
    dynamic_size: bool,
    opset: int,
    extra: Mapping[str, str],
) -> dict[str, str]:
    import torch

    meta = {
        "sim2real.format_version": json.dumps(EXPORT_FORMAT_VERSION),
        "variant": variant,
        "direction": "real->sim",
        "input_size": json.dumps(list(in_size)),
        "output_size": json.dumps(list(out_size)),
        "dynamic_size": json.dumps(dynamic_size),
        "value_range": "[-1, 1]",
        "layout": "NCHW",
        "channel_order": "RGB",
        "model_name": model_name,
        "config_hash": config_hash,
        "checkpoint": checkpoint,
        "camera_correction": json.dumps(camera.to_dict() if camera is not None else None),
        "opset": str(opset),
        "exporter": f"torch {torch.__version__} (TorchScript ONNX exporter)",
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    for key, value in extra.items():
        if key in meta:
            raise ValueError(f"extra_metadata key {key!r} would overwrite a standard key")
        if not isinstance(value, str):
            raise TypeError(f"extra_metadata[{key!r}] must be a str, got {type(value).__name__}")
        meta[key] = value
    return meta


def _export_core(gen: nn.Module, size: tuple[int, int], opset: int, dynamic_size: bool,
                 rng: torch.Generator, out: Path) -> tuple[bytes, float, bool]:
    """The core graph's bytes, its parity (max abs diff) and whether its H, W stayed dynamic."""
    import torch

    h, w = size
    example = torch.zeros(1, 3, h, w)
    alt = (1, 3, h + 8, w + 8)  # a second size, multiple of 4 like the first
    for dynamic in ([True, False] if dynamic_size else [False]):
        axes = {0: "N", 2: "H", 3: "W"} if dynamic else {0: "N"}
        core_bytes = _onnx_export(gen, example, "real", "sim", axes, opset)
        session = _session(core_bytes)
        core_diff = _max_diff_core(session, gen, [(2, 3, h, w)], rng)
        if core_diff > CORE_TOLERANCE:
            raise ExportParityError(
                f"core ONNX graph differs from torch by {core_diff:.3g} (max abs, [-1, 1] "
                f"units) > {CORE_TOLERANCE} at {h}x{w}; nothing was written to {out}"
            )
        if not dynamic:
            break
        try:
            alt_diff = _max_diff_core(session, gen, [alt], rng)
        except Exception as exc:  # onnxruntime raises its own types on shape errors
            alt_diff, why = float("inf"), f"{type(exc).__name__}: {exc}"
        else:
            why = f"max abs diff {alt_diff:.3g}"
        if alt_diff <= CORE_TOLERANCE:
            core_diff = max(core_diff, alt_diff)
            break
        # the trace froze a size somewhere in the model: ship what is exact at the export size
        log.warning("the dynamic-size ONNX graph is wrong at %dx%d (%s); exporting at a fixed "
                    "%dx%d instead", alt[2], alt[3], why, h, w)
        dynamic_size = False
    return core_bytes, core_diff, dynamic_size


def _export_robot(gen: nn.Module, path: Path, size: tuple[int, int], *,
                  camera: CameraCorrection | None, input_channel_order: str, dynamic_size: bool,
                  opset: int, rng: torch.Generator, meta_of: Any) -> tuple[dict[str, str], float]:
    """Export, check and write the robot graph; returns its metadata and parity (grey levels)."""
    import torch

    h, w = size
    wrapper = robot_module(gen, camera=camera, input_channel_order=input_channel_order).eval()
    in_graph = camera is not None and not camera.is_identity
    h_in, w_in = camera.in_size if in_graph and camera is not None else (h, w)
    robot_dynamic = dynamic_size and not in_graph
    frames = torch.randint(0, 256, (2, h_in, w_in, 3), generator=rng, dtype=torch.uint8)
    axes = {0: "N", 1: "H", 2: "W"} if robot_dynamic else {0: "N"}
    raw = _onnx_export(wrapper, frames[:1], "frames", "frames_sim", axes, opset)
    with torch.no_grad():
        want = wrapper(frames).numpy()
    got = _session(raw).run(None, {"frames": frames.numpy()})[0]
    if got.shape != want.shape or got.dtype != want.dtype:
        raise ExportParityError(
            f"robot ONNX graph returned {got.dtype} {got.shape}, torch {want.dtype} "
            f"{want.shape}; {path} was not written"
        )
    robot_diff = float(abs(got.astype("int16") - want.astype("int16")).max())
    if robot_diff > ROBOT_TOLERANCE:
        raise ExportParityError(
            f"robot ONNX graph differs from torch by {robot_diff:.0f} grey levels "
            f"> {ROBOT_TOLERANCE}; {path} was not written"
        )
    robot_meta = meta_of(variant="robot", in_size=(h_in, w_in), out_size=(h, w),
                         dynamic_size=robot_dynamic)
    robot_meta.update({
        "value_range": "[0, 255]",
        "layout": "NHWC",
        "correction_in_graph": json.dumps(in_graph),
        "input_layout": "NHWC",
        "input_dtype": "uint8",
        "input_channel_order": input_channel_order,
        "output_dtype": "uint8",
    })
    in_dims: list[int | str] = ["N", "H", "W", 3] if robot_dynamic else ["N", h_in, w_in, 3]
    out_dims: list[int | str] = ["N", "H", "W", 3] if robot_dynamic else ["N", h, w, 3]
    atomic_write_bytes(path, _finish(raw, robot_meta, in_dims, out_dims))
    return robot_meta, robot_diff


def export_generator(
    generator: nn.Module,
    out_dir: str | os.PathLike[str],
    *,
    image_size: int | tuple[int, int] | None = None,
    camera: CameraCorrection | None = None,
    model_name: str = "",
    config_hash: str = "",
    checkpoint: str | os.PathLike[str] | None = None,
    robot: bool = True,
    input_channel_order: str = "RGB",
    opset: int = 17,
    dynamic_size: bool = True,
    extra_metadata: Mapping[str, str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Export a real→sim generator to ONNX, check it with onnxruntime, write it with metadata.

    Writes into ``out_dir`` (each file atomically, only after its parity check passed):

    - ``translator.onnx`` (core): input ``real`` float32 (N, 3, H, W) in [-1, 1] RGB, output
      ``sim`` of the same shape. Batch is dynamic; H and W too when ``dynamic_size`` and the
      graph gives the same result at a second size (else the export falls back to a fixed size,
      with a warning). The ResNet generator needs H and W multiples of 4 (at least 8).
    - ``translator_robot.onnx`` (with ``robot``): input ``frames`` uint8 (N, H_in, W_in, 3),
      output ``frames_sim`` uint8 (N, H, W, 3) RGB; see :func:`robot_module`. A non-identity
      ``camera`` correction is embedded as a GridSample, and H_in x W_in is then the real
      camera's size (fixed).
    - ``export.json``: file names, metadata, parity figures.

    Metadata (``onnx.ModelProto.metadata_props``, all strings; JSON where marked): ``
    sim2real.format_version`` (JSON int), ``variant`` (``core`` | ``robot``), ``direction``
    (``real->sim``), ``input_size`` / ``output_size`` (JSON [H, W] of this graph's input and
    output), ``dynamic_size`` (JSON bool), ``value_range`` (JSON, ``[-1, 1]`` core,
    ``[0, 255]`` robot), ``layout``, ``channel_order`` (of the output, always RGB),
    ``model_name``, ``config_hash``, ``checkpoint``, ``camera_correction`` (JSON of
    :meth:`CameraCorrection.to_dict` or ``null``: the correction that belongs BEFORE the
    translator), ``opset``, ``exporter``, ``created_utc``; the robot graph adds
    ``correction_in_graph`` (JSON bool), ``input_layout`` (NHWC), ``input_dtype`` (uint8),
    ``input_channel_order``, ``output_dtype`` (uint8). Read them with
    :func:`translate.export_format.read_export_metadata`.

    Parity: onnxruntime (CPU) against torch on seeded random inputs, batch 2 at the export size
    (and batch 1 at H+8 x W+8 for dynamic sizes). Core max abs diff must be <= ``CORE_TOLERANCE``
    (1e-4), robot <= ``ROBOT_TOLERANCE`` (1 grey level); otherwise :class:`ExportParityError`.

    Args:
        generator: any module mapping (N, 3, H, W) in [-1, 1] to the same shape. It is copied to
            the CPU in float32 and eval mode; the caller's module is not changed.
        out_dir: output folder (created).
        image_size: export and check size, an int (square) or (H, W); None: the camera
            correction's sim size. Must equal that size when a camera is given.
        camera: the real→sim lens correction applied before the translator, or None.
        model_name: e.g. ``cut``, ``fastcut``, ``cyclegan``.
        config_hash: the training config's hash.
        checkpoint: where the weights came from (provenance only).
        robot: also write the robot-ready graph; False removes a stale one from ``out_dir``.
        input_channel_order: the robot graph's input order, ``RGB`` or ``BGR``.
        opset: ONNX opset, >= 17.
        dynamic_size: try dynamic H and W.
        extra_metadata: more string metadata properties (may not overwrite the standard keys).
        seed: seed of the parity inputs.

    Returns:
        ``{"onnx": str, "robot_onnx": str | None, "metadata": dict, "robot_metadata": dict |
        None, "parity": {"core_max_abs_diff": float, "robot_max_abs_diff": float | None},
        "summary": str}`` with metadata as :func:`translate.export_format.parse_metadata` parses it.

    Raises:
        ValueError: bad size, opset, channel order or camera size mismatch.
        ExportParityError: onnxruntime disagrees with torch.

    Example:
        >>> info = export_generator(g, "runs/x/export", image_size=128)  # doctest: +SKIP
        >>> info["parity"]["core_max_abs_diff"] <= 1e-4  # doctest: +SKIP
        True
    """
    import torch

    h, w = _resolve_size(image_size, camera)
    if not isinstance(opset, int) or isinstance(opset, bool) or opset < _MIN_OPSET:
        raise ValueError(f"opset must be an int >= {_MIN_OPSET}, got {opset!r}")
    if input_channel_order not in _CHANNEL_ORDERS:
        raise ValueError(
            f"input_channel_order must be one of {_CHANNEL_ORDERS}, got {input_channel_order!r}"
        )
    out = Path(out_dir)
    gen = _frozen_copy(generator)
    bad = [n for n, t in [*gen.named_parameters(), *gen.named_buffers()]
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ExportParityError(
            f"the generator has non-finite weights ({bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}):"
            f" a diverged or corrupted checkpoint; nothing was written to {out}"
        )
    rng = torch.Generator().manual_seed(seed)
    meta_of = functools.partial(
        _metadata,
        camera=camera,
        model_name=str(model_name or ""),
        config_hash=str(config_hash or ""),
        checkpoint=os.fspath(checkpoint) if checkpoint is not None else "",
        opset=opset,
        extra=dict(extra_metadata or {}),
    )

    core_bytes, core_diff, dynamic_size = _export_core(gen, (h, w), opset, dynamic_size, rng, out)
    core_meta = meta_of(variant="core", in_size=(h, w), out_size=(h, w), dynamic_size=dynamic_size)
    core_dims: list[int | str] = ["N", 3, "H", "W"] if dynamic_size else ["N", 3, h, w]
    core_path = out / CORE_FILE
    atomic_write_bytes(core_path, _finish(core_bytes, core_meta, core_dims, core_dims))

    robot_path: Path | None = None
    robot_meta: dict[str, str] | None = None
    robot_diff: float | None = None
    if robot:
        robot_path = out / ROBOT_FILE
        robot_meta, robot_diff = _export_robot(gen, robot_path, (h, w), camera=camera,
                                               input_channel_order=input_channel_order,
                                               dynamic_size=dynamic_size, opset=opset, rng=rng,
                                               meta_of=meta_of)
    else:
        stale = out / ROBOT_FILE
        if stale.exists():  # from an earlier export of another model: it must not be picked up
            stale.unlink()

    parity = {"core_max_abs_diff": core_diff, "robot_max_abs_diff": robot_diff}
    core_parsed = parse_metadata(core_meta)
    robot_parsed = parse_metadata(robot_meta) if robot_meta is not None else None
    summary = out / SUMMARY_FILE
    atomic_write_json(summary, {
        "onnx": CORE_FILE,
        "robot_onnx": ROBOT_FILE if robot_path is not None else None,
        "metadata": core_parsed,
        "robot_metadata": robot_parsed,
        "parity": parity,
        "tolerance": {"core_max_abs_diff": CORE_TOLERANCE, "robot_max_abs_diff": ROBOT_TOLERANCE},
    })
    return {
        "onnx": str(core_path),
        "robot_onnx": str(robot_path) if robot_path is not None else None,
        "metadata": core_parsed,
        "robot_metadata": robot_parsed,
        "parity": parity,
        "summary": str(summary),
    }


def _deployable_generator(module: nn.Module) -> nn.Module:
    # A translator module names the network its forward(x) runs (deployable_generator(), e.g.
    # models.base.TranslatorModule's); export only that, not its discriminators or frozen policy.
    pick = getattr(module, "deployable_generator", None)
    return pick() if callable(pick) else module


def export_from_module(
    module: nn.Module,
    out_dir: str | os.PathLike[str],
    *,
    image_size: int | tuple[int, int] | None = None,
    camera: CameraCorrection | None = None,
    model_name: str | None = None,
    config_hash: str = "",
    robot: bool = True,
    opset: int = 17,
    checkpoint: str | os.PathLike[str] | None = None,
    input_channel_order: str = "RGB",
    extra_metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Export the real→sim generator of a trained translator module (see :func:`export_generator`).

    A module with a ``deployable_generator()`` method (the CycleGAN / CUT modules) exports the
    network it returns alone, which is what its ``forward(x)`` runs; any other module is exported
    whole through its ``forward``. The module itself is not changed (device, dtype, mode).

    Args:
        module: the trained module, on any device.
        out_dir: output folder.
        image_size: int (square) or (H, W); None: the camera correction's sim size.
        camera: lens correction applied before the translator, or None.
        model_name: recorded in the metadata; None: the module's ``name`` attribute.
        config_hash: training config hash.
        robot: also write the robot-ready graph.
        opset: ONNX opset (>= 17).
        checkpoint: provenance string.
        input_channel_order: the robot graph's input channel order.
        extra_metadata: more string metadata properties.

    Returns:
        As :func:`export_generator`.

    Example:
        >>> info = export_from_module(model, run_dir / "export", image_size=128)  # doctest: +SKIP
    """
    if model_name is None:
        name = getattr(module, "name", None)
        model_name = name if isinstance(name, str) else type(module).__name__
    return export_generator(
        _deployable_generator(module), out_dir, image_size=image_size, camera=camera,
        model_name=model_name, config_hash=config_hash, checkpoint=checkpoint, robot=robot,
        input_channel_order=input_channel_order, opset=opset, extra_metadata=extra_metadata,
    )
