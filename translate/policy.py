"""Frozen sim policies, ONNX or TorchScript, called through their input contract, PolicySpec."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from translate.fsutil import atomic_write_text

__all__ = [
    "PRESETS",
    "PRE_OP_KINDS",
    "SPEC_FILENAME",
    "OnnxPolicy",
    "Policy",
    "PolicyOutput",
    "PolicySpec",
    "PolicySpecError",
    "PreOp",
    "SpecMismatchError",
    "TorchScriptPolicy",
    "load_policy",
    "preprocess",
]

log = logging.getLogger(__name__)

#: The file name :func:`load_policy` looks for next to a model when no spec is given.
SPEC_FILENAME = "policy_spec.yaml"

_CHOICES: dict[str, tuple[str, ...]] = {
    "format": ("onnx", "torchscript", "auto"),
    "layout": ("NHWC", "NCHW"),
    "channel_order": ("RGB", "BGR"),
    "dtype": ("float32", "uint8"),
    "scale": ("0-255", "0-1"),
    "normalize": ("none", "mean_std", "per_image_mean"),
}

#: Field overrides of each preset (Python field names). A preset sets the whole input contract so
#: that a YAML that says ``preset: rl_games`` and nothing else is complete.
PRESETS: dict[str, dict[str, Any]] = {
    # The seed's rl_games export: the network permutes NHWC -> NCHW and divides by 255 itself.
    "rl_games": {
        "format": "onnx",
        "input_name": "obs",
        "layout": "NHWC",
        "channel_order": "RGB",
        "dtype": "float32",
        "scale": "0-255",
        "normalize": "none",
        "action_output": "mu",
        "clamp": (-1.0, 1.0),
        "action_names": ("left", "right"),
        "feature_output": "auto",
    },
    "rsl_rl": {
        "format": "onnx",
        "input_name": "obs",
        "layout": "NCHW",
        "channel_order": "RGB",
        "dtype": "float32",
        "scale": "0-1",
        "normalize": "none",
        "action_output": "actions",
        "clamp": (-1.0, 1.0),
        "feature_output": "auto",
    },
    # Isaac Lab's camera envs feed rgb / 255 minus the per-image, per-channel mean.
    "isaaclab_jit": {
        "format": "torchscript",
        "layout": "NCHW",
        "channel_order": "RGB",
        "dtype": "float32",
        "scale": "0-1",
        "normalize": "per_image_mean",
        "action_output": None,
        "clamp": (-1.0, 1.0),
        "feature_output": "auto",
    },
}

_TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".jit", ".ts", ".torchscript")


class PolicySpecError(ValueError):
    """A PolicySpec key or value is invalid; the message names the source, key and choices."""


class SpecMismatchError(PolicySpecError):
    """A PolicySpec contradicts its model (input name, layout, size, dtype or outputs)."""


# --------------------------------------------------------------------------------------------------
# Preprocessing: one declaration (PreOp list), interpreted by numpy here, torch
# (translate.torch_policy) and ONNX graph ops (translate.runtime's fusion)
# --------------------------------------------------------------------------------------------------

#: The operation kinds of :class:`PreOp`, in the order a spec emits them.
PRE_OP_KINDS = ("resize", "flip_channels", "div", "sub", "sub_image_mean", "clip", "to_uint8",
                "layout")


@dataclass(frozen=True)
class PreOp:
    """One step of a policy's input preprocessing; every backend interprets the same list.

    The list starts from RGB float pixels in 0–255 of an image batch whose channel axis each
    backend knows (last in numpy and ONNX, second in torch). Kinds and their ``value``:

    - ``resize`` ``(height, width)``: bilinear, half-pixel centres, no antialiasing; only applied
      when the frames' size differs.
    - ``flip_channels`` ``None``: RGB ↔ BGR.
    - ``div`` a float, or one per channel: ``x / value``.
    - ``sub`` one float per channel: ``x - value``.
    - ``sub_image_mean`` ``None``: subtract each image's own per-channel mean over H and W.
    - ``clip`` ``(lo, hi)``.
    - ``to_uint8`` ``None``: round half to even, clip to 0–255, cast to uint8.
    - ``layout`` ``"NHWC"`` or ``"NCHW"``: the output layout.

    Args:
        kind: one of :data:`PRE_OP_KINDS`.
        value: the kind's parameter, as above.

    Example:
        >>> [op.kind for op in PolicySpec.preset("rsl_rl").preprocess_ops()]
        ['div', 'layout']
    """

    kind: str
    value: Any = None

    def __post_init__(self) -> None:
        if self.kind not in PRE_OP_KINDS:
            raise ValueError(f"PreOp kind must be one of {', '.join(PRE_OP_KINDS)}; got {self.kind!r}")


# --------------------------------------------------------------------------------------------------
# PolicySpec
# --------------------------------------------------------------------------------------------------


def _pair(value: Any, key: str, where: str) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise PolicySpecError(
            f"{where}: {key} must be [lo, hi] (two numbers) or null; got {value!r}"
        ) from None
    if not lo < hi:
        raise PolicySpecError(f"{where}: {key} must have lo < hi; got [{lo}, {hi}]")
    return (lo, hi)


def _triple(value: Any, key: str, where: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 3:
        raise PolicySpecError(
            f"{where}: {key} must be three numbers (one per channel, in the model's channel order "
            f"and value scale); got {value!r}"
        )
    return (vals[0], vals[1], vals[2])


def _choice(value: Any, key: str, where: str) -> str:
    choices = _CHOICES[key]
    if value is None and key == "normalize":
        return "none"
    if isinstance(value, str):
        for c in choices:
            if value.strip().lower() == c.lower():
                return c
    raise PolicySpecError(f"{where}: {key} must be one of {', '.join(choices)}; got {value!r}")


def _opt_str(value: Any, key: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise PolicySpecError(f"{where}: {key} must be a non-empty string or null; got {value!r}")
    return value


def _opt_size(value: Any, key: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PolicySpecError(
            f"{where}: {key} must be a positive integer, or null to take it from the model; "
            f"got {value!r}"
        )
    return value


def _normalize_fields(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Check and canonicalise every field value; raise PolicySpecError naming the key."""
    v = dict(values)
    for key in _CHOICES:
        v[key] = _choice(v[key], key, where)
    name = v["input_name"]
    if not isinstance(name, str) or not name:
        raise PolicySpecError(f"{where}: input_name must be a non-empty string; got {name!r}")
    v["height"] = _opt_size(v["height"], "height", where)
    v["width"] = _opt_size(v["width"], "width", where)
    if (v["height"] is None) != (v["width"] is None):
        raise PolicySpecError(
            f"{where}: give both height and width, or neither (to take both from the model); "
            f"got height={v['height']!r}, width={v['width']!r}"
        )
    v["mean"] = _triple(v["mean"], "mean", where)
    v["std"] = _triple(v["std"], "std", where)
    if v["normalize"] == "mean_std":
        if v["mean"] is None or v["std"] is None:
            raise PolicySpecError(f"{where}: normalize: mean_std needs both mean and std")
        if min(v["std"]) <= 0:
            raise PolicySpecError(f"{where}: std must be positive; got {list(v['std'])}")
    elif v["mean"] is not None or v["std"] is not None:
        raise PolicySpecError(
            f"{where}: mean/std are only used with normalize: mean_std (normalize is "
            f"{v['normalize']}); remove them or set normalize: mean_std"
        )
    if v["dtype"] == "uint8" and (v["scale"] != "0-255" or v["normalize"] != "none"):
        raise PolicySpecError(
            f"{where}: dtype: uint8 needs scale: 0-255 and normalize: none "
            f"(got scale: {v['scale']}, normalize: {v['normalize']})"
        )
    v["clip"] = _pair(v["clip"], "clip", where)
    v["clamp"] = _pair(v["clamp"], "clamp", where)
    v["action_output"] = _opt_str(v["action_output"], "action_output", where)
    v["feature_output"] = _opt_str(v["feature_output"], "feature_output", where)
    names = v["action_names"]
    if names is not None:
        if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
            raise PolicySpecError(
                f"{where}: action_names must be a list of strings or null; got {names!r}"
            )
        v["action_names"] = tuple(names)
    preset = v["preset_name"]
    if preset is not None and preset not in PRESETS:
        raise PolicySpecError(
            f"{where}: preset must be one of {', '.join(PRESETS)}; got {preset!r}"
        )
    return v


