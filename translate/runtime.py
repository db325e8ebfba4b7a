"""Run an exported translator with numpy + onnxruntime only (no torch); fuse it with a policy."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from translate.camera import CameraCorrection
from translate.export import EXPORT_FORMAT_VERSION, _parse_metadata
from translate.policy import PolicySpec, preprocess

__all__ = [
    "FUSED_ACTION",
    "FusedPolicy",
    "NonFiniteTranslationError",
    "PREFERRED_PROVIDERS",
    "Translator",
    "default_providers",
    "fuse_translator_and_policy",
    "main",
    "read_onnx_metadata",
    "unit_to_uint8",
]

log = logging.getLogger(__name__)

#: Execution providers tried in this order when none are given.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
#: The clamped-action output a fused graph adds (``action_clamped`` if the policy has ``action``).
FUSED_ACTION = "action"
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


def read_onnx_metadata(path: str | os.PathLike[str],
                       session: ort.InferenceSession | None = None) -> dict[str, Any]:
    """The sim2real metadata of an exported (or fused) graph, read with onnxruntime (no onnx).

    Args:
        path: the ``.onnx`` file.
        session: an open session of it (saves loading it again).

    Returns:
        As :func:`translate.export.read_export_metadata` (JSON keys parsed).

    Raises:
        ValueError: not a sim2real export, or a newer format; the message names the file.
    """
    p = Path(path)
    if session is None:
        session = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    props = dict(session.get_modelmeta().custom_metadata_map)
    if "sim2real.format_version" not in props:
        raise ValueError(
            f"{p}: no 'sim2real.format_version' metadata; not exported by translate.export "
            "(re-export it with export_translator.py)"
        )
    try:
        meta = _parse_metadata(props)
        for key in ("policy_spec", "outputs"):
            if key in meta:
                meta[key] = json.loads(meta[key])
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: {exc}") from exc
    version = meta["sim2real.format_version"]
    if not isinstance(version, int) or version > EXPORT_FORMAT_VERSION:
        raise ValueError(
            f"{p}: export format version {version!r} is not supported (this reader knows up to "
            f"{EXPORT_FORMAT_VERSION}); update sim2real-translate"
        )
    return meta



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
        self.meta = read_onnx_metadata(self.path, self.session)
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
# Fusion
# --------------------------------------------------------------------------------------------------


def _glue_model(nodes: list[Any], inits: list[Any], inp: Any, out: Any, opset: int,
                ir_version: int) -> Any:
    from onnx import helper

    graph = helper.make_graph(nodes, "glue", [inp], [out], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=ir_version)


def _policy_pre_nodes(spec: PolicySpec, opset: int, src: str, dst: str,
                      size: tuple[int, int] | None = None) -> tuple[list[Any], list[Any]]:
    """Graph ops for :meth:`PolicySpec.preprocess_ops` on float NHWC RGB 0–255 pixels.

    Args:
        spec: the policy's input contract.
        opset: the graph's ONNX opset (``ReduceMean`` takes its axes as an input from 18).
        src: the pixels' tensor name, (N, H, W, 3) float.
        dst: the name of the model input the ops produce.
        size: the pixels' (H, W); a ``resize`` op to another size is refused (the graph does
            not resize), None = trust that it matches.

    Returns:
        ``(nodes, initializers)``.
    """
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []
    cur = src

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), f"pp/{name}"))
        return f"pp/{name}"

    def op(kind: str, inputs: list[str], name: str, **attrs: Any) -> None:
        nonlocal cur
        nodes.append(helper.make_node(kind, inputs, [f"pp/{name}"], name=f"pp/{name}", **attrs))
        cur = f"pp/{name}"

    for i, pre in enumerate(spec.preprocess_ops()):
        tag = f"{i}_{pre.kind}"
        if pre.kind == "resize":
            if size is not None and tuple(size) != tuple(pre.value):
                raise ValueError(f"the policy takes {pre.value[1]}x{pre.value[0]} (WxH) frames but "
                                 f"the graph gives {size[1]}x{size[0]}; the graph does not resize")
        elif pre.kind == "flip_channels":
            op("Gather", [cur, const(f"{tag}_bgr", [2, 1, 0], np.int64)], tag, axis=3)
        elif pre.kind in ("div", "sub"):
            op(pre.kind.capitalize(), [cur, const(f"{tag}_value", pre.value)], tag)
        elif pre.kind == "sub_image_mean":
            before = cur
            if opset >= 18:
                op("ReduceMean", [cur, const(f"{tag}_hw", [1, 2], np.int64)], f"{tag}_mean",
                   keepdims=1)
            else:
                op("ReduceMean", [cur], f"{tag}_mean", axes=[1, 2], keepdims=1)
            op("Sub", [before, cur], tag)
        elif pre.kind == "clip":
            op("Clip", [cur, const(f"{tag}_lo", pre.value[0]), const(f"{tag}_hi", pre.value[1])],
               tag)
        elif pre.kind == "to_uint8":
            op("Round", [cur], f"{tag}_round")
            op("Clip", [cur, const(f"{tag}_lo", 0.0), const(f"{tag}_hi", 255.0)], f"{tag}_clip")
            op("Cast", [cur], tag, to=TensorProto.UINT8)
        elif pre.kind == "layout" and pre.value == "NCHW":
            op("Transpose", [cur], tag, perm=[0, 3, 1, 2])
    nodes.append(helper.make_node("Identity", [cur], [dst], name="pp/out"))
    return nodes, inits


def _translator_front(tm: Any, tmeta: Mapping[str, Any], opset: int, ir: int
                      ) -> tuple[Any, dict[str, Any]]:
    """The translator as the fused graph's front: uint8 NHWC frames in, float sim pixels out.

    A core graph gets its ``[-1, 1]`` scaling as ops before it; after either variant come the
    ops that turn its output into float NHWC 0–255 pixels as :meth:`Translator.translate`
    returns them (the ``post_*`` glue, fed at ``glue/in``).

    Returns:
        ``(translator model, {"input_size", "output_size", "output_name", "post_nodes",
        "post_inits", "post_in", "correction_in_graph", "input_channel_order"})``.
    """
    from onnx import TensorProto, compose, helper, numpy_helper

    f32, n = TensorProto.FLOAT, "N"
    oh, ow = tmeta["output_size"]
    if tmeta.get("variant") != "core":  # the robot graph: uint8 NHWC in and out already
        return tm, {
            "input_size": tuple(tmeta["input_size"]), "output_size": (oh, ow),
            "output_name": tm.graph.output[0].name,
            "post_nodes": [helper.make_node("Cast", ["glue/in"], ["sim_pixels"], to=f32)],
            "post_inits": [],
            "post_in": helper.make_tensor_value_info("glue/in", TensorProto.UINT8, [n, oh, ow, 3]),
            "correction_in_graph": bool(tmeta.get("correction_in_graph", False)),
            "input_channel_order": str(tmeta.get("input_channel_order", "RGB")),
        }
    if tmeta.get("dynamic_size"):
        h_in, w_in = oh, ow  # fix the size: TensorRT builds one engine
    else:
        h_in, w_in = tmeta["input_size"]
    # frames uint8 NHWC RGB → [-1, 1] NCHW, as Translator feeds the core graph
    pre = _glue_model(
        [helper.make_node("Cast", ["frames"], ["in/f"], to=f32),
         helper.make_node("Div", ["in/f", "in/127.5"], ["in/d"]),
         helper.make_node("Sub", ["in/d", "in/1"], ["in/s"]),
         helper.make_node("Transpose", ["in/s"], ["in/x"], perm=[0, 3, 1, 2])],
        [numpy_helper.from_array(np.array(127.5, np.float32), "in/127.5"),
         numpy_helper.from_array(np.array(1.0, np.float32), "in/1")],
        helper.make_tensor_value_info("frames", TensorProto.UINT8, [n, h_in, w_in, 3]),
        helper.make_tensor_value_info("in/x", f32, [n, 3, h_in, w_in]), opset, ir)
    t_in, t_out = tm.graph.input[0].name, tm.graph.output[0].name
    tm = compose.merge_models(pre, tm, io_map=[("in/x", t_in)])
    # (y + 1) * 127.5, rounded half to even, clamped: what Translator returns, as float
    post_nodes = [helper.make_node("Add", ["glue/in", "out/1"], ["out/a"]),
                  helper.make_node("Mul", ["out/a", "out/127.5"], ["out/m"]),
                  helper.make_node("Round", ["out/m"], ["out/r"]),
                  helper.make_node("Clip", ["out/r", "out/0", "out/255"], ["out/c"]),
                  helper.make_node("Transpose", ["out/c"], ["sim_pixels"], perm=[0, 2, 3, 1])]
    post_inits = [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in
                  (("out/1", 1.0), ("out/127.5", 127.5), ("out/0", 0.0), ("out/255", 255.0))]
    return tm, {
        "input_size": (h_in, w_in), "output_size": (oh, ow), "output_name": t_out,
        "post_nodes": post_nodes, "post_inits": post_inits,
        "post_in": helper.make_tensor_value_info("glue/in", f32, [n, 3, oh, ow]),
        "correction_in_graph": False, "input_channel_order": "RGB",
    }


def _append_clamped_action(fused: Any, action_src: str, clamp: tuple[float, float] | None) -> str:
    """Add the ``action`` output (``Clip`` of ``action_src`` to ``clamp``); returns its name."""
    from onnx import TensorProto, helper, numpy_helper

    out_names = [o.name for o in fused.graph.output]
    action_name = FUSED_ACTION if FUSED_ACTION not in out_names else f"{FUSED_ACTION}_clamped"
    if clamp is not None:
        lo, hi = (np.array(v, np.float32) for v in clamp)
        fused.graph.initializer.extend([numpy_helper.from_array(lo, "act/lo"),
                                        numpy_helper.from_array(hi, "act/hi")])
        fused.graph.node.append(helper.make_node("Clip", [action_src, "act/lo", "act/hi"],
                                                 [action_name], name="act/clamp"))
    else:
        fused.graph.node.append(helper.make_node("Identity", [action_src], [action_name],
                                                 name="act/identity"))
    src_out = next(o for o in fused.graph.output if o.name == action_src)
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
             for d in src_out.type.tensor_type.shape.dim]
    fused.graph.output.append(helper.make_tensor_value_info(action_name, TensorProto.FLOAT, shape))
    return action_name


def fuse_translator_and_policy(
    translator_onnx: str | os.PathLike[str],
    policy_onnx: str | os.PathLike[str],
    spec: PolicySpec | str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    *,
    check: bool = True,
    atol: float = 1e-3,
) -> Path:
    """Compose translator and policy into one ONNX graph (for TensorRT): frames in, actions out.

    The graph: input ``frames`` uint8 NHWC (as the translator's robot graph, or RGB at the core
    graph's size with the core graph's ``[-1, 1]`` scaling expressed as ops) → translator →
    sim pixels (rounded and clamped as :meth:`Translator.translate` returns them) → the policy's
    preprocessing as graph ops (channel order ``Gather``, scale ``Div``, mean/std ``Sub``/``Div``,
    per-image mean ``ReduceMean``/``Sub``, ``Clip``, ``Round``/``Cast`` for uint8, ``Transpose``
    for NCHW) → the policy → its outputs plus ``action`` (``Clip`` of the action output to
    ``spec.clamp``). Built with ``onnx.compose.merge_models``; the policy's internal names get a
    ``policy/`` prefix. A lens correction that is not in the translator's graph stays outside
    (recorded in the metadata; :class:`FusedPolicy` applies it in numpy).

    Needs the ``onnx`` package (an offline step; the robot only needs onnxruntime to run it).

    Args:
        translator_onnx: ``translator_robot.onnx`` (preferred) or ``translator.onnx``.
        policy_onnx: the frozen policy.
        spec: its :class:`PolicySpec`, a preset name, a YAML path, or None for the
            ``policy_spec.yaml`` next to it.
        out: the fused file (written atomically).
        check: compare the fused graph with translator-then-policy on random frames (onnxruntime
            CPU) and refuse to write it if actions differ by more than ``atol``.
        atol: the check's tolerance on actions.

    Returns:
        The path written.

    Raises:
        ValueError: the policy's input size differs from the translator's output size (the
            fused graph does not resize), the opsets cannot be reconciled, or the check failed.
    """
    import onnx
    from onnx import compose, helper, version_converter

    from translate.fsutil import atomic_write_bytes
    from translate.policy import load_policy

    t_path, p_path, out = Path(translator_onnx), Path(policy_onnx), Path(out)
    policy = load_policy(p_path, spec, providers=["CPUExecutionProvider"])
    pspec = policy.spec
    tmeta = read_onnx_metadata(t_path)
    variant = tmeta.get("variant")
    if variant not in ("core", "robot"):
        raise ValueError(f"{t_path}: variant {variant!r} cannot be fused (core or robot only)")
    oh, ow = tmeta["output_size"]
    p_size = (pspec.height, pspec.width)
    if None not in p_size and p_size != (oh, ow):
        raise ValueError(
            f"policy {p_path.name} takes {pspec.width}x{pspec.height} (WxH) frames but the "
            f"translator gives {ow}x{oh}; the fused graph does not resize: export the "
            "translator at the policy's size"
        )
    tm = onnx.load(str(t_path))
    pm = onnx.load(str(p_path))
    opset = next(o.version for o in tm.opset_import if o.domain in ("", "ai.onnx"))
    p_opset = next((o.version for o in pm.opset_import if o.domain in ("", "ai.onnx")), opset)
    if p_opset != opset:
        try:
            pm = version_converter.convert_version(pm, opset)
        except Exception as exc:
            raise ValueError(f"cannot convert {p_path.name} from opset {p_opset} to the "
                             f"translator's {opset}: {exc}") from exc
    ir = max(tm.ir_version, pm.ir_version)
    tm.ir_version = pm.ir_version = ir
    raw_meta = {p.key: p.value for p in tm.metadata_props}
    del tm.metadata_props[:]
    del pm.metadata_props[:]

    tm, front = _translator_front(tm, tmeta, opset, ir)
    h_in, w_in = front["input_size"]
    oh, ow = front["output_size"]
    n = "N"
    p_in = pspec.input_name
    pre_nodes, pre_inits = _policy_pre_nodes(pspec, opset, "sim_pixels", "pp/obs", (oh, ow))
    p_input = next(i for i in pm.graph.input if i.name == p_in)
    elem = p_input.type.tensor_type.elem_type
    obs_dims: list[Any] = [n, 3, oh, ow] if pspec.layout == "NCHW" else [n, oh, ow, 3]
    glue = _glue_model(front["post_nodes"] + pre_nodes, front["post_inits"] + pre_inits,
                       front["post_in"], helper.make_tensor_value_info("pp/obs", elem, obs_dims),
                       opset, ir)
    fused = compose.merge_models(tm, glue, io_map=[(front["output_name"], "glue/in")])
    pm = compose.add_prefix(pm, "policy/", rename_inputs=False, rename_outputs=False)
    fused = compose.merge_models(fused, pm, io_map=[("pp/obs", p_in)])

    action_name = _append_clamped_action(fused, pspec.action_output or pm.graph.output[0].name,
                                         pspec.clamp)
    # one fixed frame size (TensorRT builds one engine); the batch stays as the parts allow
    in_dims = fused.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(list(in_dims)[1:], (int(h_in), int(w_in), 3), strict=True):
        dim.Clear()
        dim.dim_value = value

    meta = dict(raw_meta)
    meta.update({
        "variant": "fused",
        "translator_variant": str(variant),
        "translator_file": t_path.name,
        "policy_file": p_path.name,
        "policy_spec": json.dumps(pspec.to_dict()),
        "input_size": json.dumps([int(h_in), int(w_in)]),
        "dynamic_size": json.dumps(False),
        "correction_in_graph": json.dumps(front["correction_in_graph"]),
        "input_layout": "NHWC",
        "input_dtype": "uint8",
        "input_channel_order": front["input_channel_order"],
        "action_output": action_name,
        "outputs": json.dumps([o.name for o in fused.graph.output]),
    })
    helper.set_model_props(fused, meta)
    fused.doc_string = "sim2real translate: real->sim translator fused with a frozen sim policy"
    onnx.checker.check_model(fused, full_check=True)
    data = fused.SerializeToString()

    if check:
        _check_fused(data, t_path, p_path, pspec, (int(h_in), int(w_in)), action_name, atol,
                     front["input_channel_order"])
    atomic_write_bytes(out, data)
    return out


def _check_fused(data: bytes, t_path: Path, p_path: Path, spec: PolicySpec,
                 in_size: tuple[int, int], action_name: str, atol: float, in_order: str) -> None:
    from translate.policy import load_policy

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, *in_size, 3), dtype=np.uint8)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    policy = load_policy(p_path, spec, providers=["CPUExecutionProvider"])
    fixed = policy.fixed_batch
    batch = frames[:fixed] if fixed else frames
    got = dict(zip(names, sess.run(None, {"frames": batch}), strict=True))[action_name]
    translator = Translator.from_onnx(t_path, providers=["CPUExecutionProvider"],
                                      input_channel_order=in_order)
    # the fused graph skips a correction that is not in the graph: compare on corrected frames
    sim = translator.run_corrected(np.ascontiguousarray(batch))
    want = policy.act(sim)
    diff = float(np.max(np.abs(np.asarray(got, np.float64) - want)))
    if diff > atol:
        raise ValueError(
            f"fused graph's actions differ from translator-then-policy by {diff:.3g} > {atol}; "
            "not written"
        )
    log.info("fused graph check: max |action diff| %.2e", diff)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m translate.runtime info MODEL`` / ``fuse TRANSLATOR POLICY OUT [--spec S]``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m translate.runtime",
                                description="Inspect an exported translator, or fuse it with a "
                                            "policy into one ONNX graph (for TensorRT).")
    sub = p.add_subparsers(dest="cmd", required=True)
    info = sub.add_parser("info", help="metadata and the execution providers onnxruntime picks")
    info.add_argument("model")
    info.add_argument("--providers", default=None, help="comma-separated provider names")
    fuse = sub.add_parser("fuse", help="translator + policy -> one graph (needs the onnx package)")
    fuse.add_argument("translator")
    fuse.add_argument("policy")
    fuse.add_argument("out")
    fuse.add_argument("--spec", default=None, help="preset or YAML (default policy_spec.yaml)")
    args = p.parse_args(argv)
    if args.cmd == "info":
        providers = args.providers.split(",") if args.providers else None
        sess = _make_session(Path(args.model), providers, threads=None, session_options=None,
                             fp16=False, trt_cache_dir=None)
        meta = read_onnx_metadata(args.model, sess)
        print(json.dumps({"providers": sess.get_providers(),
                          "inputs": [(i.name, i.shape, i.type) for i in sess.get_inputs()],
                          "outputs": [(o.name, o.shape, o.type) for o in sess.get_outputs()],
                          "metadata": meta}, indent=2, default=str))
        return 0
    out = fuse_translator_and_policy(args.translator, args.policy, args.spec, args.out)
    print(f"fused graph -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
