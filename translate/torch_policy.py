"""The frozen policy as a differentiable torch module (ONNX graph interpreter or TorchScript), spec included."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from translate.policy import PolicySpec, PreOp, SpecMismatchError, _find_penultimate, _resolve_spec

__all__ = [
    "OnnxGraphModule",
    "TorchPolicy",
    "TorchPolicyOutput",
    "UnsupportedOnnxOpError",
    "load_torch_policy",
]


class UnsupportedOnnxOpError(NotImplementedError):
    """The ONNX graph uses an operator the interpreter does not implement (named in the message)."""


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _gemm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, a: dict[str, Any]) -> torch.Tensor:
    if a.get("transA", 0):
        x = x.t()
    if a.get("transB", 0):
        w = w.t()
    y = float(a.get("alpha", 1.0)) * (x @ w)
    if b is not None:
        y = y + float(a.get("beta", 1.0)) * b
    return y


def _conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, a: dict[str, Any]) -> torch.Tensor:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedOnnxOpError("Conv with auto_pad is not supported; export with explicit pads")
    nd = w.dim() - 2
    pads = list(a.get("pads", [0] * (2 * nd)))
    stride = list(a.get("strides", [1] * nd))
    dil = list(a.get("dilations", [1] * nd))
    groups = int(a.get("group", 1))
    if pads[:nd] == pads[nd:]:
        return F.conv2d(x, w, b, stride, pads[:nd], dil, groups)
    x = F.pad(x, [pads[1], pads[3], pads[0], pads[2]])
    return F.conv2d(x, w, b, stride, 0, dil, groups)


def _reshape(x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    dims = [int(s) for s in shape.tolist()]
    dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def _flatten(x: torch.Tensor, a: dict[str, Any]) -> torch.Tensor:
    axis = int(a.get("axis", 1))
    axis = axis + x.dim() if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis])) if axis else 1, -1)


def _slice(x: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor,
           axes: torch.Tensor | None = None, steps: torch.Tensor | None = None) -> torch.Tensor:
    ax = axes.tolist() if axes is not None else list(range(len(starts)))
    st = steps.tolist() if steps is not None else [1] * len(ax)
    idx = [slice(None)] * x.dim()
    for s, e, axis, step in zip(starts.tolist(), ends.tolist(), ax, st, strict=True):
        n = x.shape[axis]
        e = min(e, n) if e >= 0 else e
        idx[axis] = slice(s, e, step)
    return x[tuple(idx)]


_UNARY: dict[str, Callable[..., torch.Tensor]] = {
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Exp": torch.exp,
    "Log": torch.log,
    "Neg": torch.neg,
    "Sqrt": torch.sqrt,
    "Abs": torch.abs,
    "Identity": lambda x: x,
    "Softplus": F.softplus,
}
_BINARY: dict[str, Callable[..., torch.Tensor]] = {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "Pow": torch.pow,
    "MatMul": torch.matmul, "Max": torch.maximum, "Min": torch.minimum,
}


class OnnxGraphModule(nn.Module):
    """Run an ONNX graph with torch ops, differentiably, with its weights as frozen buffers.

    Covers the operators of CNN/MLP policies as rl_games, rsl_rl and the torch exporter write
    them (Conv, Gemm/MatMul, activations, Transpose/Reshape/Flatten, elementwise arithmetic, pooling,
    BatchNormalization, Shape/Gather/Concat for dynamic reshapes, ...). An unsupported operator is
    an error at construction naming it, so a policy that loads will run.

    Args:
        path: the ``.onnx`` file.
        outputs: graph tensors to return (default: the graph outputs); intermediate names allowed.

    Shape:
        forward(\\*inputs) → dict name → tensor; inputs as the graph declares them.
    """

    SUPPORTED = (set(_UNARY) | set(_BINARY) | {
        "Conv", "Gemm", "Elu", "LeakyRelu", "Selu", "Clip", "Transpose", "Reshape", "Flatten",
        "Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice",
        "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Softmax",
        "ReduceMean", "Expand", "ConstantOfShape", "Resize", "Where", "Equal",
    })

    def __init__(self, path: str | os.PathLike[str], outputs: Sequence[str] | None = None) -> None:
        super().__init__()
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        graph = model.graph
        self.path = str(path)
        self.nodes = list(graph.node)
        bad = sorted({n.op_type for n in self.nodes if n.op_type not in self.SUPPORTED})
        if bad:
            raise UnsupportedOnnxOpError(
                f"{path}: ONNX operators not supported by the torch interpreter: {', '.join(bad)}; "
                "load the policy as TorchScript instead"
            )
        self._buffers_by_name: dict[str, str] = {}
        for i, init in enumerate(graph.initializer):
            key = f"w{i}"
            arr = numpy_helper.to_array(init).copy()
            self.register_buffer(key, torch.from_numpy(arr))
            self._buffers_by_name[init.name] = key
        inits = {i.name for i in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in inits]
        self.output_names = list(outputs) if outputs else [o.name for o in graph.output]
        self._attrs = [_attrs(n) for n in self.nodes]
        # float constants are buffers (they move with the module, so a forward copies nothing
        # host→device: CUDA graphs can capture it); integer ones are shape maths and stay on the CPU
        self._consts: dict[str, torch.Tensor] = {}
        self._const_buffers: dict[str, str] = {}
        for n, a in zip(self.nodes, self._attrs, strict=True):
            if n.op_type == "Constant":
                t = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
                if t.is_floating_point():
                    key = f"c{len(self._const_buffers)}"
                    self.register_buffer(key, t, persistent=False)
                    self._const_buffers[n.output[0]] = key
                else:
                    self._consts[n.output[0]] = t

    def make_trainable(self) -> None:
        """Turn the graph's floating-point initializers (weights, biases, batch-norm tensors) into
        ``nn.Parameter`` s with gradients, in place (same names, same ``state_dict`` keys)."""
        for key in self._buffers_by_name.values():
            t = self._buffers[key]
            if t is not None and t.is_floating_point():
                del self._buffers[key]
                setattr(self, key, nn.Parameter(t.clone()))

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"expected inputs {self.input_names}, got {len(inputs)} tensor(s)")
        env: dict[str, torch.Tensor] = dict(zip(self.input_names, inputs, strict=True))
        dev = inputs[0].device
        for name, key in self._buffers_by_name.items():
            env[name] = getattr(self, key)
        for name, key in self._const_buffers.items():
            env[name] = getattr(self, key)
        for name, t in self._consts.items():
            env[name] = t if t.dim() == 0 or dev.type == "cpu" else t.to(dev)
        for node, a in zip(self.nodes, self._attrs, strict=True):
            if node.op_type == "Constant":
                continue
            args = [env[i] if i else None for i in node.input]
            out = self._run(node.op_type, args, a)
            outs = out if isinstance(out, tuple) else (out,)
            for name, t in zip(node.output, outs, strict=False):
                env[name] = t
        return {n: env[n] for n in self.output_names}

    @staticmethod
    def _run(op: str, x: list[Any], a: dict[str, Any]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if op in _UNARY:
            return _UNARY[op](x[0])
        if op in _BINARY:
            return _BINARY[op](x[0], x[1])
        if op == "Conv":
            return _conv(x[0], x[1], x[2] if len(x) > 2 else None, a)
        if op == "Gemm":
            return _gemm(x[0], x[1], x[2] if len(x) > 2 else None, a)
        if op == "Elu":
            return F.elu(x[0], alpha=float(a.get("alpha", 1.0)))
        if op == "LeakyRelu":
            return F.leaky_relu(x[0], float(a.get("alpha", 0.01)))
        if op == "Selu":
            return F.selu(x[0])
        if op == "Clip":
            lo = x[1] if len(x) > 1 and x[1] is not None else a.get("min")
            hi = x[2] if len(x) > 2 and x[2] is not None else a.get("max")
            return torch.clamp(x[0], min=lo, max=hi)
        if op == "Transpose":
            perm = a.get("perm", list(reversed(range(x[0].dim()))))
            return x[0].permute(*perm)
        if op == "Reshape":
            return _reshape(x[0], x[1])
        if op == "Flatten":
            return _flatten(x[0], a)
        if op == "Shape":
            return torch.tensor(x[0].shape, dtype=torch.int64)
        if op == "Gather":
            axis = int(a.get("axis", 0))
            idx = x[1].to(x[0].device) if x[1].device != x[0].device else x[1]
            return torch.index_select(x[0], axis, idx.reshape(-1).long()).reshape(
                *x[0].shape[:axis], *idx.shape, *x[0].shape[axis + 1:]
            )
        if op == "Unsqueeze":
            axes_u: list[int] = list(a["axes"]) if "axes" in a else x[1].tolist()
            y = x[0]
            for ax in sorted(int(v) for v in axes_u):
                y = y.unsqueeze(ax)
            return y
        if op == "Squeeze":
            axes = a.get("axes") if "axes" in a else (x[1].tolist() if len(x) > 1 and x[1] is not None else None)
            return x[0].squeeze() if axes is None else x[0].squeeze(tuple(int(v) for v in axes))
        if op == "Concat":
            ts = [t for t in x if t is not None]
            devs = {t.device for t in ts}
            if len(devs) > 1:
                ts = [t.cpu() for t in ts]
            return torch.cat(ts, dim=int(a["axis"]))
        if op == "Cast":
            import onnx

            np_dtype = onnx.helper.tensor_dtype_to_np_dtype(int(a["to"]))
            return x[0].to(torch.from_numpy(np.zeros(0, dtype=np_dtype)).dtype)
        if op == "Slice":
            return _slice(x[0], x[1], x[2], x[3] if len(x) > 3 else None, x[4] if len(x) > 4 else None)
        if op in ("MaxPool", "AveragePool"):
            k = list(a["kernel_shape"])
            s = list(a.get("strides", [1] * len(k)))
            p = list(a.get("pads", [0] * 2 * len(k)))[: len(k)]
            if op == "MaxPool":
                return F.max_pool2d(x[0], k, s, p, ceil_mode=bool(a.get("ceil_mode", 0)))
            return F.avg_pool2d(x[0], k, s, p, ceil_mode=bool(a.get("ceil_mode", 0)),
                                count_include_pad=bool(a.get("count_include_pad", 0)))
        if op == "GlobalAveragePool":
            return x[0].mean(dim=tuple(range(2, x[0].dim())), keepdim=True)
        if op == "BatchNormalization":
            return F.batch_norm(x[0], x[3], x[4], x[1], x[2], False, 0.0, float(a.get("epsilon", 1e-5)))
        if op == "Softmax":
            return torch.softmax(x[0], dim=int(a.get("axis", -1)))
        if op == "ReduceMean":
            axes = a.get("axes") if "axes" in a else (x[1].tolist() if len(x) > 1 and x[1] is not None else None)
            keep = bool(a.get("keepdims", 1))
            return x[0].mean() if axes is None else x[0].mean(dim=tuple(axes), keepdim=keep)
        if op == "Expand":
            return x[0].expand(*[int(v) for v in x[1].tolist()]) if x[0].dim() == len(x[1]) else \
                x[0] * torch.ones([int(v) for v in x[1].tolist()], dtype=x[0].dtype, device=x[0].device)
        if op == "ConstantOfShape":
            val = a.get("value")
            from onnx import numpy_helper

            v = torch.from_numpy(numpy_helper.to_array(val).copy()) if val is not None else torch.zeros(1)
            return v.reshape(()).expand(*[int(s) for s in x[0].tolist()]).clone()
        if op == "Where":
            return torch.where(x[0].bool(), x[1], x[2])
        if op == "Equal":
            return torch.eq(x[0], x[1])
        raise UnsupportedOnnxOpError(f"ONNX operator {op} is not supported")  # pragma: no cover


@dataclass
class TorchPolicyOutput:
    """What :class:`TorchPolicy` returns (all differentiable w.r.t. the input images).

    Shape:
        - action, mu: :math:`(N, A)`; action = clamp(mu) as the spec says.
        - features: :math:`(N, F)` penultimate activations, or None.
    """

    action: torch.Tensor
    mu: torch.Tensor
    features: torch.Tensor | None


class TorchPolicy(nn.Module):
    """A frozen sim policy as a differentiable torch module, its PolicySpec preprocessing in torch.

    Takes translator-convention images — (N, 3, H, W) float RGB in [-1, 1] — so a loss on the
    policy's actions can back-propagate into a translator. Parameters are frozen (buffers, or
    ``requires_grad=False``); gradients flow to the input only. ``preprocess`` mirrors
    :func:`translate.policy.preprocess` (resize, channel order, scale, normalisation, clip,
    layout), except the uint8 rounding of a ``dtype: uint8`` spec, which has no gradient.

    Args:
        net: maps the model input tensor to a dict of named outputs.
        spec: the policy's input contract.
        action_output: the output holding the action (mu).
        feature_output: the output holding the penultimate features, or None.
    """

    def __init__(self, net: nn.Module, spec: PolicySpec, action_output: str,
                 feature_output: str | None) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self.action_output = action_output
        self.feature_output = feature_output
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> TorchPolicy:
        """The policy stays in eval mode (frozen batch-norm statistics, no dropout)."""
        super().train(mode)
        self.net.eval()
        return self

    def trainable_copy(self) -> TorchPolicy:
        """A copy of this policy whose weights take gradients (e.g. a student fine-tuned on
        another camera's look); it keeps the spec, the outputs and eval-mode batch norm.

        Returns:
            A new :class:`TorchPolicy`; ``self`` stays frozen.
        """
        twin = copy.deepcopy(self)
        if isinstance(twin.net, OnnxGraphModule):
            twin.net.make_trainable()
        for p in twin.net.parameters():
            p.requires_grad_(True)
        return twin

    def _const(self, value: Any, device: torch.device) -> torch.Tensor | float:
        # per-channel constants are made once per device: a host-to-device copy inside a
        # CUDA-graph capture is not allowed
        if not isinstance(value, tuple):
            return float(value)
        cache = self.__dict__.setdefault("_const_cache", {})
        key = (value, device)
        if key not in cache:
            cache[key] = torch.tensor(value, device=device).view(1, 3, 1, 1)
        return cache[key]

    def _pre_op(self, op: PreOp, x: torch.Tensor) -> torch.Tensor:
        """One :class:`~translate.policy.PreOp` on (N, 3, H, W) pixels (layout on the way out)."""
        if op.kind == "resize":
            if tuple(x.shape[2:]) == tuple(op.value):
                return x
            return F.interpolate(x, size=tuple(op.value), mode="bilinear", align_corners=False)
        if op.kind == "flip_channels":
            return x.flip(1)
        if op.kind == "div":
            return x / self._const(op.value, x.device)
        if op.kind == "sub":
            return x - self._const(op.value, x.device)
        if op.kind == "sub_image_mean":
            return x - x.mean(dim=(2, 3), keepdim=True)
        if op.kind == "clip":
            return x.clamp(op.value[0], op.value[1])
        if op.kind == "to_uint8":
            return x  # rounding has no gradient: the torch path stays float
        assert op.kind == "layout"
        return x.permute(0, 2, 3, 1) if op.value == "NHWC" else x

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The model's input per :meth:`PolicySpec.preprocess_ops <translate.policy.PolicySpec.preprocess_ops>`, differentiable.

        Args:
            images: RGB in [-1, 1].

        Returns:
            The model input, float32, in the spec's layout.

        Shape:
            - images: :math:`(N, 3, H, W)`.
            - output: :math:`(N, H', W', 3)` for NHWC or :math:`(N, 3, H', W')` for NCHW.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W) RGB in [-1, 1], got {tuple(images.shape)}")
        x = (images.float() + 1.0) * 127.5  # 0..255 RGB
        for op in self.spec.preprocess_ops():
            x = self._pre_op(op, x)
        return x.contiguous()

    def forward(self, images: torch.Tensor) -> TorchPolicyOutput:
        """Run the policy on (N, 3, H, W) RGB images in [-1, 1]."""
        out = self.net(self.preprocess(images))
        mu = out[self.action_output].reshape(images.shape[0], -1)
        action = mu.clamp(*self.spec.clamp) if self.spec.clamp is not None else mu
        feats = out.get(self.feature_output) if self.feature_output else None
        return TorchPolicyOutput(action, mu, feats.reshape(images.shape[0], -1) if feats is not None else None)


class _ScriptedNet(nn.Module):
    def __init__(self, module: torch.jit.ScriptModule, action_name: str, feature_method: str | None) -> None:
        super().__init__()
        self.module = module
        self.action_name = action_name
        self.feature_method = feature_method

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.module(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        elif isinstance(out, dict):
            out = out[self.action_name]
        res = {self.action_name: out}
        if self.feature_method:
            res["features"] = getattr(self.module, self.feature_method)(x)
        return res


def _size_from_graph(spec: PolicySpec, graph: Any) -> PolicySpec:
    # a spec without height/width takes them from the model's static input shape, as the
    # onnxruntime policy does: frames of another size are then resized to it, not fed as they are
    if spec.height is not None and spec.width is not None:
        return spec
    init = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init]
    inp = next((i for i in inputs if i.name == spec.input_name), inputs[0] if len(inputs) == 1 else None)
    if inp is None:
        return spec
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4:
        return spec
    h, w = (dims[1], dims[2]) if spec.layout == "NHWC" else (dims[2], dims[3])
    return spec.replace(height=h, width=w) if h and w else spec


def load_torch_policy(
    path: str | os.PathLike[str],
    spec: PolicySpec | str | os.PathLike[str] | None = None,
    *,
    features: bool = True,
) -> TorchPolicy:
    """Load a frozen policy as a differentiable :class:`TorchPolicy`.

    ONNX models run through :class:`OnnxGraphModule`; TorchScript models directly. The spec
    resolves as in :func:`translate.policy.load_policy` (object, preset name, YAML path, or the
    ``policy_spec.yaml`` next to the model).

    Args:
        path: ``.onnx`` or TorchScript file.
        spec: the input contract.
        features: also return the penultimate features (``feature_output`` of the spec).

    Returns:
        The frozen module; call it on (N, 3, H, W) images in [-1, 1].
    """
    model = Path(path)
    if not model.is_file():
        raise FileNotFoundError(f"policy model not found: {model}")
    resolved = _resolve_spec(spec, model)
    is_onnx = resolved.format == "onnx" or (resolved.format == "auto" and model.suffix.lower() == ".onnx")
    if is_onnx:
        import onnx

        graph = onnx.load(str(model)).graph
        resolved = _size_from_graph(resolved, graph)
        action = resolved.action_output or graph.output[0].name
        if action not in {o.name for o in graph.output}:
            raise SpecMismatchError(
                f"{model}: action_output {action!r} is not an output of the model "
                f"(outputs: {', '.join(o.name for o in graph.output)})"
            )
        feat = None
        if features and resolved.feature_output:
            feat = (_find_penultimate(graph, action) if resolved.feature_output == "auto"
                    else resolved.feature_output)
        names = [action] + ([feat] if feat else [])
        return TorchPolicy(OnnxGraphModule(model, outputs=names), resolved, action, feat)
    scripted = torch.jit.load(str(model), map_location="cpu")
    method = resolved.feature_output if resolved.feature_output not in (None, "auto") else "features"
    has_method = features and hasattr(scripted, str(method))
    net = _ScriptedNet(scripted, "action", str(method) if has_method else None)
    return TorchPolicy(net, resolved, "action", "features" if has_method else None)