@dataclass(frozen=True)
class PolicySpec:
    """The input/output contract of a frozen policy: how frames become the model's input tensor.

    Every field has a YAML key of the same name, except ``preset_name`` whose key is ``preset``.
    The defaults describe the seed's rl_games input (NHWC float32 0–255 RGB); a preset fills in a
    whole contract (see :data:`PRESETS`) and a YAML may name one and override fields.

    Args:
        format: ``onnx``, ``torchscript`` or ``auto`` (from the model file's suffix).
        input_name: the model's image input (ONNX only).
        layout: ``NHWC`` or ``NCHW``.
        channel_order: ``RGB`` or ``BGR``.
        height: model input height; ``None`` takes it from the model.
        width: model input width; ``None`` takes it from the model.
        dtype: ``float32`` or ``uint8``.
        scale: value range before normalisation, ``0-255`` or ``0-1``.
        normalize: ``none``, ``mean_std`` (``(x - mean) / std``) or ``per_image_mean`` (subtract
            each image's own per-channel mean over H and W, as Isaac Lab's camera envs do).
        mean: per-channel mean for ``mean_std``, in the model's channel order and value scale.
        std: per-channel std for ``mean_std``, likewise.
        clip: ``(lo, hi)`` applied to the input after normalisation, or ``None``.
        action_output: the output holding the action mean; ``None`` = the first output (ONNX) or
            the module's return (TorchScript).
        clamp: ``(lo, hi)`` applied to the action, or ``None``.
        action_names: a name per action dimension, or ``None``.
        feature_output: the tensor read as features: an ONNX tensor name or a TorchScript method
            name; ``auto`` = the input of the last Gemm/MatMul producing the action (ONNX) or a
            method named ``features`` (TorchScript); ``None`` = no features.
        preset_name: the preset this spec was built from (YAML key ``preset``), for the record.

    Example:
        >>> spec = PolicySpec.preset("rl_games", height=224, width=224)
        >>> spec.layout, spec.scale, spec.clamp
        ('NHWC', '0-255', (-1.0, 1.0))
    """

    format: str = "auto"
    input_name: str = "obs"
    layout: str = "NHWC"
    channel_order: str = "RGB"
    height: int | None = None
    width: int | None = None
    dtype: str = "float32"
    scale: str = "0-255"
    normalize: str = "none"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    clip: tuple[float, float] | None = None
    action_output: str | None = None
    clamp: tuple[float, float] | None = None
    action_names: tuple[str, ...] | None = None
    feature_output: str | None = "auto"
    preset_name: str | None = None

    def __post_init__(self) -> None:
        checked = _normalize_fields(self._fields(), "PolicySpec")
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    def _fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @staticmethod
    def yaml_keys() -> list[str]:
        """The keys a spec YAML may hold, in order.

        Returns:
            ``preset`` followed by every field name except ``preset_name``.
        """
        fields = [f.name for f in dataclasses.fields(PolicySpec) if f.name != "preset_name"]
        return ["preset", *fields]

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> PolicySpec:
        """Build the spec of a named preset, with field overrides.

        Args:
            name: one of :data:`PRESETS` (``rl_games``, ``rsl_rl``, ``isaaclab_jit``).
            **overrides: field values that replace the preset's (Python field names).

        Returns:
            The spec, with ``preset_name`` set to ``name``.
        """
        if name not in PRESETS:
            raise PolicySpecError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise PolicySpecError(
                f"preset {name!r}: unknown field(s) {', '.join(unknown)}; "
                f"valid fields: {', '.join(sorted(valid))}"
            )
        return cls(**{**PRESETS[name], "preset_name": name, **overrides})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "policy spec") -> PolicySpec:
        """Build a spec from a mapping of YAML keys (``preset`` first, then overrides).

        Args:
            d: the mapping, e.g. a parsed YAML file.
            where: names the source in error messages (a file path, a config key).

        Returns:
            The validated spec.

        Raises:
            PolicySpecError: an unknown key (the message lists the valid keys) or a bad value (the
                message names the key and the valid choices).
        """
        if not isinstance(d, Mapping):
            raise PolicySpecError(
                f"{where}: a policy spec must be a mapping; got {type(d).__name__}"
            )
        keys = cls.yaml_keys()
        unknown = [str(k) for k in d if k not in keys]
        if unknown:
            raise PolicySpecError(
                f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                f"valid keys: {', '.join(keys)}"
            )
        values = {f.name: f.default for f in dataclasses.fields(cls)}
        preset = d.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                raise PolicySpecError(
                    f"{where}: preset must be one of {', '.join(PRESETS)}; got {preset!r}"
                )
            values.update(PRESETS[preset])
        values["preset_name"] = preset
        values.update({k: v for k, v in d.items() if k != "preset"})
        return cls(**_normalize_fields(values, where))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> PolicySpec:
        """Read a spec YAML file.

        Args:
            path: the YAML file.

        Returns:
            The validated spec; errors name the file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"policy spec file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise PolicySpecError(f"{path}: not valid YAML: {e}") from None
        if data is None:
            raise PolicySpecError(f"{path}: the file is empty; expected a policy spec mapping")
        return cls.from_dict(data, where=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready mapping (tuples become lists); ``from_dict(to_dict())`` gives it back.

        Returns:
            The mapping, keyed by :meth:`yaml_keys`.
        """
        out: dict[str, Any] = {"preset": self.preset_name}
        for key, value in self._fields().items():
            if key != "preset_name":
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the spec as YAML, atomically.

        Args:
            path: destination file.

        Returns:
            The path written.
        """
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        return atomic_write_text(path, text)

    def preprocess_ops(self) -> tuple[PreOp, ...]:
        """The input preprocessing as one declarative list, read by the numpy, torch and ONNX backends.

        Order: resize (when the spec fixes a size), channel order, value scale, normalisation,
        clip, uint8 rounding (``dtype: uint8``), layout.

        Returns:
            The :class:`PreOp` steps, from RGB float 0–255 pixels to the model's input.
        """
        ops: list[PreOp] = []
        if self.height is not None and self.width is not None:
            ops.append(PreOp("resize", (self.height, self.width)))
        if self.channel_order == "BGR":
            ops.append(PreOp("flip_channels"))
        if self.scale == "0-1":
            ops.append(PreOp("div", 255.0))
        if self.normalize == "mean_std":
            assert self.mean is not None and self.std is not None  # guaranteed by validation
            ops += [PreOp("sub", self.mean), PreOp("div", self.std)]
        elif self.normalize == "per_image_mean":
            ops.append(PreOp("sub_image_mean"))
        if self.clip is not None:
            ops.append(PreOp("clip", self.clip))
        if self.dtype == "uint8":
            ops.append(PreOp("to_uint8"))
        ops.append(PreOp("layout", self.layout))
        return tuple(ops)

    def replace(self, **changes: Any) -> PolicySpec:
        """A copy with some fields changed (validated again).

        Args:
            **changes: field values (Python field names).

        Returns:
            The new spec.
        """
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------


def _resize_bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (N, H, W, C), half-pixel centres, no antialiasing. Returns float32."""
    n, h, w, c = x.shape

    def axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5, 0, src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, wy = axis(h, height)
    x0, x1, wx = axis(w, width)
    xf = x.astype(np.float32, copy=False)
    rows = xf[:, y0] * (1 - wy)[None, :, None, None] + xf[:, y1] * wy[None, :, None, None]
    out = rows[:, :, x0] * (1 - wx)[None, None, :, None] + rows[:, :, x1] * wx[None, None, :, None]
    return out


