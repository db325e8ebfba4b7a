"""Atomic, weights-only checkpoint I/O for Lightning, ``ckpt_path=last``, and generators rebuilt from checkpoints."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback
from torch import nn

from models.networks import GENERATOR_DEFAULTS, build_generator, build_network, network_spec
from translate.fsutil import atomic_write_bytes

__all__ = [
    "CHECKSUM_KEY",
    "AtomicCheckpointIO",
    "CheckpointKindError",
    "SaveLastOnTrainEnd",
    "checkpoint_kind",
    "generator_record",
    "load_checkpoint",
    "load_lightning_generator",
    "remove_orphaned_temp_files",
    "resolve_ckpt_path",
    "tensor_checksum",
]


CHECKSUM_KEY = "tensor_checksum"


def tensor_checksum(obj: Any) -> str:
    """BLAKE2b digest of every tensor in a nested checkpoint (keys, dtypes, shapes and bytes).

    The entry :data:`CHECKSUM_KEY` itself is left out, so the digest can be stored inside.
    """
    h = hashlib.blake2b(digest_size=16)

    def walk(o: Any, key: str) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(o, Mapping):
            for k in sorted(o, key=str):
                if k != CHECKSUM_KEY:
                    walk(o[k], f"{key}/{k}")
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                walk(v, f"{key}[{i}]")

    walk(obj, "")
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True`` (no arbitrary unpickling).

    A checkpoint written by :class:`AtomicCheckpointIO` carries a checksum of its tensors, which
    is verified: flipped bytes inside the weights or optimiser states are an error, not a silent
    wrong resume.

    Raises:
        FileNotFoundError: naming the path.
        ValueError: the file is not a weights-only checkpoint (e.g. truncated or pickled objects),
            or its tensors do not match their checksum.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / unsafe files
        raise ValueError(f"cannot load checkpoint {p}: {exc}") from exc
    if isinstance(ckpt, Mapping) and CHECKSUM_KEY in ckpt and tensor_checksum(ckpt) != ckpt[CHECKSUM_KEY]:
        raise ValueError(f"checkpoint {p} is corrupted: its tensors do not match the checksum written "
                         "with them (a damaged copy or disk); use another checkpoint")
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file in the same folder, fsynced, then renamed; read weights-only.

    A run killed while saving keeps the previous complete ``last.ckpt``.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        checkpoint[CHECKSUM_KEY] = tensor_checksum(checkpoint)
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        atomic_write_bytes(path, buf.getvalue())

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location or "cpu")


def resolve_ckpt_path(ckpt_path: str | None, run_dir: str | os.PathLike[str]) -> str | None:
    """Resolve ``ckpt_path`` for ``trainer.fit``.

    Args:
        ckpt_path: None (fresh run), ``"last"`` (this run folder's ``checkpoints/last.ckpt``) or
            an explicit path.
        run_dir: the run folder.

    Returns:
        A path to an existing checkpoint, or None.

    Raises:
        FileNotFoundError: ``last`` was asked for but the run folder has no ``last.ckpt``, or an
            explicit path does not exist; the message names the path looked for.
    """
    if ckpt_path in (None, "", "null", "none"):
        return None
    if ckpt_path == "last":
        p = Path(run_dir) / "checkpoints" / "last.ckpt"
        if not p.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last: no checkpoint at {p}; start a fresh run (drop ckpt_path) or "
                "set run_dir= to the folder of the run to resume"
            )
        return str(p)
    p = Path(ckpt_path)
    if not p.is_file():
        raise FileNotFoundError(f"ckpt_path: checkpoint {p} does not exist")
    return str(p)


def remove_orphaned_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files an atomic write left behind when its process was killed.

    Called at the start of a run, before anything writes there (so no live write is touched).

    Returns:
        The files removed.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink()
            removed.append(tmp)
    return removed


class SaveLastOnTrainEnd(Callback):
    """Write ``last.ckpt`` when training ends normally (max_steps / max_epochs reached).

    ``ModelCheckpoint`` saves every N steps and at epoch ends; a run that stops mid-epoch would
    otherwise lose its final steps. Not called on exceptions, so a run stopped by a non-finite
    loss keeps the last good checkpoint.
    """

    def __init__(self, dirpath: str | os.PathLike[str]) -> None:
        self.path = Path(dirpath) / "last.ckpt"

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        trainer.save_checkpoint(str(self.path))


class CheckpointKindError(ValueError):
    """The checkpoint is neither a CUT nor a CycleGAN Lightning checkpoint; the message says why."""


def checkpoint_kind(ckpt: Mapping[str, Any], path: str | os.PathLike[str] = "checkpoint") -> str:
    """Tell a CUT from a CycleGAN Lightning checkpoint.

    Looks at ``hyper_parameters["_target_"]`` when present, else at the ``state_dict`` keys
    (``netG_A.*``: CycleGAN; ``netG.*`` with ``netF.*``: CUT / FastCUT).

    Args:
        ckpt: the loaded checkpoint dict.
        path: the file, for messages.

    Returns:
        ``"cut"`` or ``"cyclegan"``.

    Raises:
        CheckpointKindError: neither; the message names the file and what was found.
    """
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        plain = isinstance(ckpt, Mapping) and any(str(k).startswith(("model.", "module.model."))
                                                  for k in ckpt)
        hint = (" It looks like an official CycleGAN/CUT generator file: use "
                "--official PATH --model cyclegan|cut.") if plain else ""
        raise CheckpointKindError(
            f"{path}: not a Lightning checkpoint (no 'state_dict' entry).{hint}"
        )
    hparams = ckpt.get("hyper_parameters") or {}
    target = str(hparams.get("_target_", "")).lower()
    if target:
        if "cyclegan" in target:
            return "cyclegan"
        if "cut" in target:
            return "cut"
        raise CheckpointKindError(
            f"{path}: hyper_parameters._target_ is {hparams['_target_']!r}; expected a "
            "CUTModule or CycleGANModule"
        )
    keys = list(ckpt["state_dict"])
    if any(k.startswith("netG_A.") for k in keys):
        return "cyclegan"
    if any(k.startswith("netG.") for k in keys) and any(k.startswith("netF.") for k in keys):
        return "cut"
    prefixes = sorted({k.split(".", 1)[0] for k in keys})[:8]
    raise CheckpointKindError(
        f"{path}: unknown checkpoint kind: the state_dict has modules {prefixes}, expected "
        "netG_A.* (CycleGAN) or netG.* and netF.* (CUT / FastCUT)"
    )


def generator_record(ckpt: Mapping[str, Any], path: str | os.PathLike[str] = "checkpoint") -> dict[str, Any]:
    """How to rebuild a checkpoint's real→sim generator: ``{"kwargs", "prefix", "name"}``.

    Checkpoints written since the generator record exists carry it (``translator_generator``);
    for older ones it is derived from ``hyper_parameters["generator"]`` and the model's defaults
    (:data:`models.networks.GENERATOR_DEFAULTS`) — the same merge the modules do.

    Raises:
        CheckpointKindError: the checkpoint is neither CUT nor CycleGAN (see :func:`checkpoint_kind`).
    """
    rec = ckpt.get("translator_generator") if isinstance(ckpt, Mapping) else None
    if isinstance(rec, Mapping) and isinstance(rec.get("kwargs"), Mapping) and rec.get("prefix"):
        out = {"kwargs": dict(rec["kwargs"]), "prefix": str(rec["prefix"]), "name": str(rec.get("name") or "")}
    else:
        kind = checkpoint_kind(ckpt, path)
        hparams = dict(ckpt.get("hyper_parameters") or {})
        out = {"kwargs": network_spec(hparams.get("generator"), GENERATOR_DEFAULTS[kind], build_generator),
               "prefix": "netG_A." if kind == "cyclegan" else "netG.", "name": str(hparams.get("name") or kind)}
    if not out["name"]:
        out["name"] = str((ckpt.get("hyper_parameters") or {}).get("name") or checkpoint_kind(ckpt, path))
    return out


def load_lightning_generator(path: str | os.PathLike[str]) -> tuple[nn.Module, str, dict[str, Any]]:
    """Rebuild the real→sim generator from a ``train_translate.py`` checkpoint (CUT / CycleGAN).

    Needs only the generator's config stored in the checkpoint (:func:`generator_record`) and
    :func:`models.networks.build_network` (the project's generator, or the ``nn.Module`` class its
    ``_target_`` names; no other callable): no training module is built, no policy or teacher is
    loaded. The weights are loaded ``strict=True`` from the weights-only ``state_dict``.

    Args:
        path: a ``.ckpt`` written by ``train_translate.py``.

    Returns:
        ``(generator, model_name, checkpoint)``: the generator on the CPU in eval mode, the
        model's ``name`` (``cut``, ``fastcut``, ``cyclegan``) and the loaded dict.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable file, unknown kind, or weights that do not fit.
    """
    ckpt = load_checkpoint(path)
    rec = generator_record(ckpt, path)
    try:
        generator = build_network(rec["kwargs"], build_generator, f"{path}: the stored generator config")
    except TypeError as exc:
        raise ValueError(f"{path}: the stored generator config {rec['kwargs']} does not build: {exc}") from exc
    prefix = rec["prefix"]
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"{path}: the {prefix}* weights do not fit the generator built from the "
            f"checkpoint's generator config: {exc}"
        ) from exc
    return generator.eval(), rec["name"], ckpt
