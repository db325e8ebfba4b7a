"""Tests for translate.eval_schema: metric and stage entries, the document's keys."""

from __future__ import annotations

import json

from translate.eval_schema import SCHEMA_VERSION, metric_entry, metrics_document, stage_entry


def test_metric_entry_available_or_with_its_reason() -> None:
    assert metric_entry(0.25, ci=(0.2, 0.3)) == {"available": True, "value": 0.25, "ci": [0.2, 0.3]}
    assert metric_entry(float("nan"), reason="x") == {"available": False, "value": None, "reason": "x"}
    assert metric_entry(1.0, std=0.1)["std"] == 0.1


def test_document_layout() -> None:
    st = stage_entry(name="raw", kind="raw", label="raw real", translator=None, n_frames=3,
                     frame_size=(8, 8), reference_actions="manifest", notes=[],
                     metrics={"psnr": metric_entry(reason="no paired sim frames")})
    doc = metrics_document(data={"n_frames": 3}, policy={}, translators=[], settings={},
                           stages=[st], warnings=[], policy_contract=None, timing={})
    assert list(doc) == ["schema_version", "created_utc", "tool", "data", "policy", "translators",
                         "settings", "stages", "warnings", "policy_contract", "timing"]
    assert doc["schema_version"] == SCHEMA_VERSION and doc["stages"][0]["frame_size"] == [8, 8]
    json.dumps(doc)