def _apply_numpy(op: PreOp, x: np.ndarray) -> np.ndarray:
    """One :class:`PreOp` on (N, H, W, C) pixels (the layout op on the way out)."""
    if op.kind == "resize":
        h, w = op.value
        return _resize_bilinear(x, h, w) if x.shape[1:3] != (h, w) else x
    if op.kind == "flip_channels":
        return x[..., ::-1]
    if op.kind == "div":
        return x / np.asarray(op.value, np.float32)
    if op.kind == "sub":
        return x - np.asarray(op.value, np.float32)
    if op.kind == "sub_image_mean":
        return x - x.mean(axis=(1, 2), keepdims=True, dtype=np.float32)
    if op.kind == "clip":
        return np.clip(x, op.value[0], op.value[1])
    if op.kind == "to_uint8":
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    assert op.kind == "layout"
    return x.transpose(0, 3, 1, 2) if op.value == "NCHW" else x


def preprocess(frames: np.ndarray, spec: PolicySpec) -> np.ndarray:
    """Turn RGB uint8 frames into the model's input tensor as the spec describes.

    Interprets :meth:`PolicySpec.preprocess_ops` in numpy (the torch and ONNX backends read the
    same list): resize to the spec's height × width if they differ (bilinear, no antialiasing — a
    stand-in: give the policy frames at its own size upstream, e.g. from the camera correction,
    rather than relying on this), channel order, value scale, normalisation, clip, dtype, layout.

    Args:
        frames: RGB uint8 frames.
        spec: the policy's input contract.

    Returns:
        The model input, ``spec.dtype``, contiguous.

    Shape:
        - frames: :math:`(N, H, W, 3)` or :math:`(H, W, 3)` (treated as N = 1).
        - output: :math:`(N, H', W', 3)` for NHWC or :math:`(N, 3, H', W')` for NCHW.

    Example:
        >>> x = preprocess(np.zeros((2, 8, 8, 3), np.uint8), PolicySpec.preset("rsl_rl"))
        >>> x.shape, x.dtype
        ((2, 3, 8, 8), dtype('float32'))
    """
    x = np.asarray(frames)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(
            "frames must be RGB uint8 with shape (N, H, W, 3) or (H, W, 3); "
            f"got shape {tuple(np.shape(frames))} dtype {np.asarray(frames).dtype}"
        )
    if x.shape[0] == 0:
        raise ValueError("frames is empty (N = 0)")
    xf = x.astype(np.float32)
    for op in spec.preprocess_ops():
        xf = _apply_numpy(op, xf)
    return np.ascontiguousarray(xf)


