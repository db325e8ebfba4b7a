"""Translators the evaluation scores: identity, a function, an exported ONNX graph, a torch module; their output check."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "FunctionTranslator",
    "IdentityTranslator",
    "OnnxTranslator",
    "TorchModuleTranslator",
    "Translator",
    "TranslatorOutputError",
    "check_output",
    "resize_frames",
]


class TranslatorOutputError(ValueError):
    """A translator returned something other than uint8 (N, H, W, 3) frames; the message says what."""


@runtime_checkable
class Translator(Protocol):
    """Anything that turns lens-corrected real frames into sim-looking frames.

    Required: ``name`` and ``__call__(frames) -> frames`` on RGB uint8 (N, H, W, 3) batches.
    Optional attributes the harness reads with ``getattr``: ``takes_raw`` (bool: feed RAW real
    frames, the lens correction is inside), ``input_size`` ((H, W) the translator needs, or
    None), ``camera_correction`` (the correction dict it was exported with) and ``info`` (a dict
    for the report).

    Shape:
        - frames: :math:`(N, H, W, 3)` uint8 RGB; output: :math:`(N, H', W', 3)` uint8 RGB.
    """

    name: str

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


class IdentityTranslator:
    """The no-op translator: returns its input (a copy). The baseline row of an ablation."""

    def __init__(self, name: str = "identity") -> None:
        self.name = name
        self.info: dict[str, Any] = {"kind": "identity"}

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return np.array(frames, copy=True)


class FunctionTranslator:
    """Wrap a function of uint8 NHWC frames as a translator (tests, quick experiments).

    Args:
        fn: maps (N, H, W, 3) uint8 to (N, H', W', 3) uint8.
        name: the row name.
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], name: str) -> None:
        self.fn = fn
        self.name = name
        self.info: dict[str, Any] = {"kind": "function"}

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.fn(frames)


def _to_uint8(y: np.ndarray, what: str = "translator") -> np.ndarray:
    """[-1, 1] float NCHW → uint8 NHWC (:func:`translate.runtime.unit_to_uint8`; non-finite: error)."""
    from translate.runtime import unit_to_uint8

    return unit_to_uint8(y, what=what)


def _to_unit(frames: np.ndarray) -> np.ndarray:
    """uint8 NHWC → float32 NCHW in [-1, 1]."""
    return np.ascontiguousarray(
        (frames.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)
    )


