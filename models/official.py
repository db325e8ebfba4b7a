"""Load checkpoints written by the official CycleGAN and CUT code into our networks."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from models.networks import NLayerDiscriminator, ResnetGenerator

__all__ = [
    "CheckpointMismatchError",
    "infer_discriminator_config",
    "infer_generator_config",
    "load_official_checkpoint",
    "strip_module_prefix",
]

_MODELS = ("cyclegan", "cut")


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the requested network; the message says which option to change."""


def strip_module_prefix(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``module.`` prefix that ``DataParallel`` / some CPU-trained CUT files carry.

    Args:
        state_dict: a state_dict, prefixed or not.

    Returns:
        A new dict whose keys have no leading ``module.``.
    """
    return {
        (k[len("module.") :] if k.startswith("module.") else k): v for k, v in state_dict.items()
    }


def _conv_indices(sd: Mapping[str, Tensor]) -> list[int]:
    """Positions ``N`` in ``model.N`` that hold a 4-D ``weight`` directly."""
    out = []
    for key, value in sd.items():
        m = re.fullmatch(r"model\.(\d+)\.weight", key)
        if m and value.ndim == 4:
            out.append(int(m.group(1)))
    return sorted(out)


def _filt_keys(sd: Mapping[str, Tensor]) -> list[str]:
    return sorted((k for k in sd if re.fullmatch(r"model\.\d+\.filt", k)), key=_key_order)


def _key_order(key: str) -> tuple[int, str]:
    m = re.match(r"model\.(\d+)\.", key)
    return (int(m.group(1)) if m else -1, key)


def infer_generator_config(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """Infer :class:`~models.networks.ResnetGenerator` arguments from a generator state_dict.

    Works on official CycleGAN / CUT files (with or without CUT's ``model.N.filt`` buffers and
    with or without a ``module.`` prefix) and on our own generators' state_dicts. ``"reflect"``
    and ``"replicate"`` padding leave the same keys; ``"reflect"`` (the official default) is
    reported.

    Args:
        state_dict: the generator's state_dict.

    Returns:
        ``{"input_nc", "output_nc", "ngf", "n_blocks", "use_dropout", "antialias",
        "antialias_up", "padding_type", "separable"}``.

    Raises:
        ValueError: the keys are not those of a ResNet generator.
    """
    sd = strip_module_prefix(state_dict)
    first = sd.get("model.1.weight")
    if first is None or first.ndim != 4 or tuple(first.shape[2:]) != (7, 7):
        raise ValueError(
            "not a ResNet generator state_dict: expected 'model.1.weight' of shape (ngf, C, 7, 7)"
        )
    ngf, input_nc = int(first.shape[0]), int(first.shape[1])
    # the first downsampling conv sits at 4; the second at 7 (strided) or 8 (after a blur at 7)
    antialias = "model.7.filt" in sd or ("model.7.weight" not in sd and "model.8.weight" in sd)
    first_block = 12 if antialias else 10
    blocks = sorted(
        {int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    )
    n_blocks = 0
    while first_block + n_blocks in blocks:
        n_blocks += 1
    if n_blocks != len(blocks):
        raise ValueError(
            f"not a ResNet generator state_dict: residual blocks at positions {blocks}, expected "
            f"consecutive positions from {first_block}"
        )
    up = first_block + n_blocks
    antialias_up = f"model.{up}.filt" in sd or (
        f"model.{up}.weight" not in sd and f"model.{up + 1}.weight" in sd
    )
    last = up + 2 * (4 if antialias_up else 3) + 1
    last_w = sd.get(f"model.{last}.weight")
    if last_w is None or last_w.ndim != 4:
        raise ValueError(
            f"not a ResNet generator state_dict: expected the output conv at 'model.{last}.weight'"
        )
    use_dropout = False
    padding_type = "reflect"
    separable = False
    if n_blocks:
        block_keys = [k for k in sd if k.startswith(f"model.{first_block}.conv_block.")]
        separable = any(".depthwise." in k for k in block_keys)
        conv_pos = sorted({int(k.split(".")[3]) for k in block_keys if k.endswith("weight")})
        if conv_pos and conv_pos[0] == 0:
            padding_type = "zero"
        # second conv at 5 (reflect) / 3 (zero); Dropout shifts it by one
        use_dropout = bool(conv_pos) and conv_pos[-1] == (4 if padding_type == "zero" else 6)
    return {
        "input_nc": input_nc,
        "output_nc": int(last_w.shape[0]),
        "ngf": ngf,
        "n_blocks": n_blocks,
        "use_dropout": use_dropout,
        "antialias": antialias,
        "antialias_up": antialias_up,
        "padding_type": padding_type,
        "separable": separable,
    }


def infer_discriminator_config(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """Infer :class:`~models.networks.NLayerDiscriminator` arguments from a state_dict.

    Args:
        state_dict: the discriminator's state_dict (official or ours, ``module.`` prefix allowed).

    Returns:
        ``{"input_nc", "ndf", "n_layers", "antialias"}``.

    Raises:
        ValueError: the keys are not those of a PatchGAN discriminator.
    """
    sd = strip_module_prefix(state_dict)
    first = sd.get("model.0.weight")
    convs = _conv_indices(sd)
    if first is None or first.ndim != 4 or tuple(first.shape[2:]) != (4, 4) or len(convs) < 3:
        raise ValueError(
            "not a PatchGAN discriminator state_dict: expected 'model.0.weight' of shape "
            "(ndf, C, 4, 4) and at least 3 convs"
        )
    antialias = bool(_filt_keys(sd)) or "model.2.weight" not in sd
    return {
        "input_nc": int(first.shape[1]),
        "ndf": int(first.shape[0]),
        "n_layers": len(convs) - 2,
        "antialias": antialias,
    }


def _generator_hints(
    cfg: Mapping[str, Any], sd: Mapping[str, Tensor], want: dict[str, Any]
) -> list[str]:
    hints: list[str] = []
    for name, value in want.items():
        if value is None or value == cfg[name]:
            continue
        got = cfg[name]
        if name == "antialias" and got:
            filt = _filt_keys(sd)[:2]
            hints.append(
                "this is an antialiased CUT generator (blur buffers "
                f"{', '.join(filt) or 'absent, but blur-pool positions'}): use antialias=True"
            )
        elif name == "antialias":
            hints.append("this generator downsamples with strided convs: use antialias=False")
        elif name == "antialias_up":
            kind = "blur upsampling (CUT)" if got else "transposed convs"
            hints.append(f"this generator upsamples with {kind}: use antialias_up={got}")
        elif name == "ngf":
            shape = tuple(sd["model.1.weight"].shape)
            hints.append(f"model.1.weight has shape {shape}: use ngf={got}")
        elif name == "input_nc":
            shape = tuple(sd["model.1.weight"].shape)
            hints.append(f"model.1.weight has shape {shape}: use input_nc={got}")
        elif name == "n_blocks":
            hints.append(f"the checkpoint has {got} residual blocks: use n_blocks={got}")
        else:
            hints.append(f"use {name}={got!r}")
    return hints


def _discriminator_hints(
    cfg: Mapping[str, Any], sd: Mapping[str, Tensor], want: dict[str, Any]
) -> list[str]:
    hints: list[str] = []
    for name, value in want.items():
        if value is None or value == cfg[name]:
            continue
        got = cfg[name]
        if name == "antialias" and got:
            hints.append(
                "this is an antialiased CUT discriminator (blur buffers): use antialias=True"
            )
        elif name == "antialias":
            hints.append("this discriminator downsamples with strided convs: use antialias=False")
        elif name in ("ndf", "input_nc"):
            shape = tuple(sd["model.0.weight"].shape)
            hints.append(f"model.0.weight has shape {shape}: use {name}={got}")
        else:
            hints.append(f"the checkpoint has {got} strided layers: use n_layers={got}")
    return hints


def load_official_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: str = "cyclegan",
    which: str = "G",
    ngf: int | None = 64,
    n_blocks: int | None = 9,
    antialias: bool | None = None,
    antialias_up: bool | None = None,
    n_layers: int | None = 3,
    ndf: int | None = 64,
    input_nc: int | None = None,
    output_nc: int | None = None,
    use_dropout: bool | None = None,
) -> nn.Module:
    """Load an official CycleGAN / CUT ``.pth`` (e.g. ``latest_net_G_A.pth``) into our network.

    The file is read with ``torch.load(map_location="cpu", weights_only=True)``, a ``module.``
    prefix is stripped and the state_dict is loaded with ``strict=True`` (CUT's constant blur
    kernels ``model.N.filt`` are filled in if a file lacks them). Options left ``None``
    are inferred from the file (:func:`infer_generator_config`,
    :func:`infer_discriminator_config`); options given explicitly are checked against it first,
    and a mismatch raises :class:`CheckpointMismatchError` naming the option value to use.

    Args:
        path: the checkpoint file (a plain state_dict, as the official code saves).
        model: ``"cyclegan"`` or ``"cut"``: which project wrote it (used in messages; the
            architecture itself always follows the file or the options).
        which: ``"G"`` (a :class:`~models.networks.ResnetGenerator`) or ``"D"``
            (a :class:`~models.networks.NLayerDiscriminator`).
        ngf: generator width (None: infer).
        n_blocks: generator residual blocks (None: infer).
        antialias: blur-pool downsampling in G or D (None: infer).
        antialias_up: blur upsampling in G (None: infer).
        n_layers: discriminator strided layers (None: infer).
        ndf: discriminator width (None: infer).
        input_nc: input channels (None: infer).
        output_nc: generator output channels (None: infer).
        use_dropout: dropout in the generator's blocks (None: infer).

    Returns:
        The network on the CPU in eval mode, with the checkpoint's weights.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointMismatchError: the file does not fit the options, or is not a state_dict of
            the requested kind; the message names the file and what to change.

    Example:
        >>> g = load_official_checkpoint("latest_net_G.pth", model="cut")  # doctest: +SKIP
    """
    if model not in _MODELS:
        raise ValueError(f"model must be one of {_MODELS}, got {model!r}")
    if which not in ("G", "D"):
        raise ValueError(f"which must be 'G' or 'D', got {which!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled objects (refused by weights_only) or a truncated file
        import pickle

        why = ("it holds pickled Python objects besides tensors, which are not loaded (unpickling "
               "can run code)") if isinstance(exc, pickle.UnpicklingError) else (
               "it is truncated or not a torch checkpoint")
        raise CheckpointMismatchError(
            f"{path}: not a loadable state_dict: {why}; official checkpoints are plain "
            "state_dicts saved with torch.save"
        ) from exc
    if not isinstance(raw, Mapping) or not all(isinstance(v, Tensor) for v in raw.values()):
        hint = ""
        if isinstance(raw, Mapping) and "state_dict" in raw:
            hint = " (it looks like a training checkpoint with a 'state_dict' entry)"
        raise CheckpointMismatchError(
            f"{path}: expected a plain state_dict of tensors as the official code saves{hint}"
        )
    sd = strip_module_prefix(raw)
    label = f"{model} {'generator' if which == 'G' else 'discriminator'}"
    net: nn.Module
    try:
        if which == "G":
            cfg = infer_generator_config(sd)
            want = {
                "input_nc": input_nc,
                "output_nc": output_nc,
                "ngf": ngf,
                "n_blocks": n_blocks,
                "antialias": antialias,
                "antialias_up": antialias_up,
                "use_dropout": use_dropout,
            }
            hints = _generator_hints(cfg, sd, want)
            net = ResnetGenerator(**cfg)
        else:
            cfg = infer_discriminator_config(sd)
            want = {"input_nc": input_nc, "ndf": ndf, "n_layers": n_layers, "antialias": antialias}
            hints = _discriminator_hints(cfg, sd, want)
            net = NLayerDiscriminator(**cfg)
    except ValueError as exc:
        raise CheckpointMismatchError(f"{path}: cannot load as a {label}: {exc}") from exc
    if hints:
        raise CheckpointMismatchError(
            f"{path} does not match the requested {label}: " + "; ".join(hints)
        )
    # CUT's blur kernels are constants: a file saved without them still defines the network
    for key, value in net.state_dict().items():
        if key.endswith(".filt") and key not in sd:
            sd[key] = value
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise CheckpointMismatchError(
            f"{path}: the state_dict does not fit a {label} built with {cfg}: {exc}"
        ) from exc
    return net.eval()