# --------------------------------------------------------------------------------------------------
# Policy base
# --------------------------------------------------------------------------------------------------


@dataclass
class PolicyOutput:
    """What one policy call returns.

    Args:
        action: the action, clamped to ``spec.clamp``.
        mu: the action output before clamping.
        features: penultimate activations flattened per frame, or ``None`` when not asked for or
            not available.
        outputs: every raw model output by name.

    Shape:
        - action, mu: :math:`(N, A)`.
        - features: :math:`(N, F)`.
    """

    action: np.ndarray
    mu: np.ndarray
    features: np.ndarray | None
    outputs: dict[str, np.ndarray]


class Policy:
    """A frozen policy: RGB uint8 frames in, actions out, through its :class:`PolicySpec`.

    Subclasses implement :meth:`_infer` on an already preprocessed batch. Calls are split into
    batches of ``batch_size``; a model whose batch dimension is fixed (e.g. to 1) is fed in chunks
    of that size, padding the last one, so callers never see the difference.

    Args:
        path: the model file.
        spec: the spec resolved against the model (height/width filled in where the model fixes
            them).
        batch_size: frames per model call for dynamic-batch models.
        fixed_batch: the model's fixed batch size, or ``None`` if dynamic.
    """

    def __init__(
        self,
        path: Path,
        spec: PolicySpec,
        *,
        batch_size: int = 32,
        fixed_batch: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.path = path
        self.spec = spec
        self.batch_size = batch_size
        self.fixed_batch = fixed_batch

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The model's input (H, W), or ``None`` when the model accepts any size."""
        if self.spec.height is None or self.spec.width is None:
            return None
        return (self.spec.height, self.spec.width)

    @property
    def action_names(self) -> tuple[str, ...] | None:
        """A name per action dimension, from the spec."""
        return self.spec.action_names

    def _infer(
        self, x: np.ndarray, features: bool
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Run the model on a preprocessed batch; return (outputs by name, features or None)."""
        raise NotImplementedError

    def _action_key(self, outputs: Mapping[str, np.ndarray]) -> str:
        key = self.spec.action_output
        if key is None:
            return next(iter(outputs))
        if key not in outputs:
            raise SpecMismatchError(
                f"{self.path}: action_output {key!r} is not among the model's outputs "
                f"({', '.join(outputs)}); set action_output to one of them"
            )
        return key

    def run(
        self, frames: np.ndarray, features: bool = False, *, batch_size: int | None = None
    ) -> PolicyOutput:
        """Run the policy on frames and return the action with everything around it.

        Args:
            frames: RGB uint8 frames.
            features: also return the penultimate activations.
            batch_size: frames per model call; defaults to the policy's ``batch_size``.

        Returns:
            A :class:`PolicyOutput`.

        Shape:
            - frames: :math:`(N, H, W, 3)` or :math:`(H, W, 3)` (N = 1).
            - action, mu: :math:`(N, A)`; features: :math:`(N, F)`.
        """
        x = preprocess(frames, self.spec)
        n = x.shape[0]
        chunk = self.fixed_batch or batch_size or self.batch_size
        outs: list[dict[str, np.ndarray]] = []
        feats: list[np.ndarray] = []
        for start in range(0, n, chunk):
            xb = x[start : start + chunk]
            m = xb.shape[0]
            if self.fixed_batch is not None and m < self.fixed_batch:
                # Pad with copies of the last frame; the padded rows are dropped below.
                pad = np.repeat(xb[-1:], self.fixed_batch - m, axis=0)
                xb = np.concatenate([xb, pad])
            o, f = self._infer(xb, features)
            outs.append({k: np.asarray(v)[:m] for k, v in o.items()})
            if f is not None:
                feats.append(np.asarray(f)[:m].reshape(m, -1))
        outputs = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        key = self._action_key(outputs)
        mu = outputs[key].reshape(n, -1).astype(np.float32, copy=False)
        action = mu if self.spec.clamp is None else np.clip(mu, *self.spec.clamp)
        return PolicyOutput(
            action=np.asarray(action, np.float32),
            mu=mu,
            features=np.concatenate(feats).astype(np.float32, copy=False) if feats else None,
            outputs=outputs,
        )

    def act(self, frames: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """The clamped action for each frame.

        Args:
            frames: RGB uint8 frames.
            batch_size: frames per model call.

        Returns:
            Actions, float32.

        Shape:
            - frames: :math:`(N, H, W, 3)` or :math:`(H, W, 3)` (N = 1).
            - output: :math:`(N, A)`.
        """
        return self.run(frames, batch_size=batch_size).action

    __call__ = act

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, preset={self.spec.preset_name!r})"


# --------------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------------

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}


def _fmt_shape(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _fmt_io(items: Sequence[Any]) -> str:
    return "; ".join(
        f"{i.name!r} {_fmt_shape(i.shape)} {_ORT_DTYPES.get(i.type, i.type)}" for i in items
    )


def _static(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def _check_onnx_contract(
    inputs: Sequence[Any], outputs: Sequence[Any], spec: PolicySpec, where: str
) -> tuple[PolicySpec, int | None]:
    """Check the spec against the model's declared inputs/outputs (objects with name/shape/type).

    Returns:
        The spec with height/width taken from the model where the spec left them empty, and the
        model's fixed batch size (``None`` if dynamic).
    """
    by_name = {i.name: i for i in inputs}
    if spec.input_name not in by_name:
        hint = f" Set input_name: {inputs[0].name}" if len(inputs) == 1 else ""
        raise SpecMismatchError(
            f"{where}: spec input_name {spec.input_name!r} is not an input of the model; the "
            f"model's inputs are: {_fmt_io(inputs)}.{hint}"
        )
    extra = [i for i in inputs if i.name != spec.input_name]
    if extra:
        raise SpecMismatchError(
            f"{where}: the model has inputs the spec does not feed: {_fmt_io(extra)}; only "
            "single-image-input policies are supported"
        )
    inp = by_name[spec.input_name]
    shape = list(inp.shape)
    desc = f"{where}: model input {inp.name!r} has shape {_fmt_shape(shape)}"
    if len(shape) != 4:
        raise SpecMismatchError(f"{desc}; a camera policy needs a rank-4 image input (N, H, W, C)")
    c_axis, other_axis, other_layout = (3, 1, "NCHW") if spec.layout == "NHWC" else (1, 3, "NHWC")
    c = _static(shape[c_axis])
    if c is not None and c != 3:
        if _static(shape[other_axis]) == 3:
            raise SpecMismatchError(
                f"{desc}, which looks {other_layout}; set layout: {other_layout}"
            )
        raise SpecMismatchError(
            f"{desc}: {c} channels on the {spec.layout} channel axis; only 3-channel (RGB/BGR) "
            "inputs are supported"
        )
    h_axis, w_axis = (1, 2) if spec.layout == "NHWC" else (2, 3)
    mh, mw = _static(shape[h_axis]), _static(shape[w_axis])
    height, width = spec.height, spec.width
    if height is not None and width is not None:
        if (mh is not None and mh != height) or (mw is not None and mw != width):
            raise SpecMismatchError(
                f"{desc} (H×W {mh}×{mw}) but the spec says height: {height}, width: {width}; "
                f"set height: {mh} and width: {mw}, or leave them empty to take them from the model"
            )
    elif mh is not None and mw is not None:
        height, width = mh, mw
    mdtype = _ORT_DTYPES.get(inp.type)
    if mdtype != spec.dtype:
        fix = f"; set dtype: {mdtype}" if mdtype else " (unsupported input type)"
        raise SpecMismatchError(
            f"{desc} and type {inp.type} but the spec says dtype: {spec.dtype}{fix}"
        )
    out_names = [o.name for o in outputs]
    if spec.action_output is not None and spec.action_output not in out_names:
        hint = f" Set action_output: {out_names[0]}" if len(out_names) == 1 else ""
        raise SpecMismatchError(
            f"{where}: spec action_output {spec.action_output!r} is not an output of the model; "
            f"the model's outputs are: {_fmt_io(outputs)}.{hint}"
        )
    resolved = spec if (height, width) == (spec.height, spec.width) else spec.replace(
        height=height, width=width
    )
    return resolved, _static(shape[0])


# Ops that sit between a policy head's Gemm/MatMul and the action output without mixing in
# other activations: bias adds, scaling, squashing and reshapes.
_PASS_THROUGH_OPS = frozenset({
    "Identity", "Add", "Sub", "Mul", "Div", "Tanh", "Sigmoid", "Clip", "Reshape", "Squeeze",
    "Unsqueeze", "Flatten", "Cast",
})


def _find_penultimate(graph: Any, output_name: str) -> str:
    """Name of the tensor feeding the last Gemm/MatMul that produces ``output_name``."""
    producers = {o: n for n in graph.node for o in n.output}
    consts = {i.name for i in graph.initializer}
    consts |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    name, path = output_name, []
    for _ in range(64):
        node = producers.get(name)
        if node is None:
            break
        path.append(node.op_type)
        data = [i for i in node.input if i and i not in consts]
        if node.op_type in ("Gemm", "MatMul") and data:
            return str(data[0])
        if node.op_type not in _PASS_THROUGH_OPS or len(data) != 1:
            break
        name = data[0]
    tail = [o for n in graph.node[-12:] for o in n.output]
    raise SpecMismatchError(
        f"cannot find the penultimate activations for output {output_name!r} automatically "
        f"(walked back through {' <- '.join(path) or 'nothing'} without reaching a Gemm/MatMul); "
        f"set feature_output to a tensor name, e.g. one of: {', '.join(tail)}"
    )


def _onnx_with_feature_output(
    path: Path, feature_output: str, action_output: str
) -> tuple[bytes, str]:
    """The model at ``path`` with the feature tensor added as a graph output, serialised."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    name = _find_penultimate(graph, action_output) if feature_output == "auto" else feature_output
    produced = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    if name not in produced:
        tail = [o for n in graph.node[-12:] for o in n.output]
        raise SpecMismatchError(
            f"{path}: feature_output {name!r} is not a tensor of the model; tensors near the end "
            f"of the graph: {', '.join(tail)}"
        )
    if name not in {o.name for o in graph.output}:
        inferred = onnx.shape_inference.infer_shapes(model)
        infos = {vi.name: vi for vi in inferred.graph.value_info}
        vi = infos.get(name) or onnx.helper.make_tensor_value_info(
            name, onnx.TensorProto.FLOAT, None
        )
        graph.output.append(vi)
    return model.SerializeToString(), name


class OnnxPolicy(Policy):
    """A frozen ONNX policy run with onnxruntime (no torch needed).

    The spec is checked against the model at load time: the input name exists, its rank, layout,
    channel count, size and dtype agree, and the action output exists; a mismatch raises
    :class:`SpecMismatchError` saying what to set. Features are read by adding the spec's
    ``feature_output`` tensor (``auto``: the input of the last Gemm/MatMul producing the action)
    as an extra graph output in memory; the file is never modified.

    Args:
        path: the ``.onnx`` file.
        spec: its input contract.
        providers: onnxruntime execution providers; default CUDA (if available) then CPU.
        features: prepare the feature output at load (otherwise on the first call that asks).
        batch_size: frames per model call.
        session_options: an ``onnxruntime.SessionOptions``.

    Example:
        >>> policy = OnnxPolicy("policy.onnx", PolicySpec.preset("rl_games"))  # doctest: +SKIP
        >>> policy.act(frames)  # (N, 2) wheel commands in [-1, 1]  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        spec: PolicySpec,
        *,
        providers: Sequence[str] | None = None,
        features: bool = False,
        batch_size: int = 32,
        session_options: Any = None,
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"policy model not found: {path}")
        if providers is None:
            available = ort.get_available_providers()
            preferred = ("CUDAExecutionProvider", "CPUExecutionProvider")
            providers = [p for p in preferred if p in available]
        self._providers = list(providers)
        self._session_options = session_options
        try:
            session = ort.InferenceSession(str(path), session_options, providers=self._providers)
        except Exception as e:
            raise ValueError(f"cannot load {path} as an ONNX model: {e}") from e
        resolved, fixed = _check_onnx_contract(
            session.get_inputs(), session.get_outputs(), spec, str(path)
        )
        super().__init__(path, resolved, batch_size=batch_size, fixed_batch=fixed)
        self._session = session
        self._output_names = [o.name for o in session.get_outputs()]
        self._feature_name: str | None = None
        if features:
            self._enable_features()

    def _enable_features(self) -> None:
        if self._feature_name is not None:
            return
        if self.spec.feature_output is None:
            raise PolicySpecError(
                f"{self.path}: features were asked for but the spec's feature_output is null; set "
                "it to 'auto' or to the name of a tensor in the model"
            )
        import onnxruntime as ort

        action = self.spec.action_output or self._output_names[0]
        data, name = _onnx_with_feature_output(self.path, self.spec.feature_output, action)
        self._session = ort.InferenceSession(data, self._session_options, providers=self._providers)
        self._feature_name = name

    @property
    def feature_name(self) -> str | None:
        """The ONNX tensor read as features, once features are enabled."""
        return self._feature_name

    def _infer(
        self, x: np.ndarray, features: bool
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        if features:
            self._enable_features()
        names = list(self._output_names)
        if features:
            assert self._feature_name is not None
            names.append(self._feature_name)
        values = self._session.run(names, {self.spec.input_name: x})
        outputs = dict(zip(self._output_names, values[: len(self._output_names)], strict=True))
        return outputs, (values[-1] if features else None)


# --------------------------------------------------------------------------------------------------
# TorchScript
# --------------------------------------------------------------------------------------------------


class TorchScriptPolicy(Policy):
    """A frozen TorchScript policy (e.g. Isaac Lab's exported ``policy.pt``); needs torch.

    TorchScript carries no input shape, so when the spec gives height and width the module is run
    once on a zero batch at load time: a layout or size that does not fit fails there, with the
    spec in the message. Outputs are named by the module's return: a tensor is named
    ``action_output`` (or ``action``), a dict keeps its keys, a tuple gives ``output0``,
    ``output1``, ... Features come from a scripted method named by ``feature_output`` (``auto``:
    ``features``, e.g. an ``@torch.jit.export def features(self, x)``); without one they are
    ``None`` and a warning says why.

    Args:
        path: the TorchScript file.
        spec: its input contract.
        device: torch device to run on.
        features: check at load that features are available (warns if not).
        batch_size: frames per model call.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        spec: PolicySpec,
        *,
        device: str = "cpu",
        features: bool = False,
        batch_size: int = 32,
    ) -> None:
        import torch

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"policy model not found: {path}")
        try:
            with warnings.catch_warnings():
                # torch >= 2.10 marks TorchScript deprecated; loading an existing export is
                # exactly what the user needs, so the notice is noise here.
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location=device)
        except Exception as e:
            raise ValueError(
                f"cannot load {path} as a TorchScript module ({str(e).splitlines()[0]}); export "
                "it with torch.jit.script or torch.jit.trace, or use an ONNX export"
            ) from e
        module.eval()
        super().__init__(path, spec, batch_size=batch_size, fixed_batch=None)
        self._torch = torch
        self._module = module
        self._device = torch.device(device)
        name = spec.feature_output
        if name == "auto":
            name = "features"
        self._feature_method = name if name is not None and hasattr(module, name) else None
        if spec.feature_output is None:
            self.features_unavailable = "the spec's feature_output is null"
        elif self._feature_method is None:
            self.features_unavailable = (
                f"the TorchScript module has no method {name!r} (export one with "
                "@torch.jit.export, or set feature_output to the name of one)"
            )
        else:
            self.features_unavailable = ""
        self._warned = False
        if features and self.features_unavailable:
            self._warn_features()
        if self.input_size is not None:
            self._probe()

    def _warn_features(self) -> None:
        if not self._warned:
            log.warning("%s: features unavailable: %s", self.path, self.features_unavailable)
            self._warned = True

    def _probe(self) -> None:
        size = self.input_size
        assert size is not None
        probe = preprocess(np.zeros((1, size[0], size[1], 3), np.uint8), self.spec)
        try:
            outputs, _ = self._infer(probe, False)
            self._action_key(outputs)
        except SpecMismatchError:
            raise
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SpecMismatchError(
                f"{self.path}: the module fails on an input built from the spec (shape "
                f"{list(probe.shape)}, layout {self.spec.layout}, dtype {self.spec.dtype}): "
                f"{first}. Check layout, height and width in the spec"
            ) from e

    def _infer(
        self, x: np.ndarray, features: bool
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self._device)
            ret = self._module(t)
            outputs: dict[str, np.ndarray] = {}
            if isinstance(ret, torch.Tensor):
                outputs[self.spec.action_output or "action"] = ret.cpu().numpy()
            elif isinstance(ret, dict):
                outputs = {
                    str(k): v.cpu().numpy()
                    for k, v in ret.items()
                    if isinstance(v, torch.Tensor)
                }
            elif isinstance(ret, (tuple, list)):
                outputs = {
                    f"output{i}": v.cpu().numpy()
                    for i, v in enumerate(ret)
                    if isinstance(v, torch.Tensor)
                }
            if not outputs:
                raise SpecMismatchError(
                    f"{self.path}: the module returned {type(ret).__name__}, not a tensor, a "
                    "tuple of tensors or a dict of tensors"
                )
            feats = None
            if features:
                if self._feature_method is None:
                    self._warn_features()
                else:
                    feats = getattr(self._module, self._feature_method)(t).cpu().numpy()
        return outputs, feats


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _resolve_spec(spec: PolicySpec | str | os.PathLike[str] | None, model: Path) -> PolicySpec:
    if isinstance(spec, PolicySpec):
        return spec
    if spec is None:
        candidate = model.parent / SPEC_FILENAME
        if candidate.is_file():
            return PolicySpec.from_yaml(candidate)
        raise PolicySpecError(
            f"no spec given for {model} and no {SPEC_FILENAME} next to it; give a preset "
            f"({', '.join(PRESETS)}) or a spec YAML (training and evaluation: policy.spec=, the "
            "command lines: --spec)"
        )
    if isinstance(spec, str) and spec in PRESETS:
        return PolicySpec.preset(spec)
    if Path(spec).is_file():
        return PolicySpec.from_yaml(spec)
    raise PolicySpecError(
        f"spec {str(spec)!r} is neither a preset ({', '.join(PRESETS)}) nor an existing YAML file"
    )


