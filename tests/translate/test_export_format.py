"""Tests for translate.export_format: the metadata schema's parser and the one reader, with their errors."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from translate.export_format import EXPORT_FORMAT_VERSION, parse_metadata, read_export_metadata


def test_parse_metadata_json_keys_and_version() -> None:
    meta = parse_metadata({"sim2real.format_version": "1", "input_size": "[8, 6]",
                           "camera_correction": "null", "model_name": "cut",
                           "policy_spec": "{\"preset\": \"rl_games\"}"})
    assert meta == {"sim2real.format_version": 1, "input_size": [8, 6], "camera_correction": None,
                    "model_name": "cut", "policy_spec": {"preset": "rl_games"}}
    with pytest.raises(ValueError, match=r"x.onnx: metadata 'input_size' is not valid JSON"):
        parse_metadata({"sim2real.format_version": "1", "input_size": "[8"}, where="x.onnx")
    with pytest.raises(ValueError, match=f"knows up to {EXPORT_FORMAT_VERSION}"):
        parse_metadata({"sim2real.format_version": str(EXPORT_FORMAT_VERSION + 1)})


def test_read_metadata_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        read_export_metadata(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not an onnx file\xff" * 3)
    with pytest.raises(ValueError, match="junk.onnx"):
        read_export_metadata(junk)
    foreign = tmp_path / "foreign.onnx"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(ValueError, match="sim2real.format_version"):
        read_export_metadata(foreign)
    model = onnx.load(str(foreign))
    model.metadata_props.add(key="sim2real.format_version", value="99")
    onnx.save(model, str(foreign))
    with pytest.raises(ValueError, match="version 99 is not supported"):
        read_export_metadata(foreign)