class OnnxTranslator:
    """An exported translator (core or robot graph) as a harness translator, on onnxruntime.

    Wraps :class:`translate.runtime.Translator` (which reads the metadata and the graph's input:
    float32 N×3×H×W in [-1, 1] = core, uint8 N×H×W×3 = robot) and feeds it the way the harness
    needs: frames the harness has already lens-corrected, except for a robot graph with
    ``correction_in_graph``, which sets ``takes_raw`` and gets RAW real frames. A robot graph
    taking BGR gets its input reordered here; callers always pass RGB. No torch.

    Args:
        path: ``translator.onnx`` / ``translator_robot.onnx``, or an export folder (its
            ``translator.onnx``).
        name: the row name (default: derived from the path).
        batch_size: frames per onnxruntime call.
        providers: onnxruntime providers (default: TensorRT → CUDA → CPU by availability).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).

    Example:
        >>> t = OnnxTranslator("runs/cut/export/translator.onnx")  # doctest: +SKIP
        >>> t(corrected_frames).shape == corrected_frames.shape  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        batch_size: int = 16,
        providers: Sequence[Any] | None = None,
        threads: int | None = None,
    ) -> None:
        from translate.export_format import CORE_FILE
        from translate.runtime import Translator as RuntimeTranslator

        p = Path(path)
        if p.is_dir():
            p = p / CORE_FILE
        if not p.is_file():
            raise FileNotFoundError(f"translator ONNX not found: {p}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.path = p
        self.batch_size = batch_size
        self.runtime = RuntimeTranslator(p, providers=providers, threads=threads)
        rt = self.runtime
        self.meta: dict[str, Any] = rt.meta
        self.variant = rt.variant  # "core" or "robot" (runtime.Translator refuses others)
        self.takes_raw = bool(rt.correction_in_graph)
        self.graph_channel_order = rt.graph_channel_order
        self.input_channel_order = self.graph_channel_order  # what the graph itself takes
        if self.takes_raw or not rt.dynamic_size:
            size = self.meta.get("input_size")
            self.input_size: tuple[int, int] | None = (int(size[0]), int(size[1])) if size \
                else None
        else:
            self.input_size = None
        self.camera_correction: dict[str, Any] | None = self.meta.get("camera_correction")
        self.name = name or _name_from_path(p)
        self.info = {
            "kind": f"onnx-{self.variant}",
            "path": str(p),
            "model_name": self.meta.get("model_name"),
            "takes_raw": self.takes_raw,
            "input_channel_order": self.graph_channel_order,
            "provider": rt.provider,
        }

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = np.asarray(frames)
        if self.input_size is None and (x.shape[1] % 4 or x.shape[2] % 4):
            raise ValueError(
                f"translator {self.name}: frame height and width must be multiples of 4, got "
                f"{x.shape[2]}x{x.shape[1]} (WxH)"
            )
        if self.graph_channel_order == "BGR":
            x = x[..., ::-1]
        outs = [self.runtime.run_corrected(np.ascontiguousarray(x[i : i + self.batch_size]))
                for i in range(0, len(x), self.batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, *x.shape[1:]), np.uint8)


class TorchModuleTranslator:
    """A torch generator (NCHW float in [-1, 1] → same) as a translator; torch imported lazily.

    Args:
        module: the generator (put in eval mode; gradients off).
        name: the row name.
        batch_size: frames per forward pass.
        device: torch device.
        info: extra provenance for the report.
    """

    def __init__(
        self,
        module: Any,
        name: str,
        *,
        batch_size: int = 16,
        device: str = "cpu",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        import torch

        self._torch = torch
        self.module = module.to(device).eval()
        self.device = torch.device(device)
        self.name = name
        self.batch_size = batch_size
        self.info = {"kind": "torch", **dict(info or {})}

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        torch = self._torch
        outs: list[np.ndarray] = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                x = torch.from_numpy(_to_unit(frames[i : i + self.batch_size])).to(self.device)
                outs.append(_to_uint8(self.module(x).float().cpu().numpy(), f"translator {self.name!r}"))
        return np.concatenate(outs) if outs else np.zeros_like(frames)


def _name_from_path(p: Path) -> str:
    generic = {"translator", "translator_robot", "last", "best", "latest_net_G_A", "latest_net_G"}
    if p.stem not in generic:
        return p.stem
    parent = p.parent
    if parent.name in ("export", "checkpoints") and parent.parent.name:
        parent = parent.parent
    suffix = "" if p.stem in ("translator", "last") else f"-{p.stem}"
    return f"{parent.name or p.stem}{suffix}"


def check_output(name: str, inp: np.ndarray, out: Any) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TranslatorOutputError(
            f"translator {name!r} returned {type(out).__name__}; expected a numpy uint8 array "
            "(N, H, W, 3)"
        )
    if out.ndim == 4 and out.shape[1] == 3 and out.shape[-1] != 3:
        raise TranslatorOutputError(
            f"translator {name!r} returned shape {out.shape}, which looks NCHW; translators "
            "return NHWC (N, H, W, 3) — transpose with .transpose(0, 2, 3, 1)"
        )
    if out.ndim != 4 or out.shape[-1] != 3 or out.shape[0] != inp.shape[0]:
        raise TranslatorOutputError(
            f"translator {name!r} returned shape {out.shape} for input {inp.shape}; expected "
            f"({inp.shape[0]}, H, W, 3)"
        )
    if out.dtype != np.uint8:
        lo, hi = (float(out.min()), float(out.max())) if out.size else (0.0, 0.0)
        raise TranslatorOutputError(
            f"translator {name!r} returned {out.dtype} values in [{lo:.3g}, {hi:.3g}]; "
            "translators return uint8 RGB 0–255 frames"
        )
    return out


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 RGB frames to (H, W) with PIL's antialiased bilinear filter.

    Args:
        frames: the frames.
        size: target (H, W).

    Returns:
        Resized frames (the input itself when the size already matches).

    Shape:
        - frames: :math:`(N, H, W, 3)`; output: :math:`(N, H', W', 3)`.
    """
    from PIL import Image

    h, w = size
    if frames.shape[1:3] == (h, w):
        return frames
    out = np.empty((len(frames), h, w, frames.shape[-1]), np.uint8)
    for i, f in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BILINEAR))
    return out
