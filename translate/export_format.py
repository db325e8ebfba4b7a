"""The exported graphs' format: file names, the metadata schema and its one reader (numpy core; onnxruntime only to open a file)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CORE_FILE",
    "EXPORT_FORMAT_VERSION",
    "FUSED_ACTION",
    "JSON_KEYS",
    "ROBOT_FILE",
    "SUMMARY_FILE",
    "parse_metadata",
    "read_export_metadata",
]

#: Version of the metadata layout (``sim2real.format_version``); readers refuse newer ones.
EXPORT_FORMAT_VERSION = 1
CORE_FILE = "translator.onnx"
ROBOT_FILE = "translator_robot.onnx"
SUMMARY_FILE = "export.json"
#: The clamped action output a fused translator + policy graph adds.
FUSED_ACTION = "action"
#: Metadata values stored as JSON text (everything else is a plain string).
JSON_KEYS = frozenset({
    "sim2real.format_version", "input_size", "output_size", "value_range", "camera_correction",
    "correction_in_graph", "dynamic_size", "policy_spec", "outputs",
})


def parse_metadata(props: Mapping[str, str], *, where: str = "metadata") -> dict[str, Any]:
    """Check and parse a graph's metadata properties (``onnx.ModelProto.metadata_props``).

    Args:
        props: the string properties, by key.
        where: names the source in error messages (a file path).

    Returns:
        The metadata with :data:`JSON_KEYS` parsed (``input_size`` → ``[H, W]``,
        ``camera_correction`` → dict or None, ...); see :func:`translate.export.export_generator`.

    Raises:
        ValueError: not a sim2real export, a value that is not JSON, or a newer format version.

    Example:
        >>> parse_metadata({"sim2real.format_version": "1", "input_size": "[8, 8]"})["input_size"]
        [8, 8]
    """
    if "sim2real.format_version" not in props:
        raise ValueError(
            f"{where}: no 'sim2real.format_version' metadata; not exported by translate.export "
            "(re-export it with export_translator.py)"
        )
    out: dict[str, Any] = {}
    for key, value in props.items():
        if key in JSON_KEYS:
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: metadata {key!r} is not valid JSON: {value!r}") from exc
        else:
            out[key] = value
    version = out["sim2real.format_version"]
    if not isinstance(version, int) or version > EXPORT_FORMAT_VERSION:
        raise ValueError(
            f"{where}: export format version {version!r} is not supported (this reader knows up "
            f"to {EXPORT_FORMAT_VERSION}); update sim2real-translate"
        )
    return out


def read_export_metadata(path: str | os.PathLike[str], session: Any = None) -> dict[str, Any]:
    """Read the metadata of an exported translator (core, robot or fused graph).

    Rebuild the correction with ``CameraCorrection.from_dict(meta["camera_correction"])``.

    Args:
        path: a ``translator.onnx`` / ``translator_robot.onnx`` / fused graph.
        session: an open ``onnxruntime.InferenceSession`` of it (saves loading it again).

    Returns:
        As :func:`parse_metadata`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an ONNX file, not a sim2real export, or a newer format version; the
            message names the file.
    """
    p = Path(path)
    if session is None:
        if not p.is_file():
            raise FileNotFoundError(f"ONNX translator not found: {p}")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{p}: not a readable ONNX file: {exc}") from exc
    return parse_metadata(dict(session.get_modelmeta().custom_metadata_map), where=str(p))
