"""Tests for workflows.export: the default export size from a checkpoint's datamodule hyper-parameters."""

from __future__ import annotations

from workflows import export as export_lib


def test_default_size_from_datamodule_hparams() -> None:
    assert export_lib._default_size({"datamodule_hyper_parameters": {"crop_size": 64}}) == 64
    assert export_lib._default_size({}) == 256