def load_policy(
    path: str | os.PathLike[str],
    spec: PolicySpec | str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Policy:
    """Load a frozen policy with its input contract.

    Args:
        path: the model file (``.onnx``, or TorchScript ``.pt`` / ``.pth`` / ``.jit`` / ``.ts``).
        spec: a :class:`PolicySpec`, a preset name, a spec YAML path, or ``None`` to read the
            ``policy_spec.yaml`` next to the model.
        **kwargs: passed to :class:`OnnxPolicy` or :class:`TorchScriptPolicy` (``features``,
            ``batch_size``, ``providers`` / ``device``).

    Returns:
        The policy, its spec checked against the model.

    Example:
        >>> policy = load_policy("outputs/policy/policy.onnx")  # doctest: +SKIP
        >>> policy.act(frames).shape  # doctest: +SKIP
        (8, 2)
    """
    model = Path(path)
    if not model.is_file():
        raise FileNotFoundError(f"policy model not found: {model}")
    resolved = _resolve_spec(spec, model)
    fmt = resolved.format
    if fmt == "auto":
        suffix = model.suffix.lower()
        if suffix == ".onnx":
            fmt = "onnx"
        elif suffix in _TORCHSCRIPT_SUFFIXES:
            fmt = "torchscript"
        else:
            raise PolicySpecError(
                f"cannot tell the format of {model} from its suffix {suffix!r}; set format: onnx "
                "or format: torchscript in the spec"
            )
    if fmt == "onnx":
        return OnnxPolicy(model, resolved, **kwargs)
    return TorchScriptPolicy(model, resolved, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m translate.policy check MODEL --sim DIR [--manifest FILE]`` (see :mod:`translate.policy_check`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "check":
        print("usage: python -m translate.policy check MODEL --sim DIR [--manifest FILE] [--spec SPEC]",
              file=sys.stderr)
        return 2
    from translate.policy_check import main as check_main

    return check_main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
