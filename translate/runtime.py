"""Run an exported translator, or a fused translator + policy graph, with numpy + onnxruntime only (robot layer)."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from translate.camera import CameraCorrection
from translate.export_format import FUSED_ACTION, read_export_metadata
from translate.policy import PolicySpec, preprocess

__all__ = [
    "FusedPolicy",
    "NonFiniteTranslationError",
    "PREFERRED_PROVIDERS",
    "Translator",
    "default_providers",
    "main",
    "unit_to_uint8",
]

log = logging.getLogger(__name__)

#: Execution providers tried in this order when none are given.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_CHANNEL_ORDERS = ("RGB", "BGR")

Provider = str | tuple[str, dict[str, Any]]


def default_providers(
    *,
    fp16: bool = False,
    trt_cache_dir: str | os.PathLike[str] | None = None,
    available: Sequence[str] | None = None,
) -> list[Provider]:
    """TensorRT → CUDA → CPU, keeping those this onnxruntime build has.

    TensorRT gets an engine cache (building an engine takes minutes on a Jetson; the cache makes
    the second start fast) under ``trt_cache_dir`` (default
    ``$XDG_CACHE_HOME/sim2real-translate/trt``) and fp16 when asked.

    Args:
        fp16: let TensorRT build fp16 engines (typically ~2x faster on a Jetson; fp16 moves the
            outputs slightly).
        trt_cache_dir: TensorRT engine cache folder.
        available: the provider names to choose from (default
            ``onnxruntime.get_available_providers()``).

    Returns:
        Provider names, TensorRT as ``(name, options)``.
    """
    have = list(ort.get_available_providers() if available is None else available)
    out: list[Provider] = []
    for name in PREFERRED_PROVIDERS:
        if name not in have:
            continue
        if name == "TensorrtExecutionProvider":
            base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
            cache = Path(trt_cache_dir) if trt_cache_dir is not None else (
                base / "sim2real-translate" / "trt")
            out.append((name, {"trt_engine_cache_enable": True,
                               "trt_engine_cache_path": str(cache),
                               "trt_fp16_enable": bool(fp16)}))
        else:
            out.append(name)
    return out


def _provider_name(p: Provider) -> str:
    return p if isinstance(p, str) else p[0]


def _make_session(
    path: Path,
    providers: Sequence[Provider] | None,
    *,
    threads: int | None,
    session_options: Any,
    fp16: bool,
    trt_cache_dir: str | os.PathLike[str] | None,
) -> ort.InferenceSession:
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    available = ort.get_available_providers()
    if providers is None:
        chosen = default_providers(fp16=fp16, trt_cache_dir=trt_cache_dir, available=available)
    else:
        chosen = list(providers)
        missing = [_provider_name(p) for p in chosen if _provider_name(p) not in available]
        if missing:
            raise ValueError(
                f"execution provider(s) {missing} not available in this onnxruntime build "
                f"({ort.__version__}); available: {available}"
            )
    for p in chosen:
        if _provider_name(p) == "TensorrtExecutionProvider" and not isinstance(p, str):
            Path(p[1].get("trt_engine_cache_path", ".")).mkdir(parents=True, exist_ok=True)
    opts = session_options if session_options is not None else ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    names = [_provider_name(p) for p in chosen]
    options = [{} if isinstance(p, str) else dict(p[1]) for p in chosen]
    try:
        return ort.InferenceSession(str(path), opts, providers=names, provider_options=options)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ValueError(f"cannot load {path} with onnxruntime ({names}): {exc}") from exc


class NonFiniteTranslationError(ValueError):
    """A translator produced NaN or infinite values (diverged or corrupted weights)."""


def unit_to_uint8(y: np.ndarray, *, what: str = "translator") -> np.ndarray:
    """A translator's float output in [-1, 1] (NCHW) → uint8 RGB frames (NHWC), rounded half to even.

    The one definition of this step (the robot graph does the same in-graph). A non-finite
    value would silently become black; it is an error instead.

    Args:
        y: (N, 3, H, W) float.
        what: the translator, for the message.

    Returns:
        (N, H, W, 3) uint8.

    Raises:
        NonFiniteTranslationError: ``y`` holds NaN or inf; the message names ``what`` and how many.
    """
    y = np.asarray(y, dtype=np.float32)
    finite = np.isfinite(y)
    if not finite.all():
        raise NonFiniteTranslationError(
            f"{what} returned {int((~finite).sum())} non-finite values in {y.shape[0]} frame(s): "
            "its weights diverged or are corrupted; nothing was scored"
        )
    out = np.clip(np.rint((y + np.float32(1.0)) * np.float32(127.5)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1))


class _FrameModel:
    """Shared by Translator and FusedPolicy: session, metadata, channel order, lens correction."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: Sequence[Provider] | None = None,
        input_channel_order: str = "RGB",
        threads: int | None = None,
        session_options: Any = None,
        fp16: bool = False,
        trt_cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if input_channel_order not in _CHANNEL_ORDERS:
            raise ValueError(
                f"input_channel_order must be one of {_CHANNEL_ORDERS}, got {input_channel_order!r}"
            )
        self.path = Path(path)
        self.session = _make_session(self.path, providers, threads=threads,
                                     session_options=session_options, fp16=fp16,
                                     trt_cache_dir=trt_cache_dir)
        self.meta = read_export_metadata(self.path, self.session)
        self.variant: str = str(self.meta.get("variant", "core"))
        self.input_channel_order = input_channel_order
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        self._uint8_input = inp.type == "tensor(uint8)"
        rank = len(inp.shape) if inp.shape is not None else None
        if inp.type not in ("tensor(float)", "tensor(uint8)") or rank != 4:
            raise ValueError(
                f"{self.path}: its input {inp.name!r} is {inp.type} of rank {rank}; a translator "
                "takes float32 N×3×H×W in [-1, 1] (translator.onnx) or uint8 N×H×W×3 "
                "(translator_robot.onnx): export it with export_translator.py")
        # the order the graph wants: RGB for the core graph, as exported for uint8 graphs
        self.graph_channel_order = (str(self.meta.get("input_channel_order", "RGB"))
                                    if self._uint8_input else "RGB")
        in_graph = bool(self.meta.get("correction_in_graph", False))
        corr = self.meta.get("camera_correction")
        self.correction: CameraCorrection | None = None
        self.correction_in_graph = in_graph
        if corr is not None and not in_graph:
            c = CameraCorrection.from_dict(corr, where=f"{self.path} metadata camera_correction")
            self.correction = None if c.is_identity else c
        oh, ow = self.meta["output_size"]
        self.output_size: tuple[int, int] = (int(oh), int(ow))
        self.dynamic_size = bool(self.meta.get("dynamic_size", False))
        if self.correction is not None:
            self.input_size: tuple[int, int] | None = self.correction.in_size
        elif self.dynamic_size:
            self.input_size = None
        else:
            ih, iw = self.meta["input_size"]
            self.input_size = (int(ih), int(iw))

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs with, in priority order."""
        return list(self.session.get_providers())

    @property
    def provider(self) -> str:
        """The first (preferred) provider in use, e.g. ``CUDAExecutionProvider``."""
        return self.providers[0]

    def _check(self, frames: np.ndarray) -> tuple[np.ndarray, bool]:
        x = np.asarray(frames)
        single = x.ndim == 3
        if single:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
            raise ValueError(
                f"{self.path.name}: frames must be uint8 (H, W, 3) or (N, H, W, 3) in "
                f"{self.input_channel_order} order; got {x.dtype} {np.shape(frames)}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{self.path.name}: frames is empty (N = 0)")
        h, w = x.shape[1:3]
        if self.input_size is not None and (h, w) != self.input_size:
            why = ("the real camera size of its camera correction" if self.correction is not None
                   or self.correction_in_graph else "its fixed export size")
            raise ValueError(
                f"{self.path.name}: frames are {w}x{h} (WxH) but the graph expects "
                f"{self.input_size[1]}x{self.input_size[0]} ({why}); set the camera / source "
                "width and height to that"
            )
        if self.input_size is None and (h % 4 or w % 4):
            raise ValueError(f"{self.path.name}: frame height and width must be multiples of 4, "
                             f"got {w}x{h} (WxH)")
        return x, single

    def correct(self, frames: np.ndarray) -> np.ndarray:
        """Channel order to the graph's, then the numpy lens correction (if not in the graph).

        Args:
            frames: uint8 frames in ``input_channel_order``.

        Returns:
            uint8 NHWC frames in :attr:`graph_channel_order` at the graph's input size (after
            the correction: the translator's size).

        Shape:
            - frames: :math:`(H, W, 3)` or :math:`(N, H, W, 3)`; output :math:`(N, H', W', 3)`.
        """
        x, _ = self._check(frames)
        if self.input_channel_order != self.graph_channel_order:
            x = x[..., ::-1]
        if self.correction is not None:
            x = self.correction.apply(x)
        return np.ascontiguousarray(x)

    def _feed(self, corrected: np.ndarray) -> np.ndarray:
        if self._uint8_input:
            return corrected
        x = corrected.astype(np.float32) / np.float32(127.5) - np.float32(1.0)  # as export does
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class Translator(_FrameModel):
    """An exported real→sim translator run with onnxruntime: uint8 frames in, sim-look uint8 out.

    Works with both exports of :func:`translate.export.export_generator`:

    - the core graph ``translator.onnx`` (float NCHW in [-1, 1]): frames are reordered to RGB,
      corrected with the numpy :class:`CameraCorrection` recorded in the metadata, scaled to
      [-1, 1] (``x / 127.5 - 1``), translated and mapped back (``(y + 1) * 127.5``, rounded half
      to even, clamped) exactly as the robot graph does in torch;
    - the robot graph ``translator_robot.onnx`` (uint8 NHWC): frames are reordered to the graph's
      ``input_channel_order`` and, unless ``correction_in_graph``, corrected in numpy first.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime providers (names or ``(name, options)``); default
            :func:`default_providers` (TensorRT → CUDA → CPU by availability).
        input_channel_order: the order of the frames you pass (``BGR`` for raw OpenCV frames).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        session_options: an ``onnxruntime.SessionOptions``.
        fp16: TensorRT fp16 engines (with the default providers).
        trt_cache_dir: TensorRT engine cache folder.

    Example:
        >>> t = Translator.from_onnx("export/translator_robot.onnx")  # doctest: +SKIP
        >>> t.provider, t.translate(frame).shape  # doctest: +SKIP
        ('CPUExecutionProvider', (224, 224, 3))
    """

    def __init__(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        if self.variant not in ("core", "robot"):
            raise ValueError(f"{self.path}: variant {self.variant!r} is not a translator "
                             "(a fused translator+policy graph loads with FusedPolicy)")

    @classmethod
    def from_onnx(
        cls,
        path: str | os.PathLike[str],
        *,
        providers: Sequence[Provider] | None = None,
        input_channel_order: str = "RGB",
        threads: int | None = None,
        session_options: Any = None,
        fp16: bool = False,
        trt_cache_dir: str | os.PathLike[str] | None = None,
    ) -> Translator:
        """Load a translator; see the class docstring for the arguments."""
        return cls(path, providers=providers, input_channel_order=input_channel_order,
                   threads=threads, session_options=session_options, fp16=fp16,
                   trt_cache_dir=trt_cache_dir)

    def run_corrected(self, corrected: np.ndarray) -> np.ndarray:
        """Translate frames already passed through :meth:`correct`.

        Shape:
            - corrected: :math:`(N, H, W, 3)` uint8; output :math:`(N, H, W, 3)` uint8 RGB.
        """
        y = self.session.run(None, {self._input_name: self._feed(corrected)})[0]
        if self._uint8_input:  # the robot graph rounds and clamps itself
            return np.asarray(y, dtype=np.uint8)
        return unit_to_uint8(y, what=f"translator {self.path}")

    def translate(self, frames: np.ndarray) -> np.ndarray:
        """Real frames → sim-look frames.

        Args:
            frames: uint8 frames in ``input_channel_order``, at the real camera's size.

        Returns:
            Sim-look frames, uint8 RGB, at the translator's output size.

        Shape:
            - frames: :math:`(H, W, 3)` or :math:`(N, H, W, 3)`; output likewise (same N).
        """
        _, single = self._check(frames)
        out = self.run_corrected(self.correct(frames))
        return out[0] if single else out

    __call__ = translate

    def to_policy(self, frames: np.ndarray, spec: PolicySpec) -> np.ndarray:
        """Real frames → the policy's input tensor (translate, then :func:`preprocess`).

        Shape:
            - frames: :math:`(H, W, 3)` or :math:`(N, H, W, 3)`; output as ``spec`` says.
        """
        out = self.translate(frames)
        return preprocess(out, spec)

    def __repr__(self) -> str:
        return (f"Translator({str(self.path)!r}, variant={self.variant}, "
                f"provider={self.provider}, input={self.input_channel_order})")


class FusedPolicy(_FrameModel):
    """A fused translator + policy graph (see :func:`fuse_translator_and_policy`): frames → actions.

    Args:
        path: the fused ``.onnx``.
        **kwargs: as :class:`Translator` (``providers``, ``input_channel_order``, ...).

    Example:
        >>> fused = FusedPolicy.from_onnx("export/fused.onnx")  # doctest: +SKIP
        >>> fused.act(frame)  # (1, 2) wheel commands  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        if self.variant != "fused":
            raise ValueError(f"{self.path}: variant {self.variant!r} is not a fused graph")
        self.action_output = str(self.meta.get("action_output", FUSED_ACTION))
        self.spec = PolicySpec.from_dict(self.meta["policy_spec"], where=f"{self.path} metadata")
        self._outputs = [o.name for o in self.session.get_outputs()]

    @classmethod
    def from_onnx(cls, path: str | os.PathLike[str], **kwargs: Any) -> FusedPolicy:
        """Load a fused graph; see :class:`Translator` for the keyword arguments."""
        return cls(path, **kwargs)

    def run_corrected(self, corrected: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph, by name, for frames already through :meth:`correct`."""
        values = self.session.run(None, {self._input_name: self._feed(corrected)})
        return dict(zip(self._outputs, values, strict=True))

    def run(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Every output (the policy's, plus the clamped action), by name."""
        return self.run_corrected(self.correct(frames))

    def act(self, frames: np.ndarray) -> np.ndarray:
        """The clamped action, float32 (N, A)."""
        return np.asarray(self.run(frames)[self.action_output], np.float32)

    __call__ = act


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m translate.runtime info MODEL``: metadata and the providers onnxruntime picks.

    (Fusing a translator with a policy is an offline step: ``python -m translate.fusion``.)
    """
    import argparse

    p = argparse.ArgumentParser(prog="python -m translate.runtime",
                                description="Inspect an exported (or fused) translator graph.")
    sub = p.add_subparsers(dest="cmd", required=True)
    info = sub.add_parser("info", help="metadata and the execution providers onnxruntime picks")
    info.add_argument("model")
    info.add_argument("--providers", default=None, help="comma-separated provider names")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fuse"]:  # the fusion is an offline tool now (it needs onnx)
        p.error("fusing is `python -m translate.fusion TRANSLATOR POLICY OUT [--spec S]`")
    args = p.parse_args(argv)
    providers = args.providers.split(",") if args.providers else None
    sess = _make_session(Path(args.model), providers, threads=None, session_options=None,
                         fp16=False, trt_cache_dir=None)
    meta = read_export_metadata(args.model, sess)
    print(json.dumps({"providers": sess.get_providers(),
                      "inputs": [(i.name, i.shape, i.type) for i in sess.get_inputs()],
                      "outputs": [(o.name, o.shape, o.type) for o in sess.get_outputs()],
                      "metadata": meta}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
