"""Fuse an exported translator and a frozen policy into one ONNX graph, frames in, actions out (offline tool: needs the onnx package)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from translate.export_format import FUSED_ACTION, read_export_metadata
from translate.policy import PolicySpec
from translate.runtime import Translator

__all__ = ["fuse_translator_and_policy", "main", "preprocess_model"]

log = logging.getLogger(__name__)


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


def preprocess_model(spec: PolicySpec, size: tuple[int, int], *, opset: int = 17,
                     ir_version: int = 8) -> Any:
    """The policy's preprocessing alone as an ONNX model: the graph-op interpreter of
    :meth:`PolicySpec.preprocess_ops` (what the fused graph holds between translator and policy).

    Args:
        spec: the policy's input contract.
        size: the pixels' (H, W); the graph does not resize.
        opset: ONNX opset.
        ir_version: ONNX IR version.

    Returns:
        An ``onnx.ModelProto``: input ``pixels`` float (N, H, W, 3) RGB 0–255, output ``obs``.

    Shape:
        - pixels: :math:`(N, H, W, 3)`; obs: :math:`(N, H, W, 3)` (NHWC) or :math:`(N, 3, H, W)`.
    """
    from onnx import TensorProto, helper

    nodes, inits = _policy_pre_nodes(spec, opset, "pixels", "obs", size)
    out_type = TensorProto.UINT8 if spec.dtype == "uint8" else TensorProto.FLOAT
    return _glue_model(nodes, inits,
                       helper.make_tensor_value_info("pixels", TensorProto.FLOAT,
                                                     ["N", size[0], size[1], 3]),
                       helper.make_tensor_value_info("obs", out_type, None), opset, ir_version)


def _translator_front(tm: Any, tmeta: Mapping[str, Any], opset: int, ir: int
                      ) -> tuple[Any, dict[str, Any]]:
    """The translator as the fused graph's front: uint8 NHWC frames in, float sim pixels out.

    A core graph gets its ``[-1, 1]`` scaling as ops before it; after either variant come the
    ops that turn its output into float NHWC 0–255 pixels as :meth:`translate.runtime.Translator.translate`
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
    sim pixels (rounded and clamped as :meth:`translate.runtime.Translator.translate` returns them) → the policy's
    preprocessing as graph ops (channel order ``Gather``, scale ``Div``, mean/std ``Sub``/``Div``,
    per-image mean ``ReduceMean``/``Sub``, ``Clip``, ``Round``/``Cast`` for uint8, ``Transpose``
    for NCHW) → the policy → its outputs plus ``action`` (``Clip`` of the action output to
    ``spec.clamp``). Built with ``onnx.compose.merge_models``; the policy's internal names get a
    ``policy/`` prefix. A lens correction that is not in the translator's graph stays outside
    (recorded in the metadata; :class:`translate.runtime.FusedPolicy` applies it in numpy).

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
    tmeta = read_export_metadata(t_path)
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m translate.fusion TRANSLATOR POLICY OUT [--spec S]``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m translate.fusion",
                                description="Fuse an exported translator with a frozen policy "
                                            "into one ONNX graph (for TensorRT).")
    p.add_argument("translator")
    p.add_argument("policy")
    p.add_argument("out")
    p.add_argument("--spec", default=None, help="preset or YAML (default policy_spec.yaml)")
    args = p.parse_args(argv)
    out = fuse_translator_and_policy(args.translator, args.policy, args.spec, args.out)
    print(f"fused graph -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
