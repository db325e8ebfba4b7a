"""Report writing: metrics.json, report.md, a self-contained report.html, figures, terminal table."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from translate.eval_schema import SCHEMA_VERSION
from translate.evaluate import EvalResult
from translate.report import (
    FIGURES,
    figure_pngs,
    format_metric,
    print_tables,
    render_markdown,
    table_rows,
    write_report,
)

STAGES = [("raw", "raw", "raw real"), ("corrected", "corrected", "lens-corrected real"),
          ("translated:cut", "translated", "translated (cut)"), ("sim", "sim", "sim (oracle)")]


def _m(value: float | None, ci: list[float] | None = None, reason: str = "") -> dict:
    if value is None:
        return {"available": False, "value": None, "reason": reason or "not computed"}
    return {"available": True, "value": value, **({"ci": ci} if ci else {})}


def _result(n: int = 12, with_reference: bool = True) -> EvalResult:
    rng = np.random.default_rng(0)
    ref = rng.uniform(-1, 1, (n, 2)) if with_reference else None
    noise = {"raw": 0.5, "corrected": 0.4, "translated:cut": 0.15, "sim": 0.05}
    actions = {k: np.clip((ref if ref is not None else 0) + rng.normal(0, s, (n, 2)), -1, 1)
               for k, s in noise.items()}
    errors = {k: np.abs(a - ref).mean(1) for k, a in actions.items()} if ref is not None else {}
    stages = []
    for name, kind, label in STAGES:
        e = errors.get(name)
        is_ref = kind == "sim"
        metrics = {
            "action_mae": _m(float(e.mean()), [float(e.mean()) * 0.8, float(e.mean()) * 1.2])
            if e is not None else _m(None, reason="no reference actions"),
            "turn_agreement": _m(0.75, [0.5, 0.9]) if e is not None else _m(None),
            "gap_closed": _m({"raw": 0.0, "corrected": 0.2, "translated:cut": 0.8,
                              "sim": 1.0}[name], [0.1, 0.9]) if e is not None else _m(None),
            "psnr": _m(None, reason="reference stage") if is_ref else _m(21.5),
            "ssim": _m(None, reason="reference stage") if is_ref else _m(0.61),
            "lpips": _m(None, reason="reference stage") if is_ref else _m(
                None, reason="AlexNet backbone weights not in the local torch cache"),
            "frechet_distance": _m(None, reason="reference stage") if is_ref else _m(12.3),
            "kid": _m(None, reason="reference stage") if is_ref else _m(0.01),
            "action_energy_distance": _m(None, reason="reference stage") if is_ref else _m(0.2),
            "action_sliced_wasserstein": _m(None, reason="reference stage") if is_ref else _m(
                float("inf")),  # must come out as null in JSON, not Infinity
        }
        stages.append({"name": name, "kind": kind, "label": label, "translator": None,
                       "n_frames": n, "frame_size": [32, 32], "reference_actions": "manifest",
                       "notes": ["32×32 frames resized to 48×48 for the policy"] if kind == "raw"
                       else [], "metrics": metrics})
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "data": {"kind": "paired", "path": "/data/test", "n_listed": n, "n_frames": n,
                 "real_size": [32, 32], "sim_size": [32, 32],
                 "reference_actions": "manifest" if with_reference else None,
                 "skipped": [{"path": "/data/test/real/bad.jpg", "reason": "truncated"}],
                 "problems": ["000099: missing sim partner"], "camera": None},
        "policy": {"path": "/p/policy.onnx", "input_size": [48, 48],
                   "action_names": ["left", "right"],
                   "spec": {"layout": "NHWC", "channel_order": "RGB", "scale": "0-255"},
                   "features": "penultimate activations"},
        "translators": [{"name": "cut", "kind": "onnx-core"}],
        "stages": stages,
        "warnings": [{"stage": "translated:cut", "kind": "channel_order",
                      "message": "channel order looks swapped (BGR vs RGB)"}],
        "timing": {"seconds": 1.5, "frames_per_second": n / 1.5},
        "thresholds": {"checks": [{"message": "translated:cut: turn_agreement = 0.75 < 0.8",
                                   "passed": False}], "passed": False},
    }
    frames = {name: rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8) for name, _, _ in STAGES}
    samples = {"stems": ["000000", "000004", "000008"], "frames": frames,
               "actions": {k: a[:3] for k, a in actions.items()},
               "reference": None if ref is None else ref[:3],
               "stages": [s[0] for s in STAGES]}
    worst = {} if ref is None else {"translated:cut": {
        "stems": ["000001", "000002"], "errors": np.array([0.5, 0.4]),
        "input": frames["corrected"][:2], "output": frames["translated:cut"][:2],
        "sim": frames["sim"][:2], "pred": actions["translated:cut"][:2], "ref": ref[:2]}}
    return EvalResult(metrics=metrics, stems=[f"{i:06d}" for i in range(n)], actions=actions,
                      reference=ref, errors=errors, samples=samples, worst=worst)


def test_format_metric() -> None:
    assert format_metric(_m(0.123456, [0.1, 0.15]), "err") == "0.123 [0.100, 0.150]"
    assert format_metric(_m(0.8, [0.7, 0.9]), "pct") == "80.0 % [70.0, 90.0]"
    assert format_metric(_m(0.8, [0.7, 0.9]), "pct", ci=False) == "80.0 %"
    assert format_metric(_m(None, reason="reference stage")) == "ref"
    assert format_metric(_m(None, reason="no weights")) == "—"
    assert format_metric(None) == "—"


def test_table_rows_one_row_per_stage() -> None:
    header, rows = table_rows(_result().metrics, "actions")
    assert header[:2] == ["stage", "frames"] and len(rows) == 4
    assert rows[2][0] == "translated (cut)" and rows[2][4].startswith("80.0 %")
    header, rows = table_rows(_result().metrics, "images")
    assert "LPIPS" in header and rows[3][2] == "ref"


def test_write_report_files(tmp_path: Path) -> None:
    res = _result()
    files = write_report(res, tmp_path, config={"translator": "cut.onnx", "bootstrap": {"n": 10}})
    for key in ("metrics", "markdown", "html", "per_frame"):
        assert files[key].is_file(), key
    assert {f"figure/{k}" for k in FIGURES} <= set(files)
    for name in FIGURES:
        with Image.open(tmp_path / "figures" / f"{name}.png") as img:
            assert img.format == "PNG" and img.width > 200
        assert files[f"figure/{name}"].stat().st_size < 2_000_000
    m = json.loads((tmp_path / "metrics.json").read_text())  # strict JSON: no NaN / Infinity
    assert m["schema_version"] == 1 and m["config"]["translator"] == "cut.onnx"
    assert m["files"]["html"] == "report.html"
    swd = m["stages"][0]["metrics"]["action_sliced_wasserstein"]
    assert swd["value"] is None
    assert not re.search(r"\bNaN\b|Infinity", (tmp_path / "metrics.json").read_text())
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert "src='figures" not in html and "http" not in html  # self-contained
    assert "channel order looks swapped" in html and "FAIL" in html
    assert "bad.jpg" in html and "AlexNet backbone weights" in html
    md = (tmp_path / "report.md").read_text()
    assert "![strips](figures/strips.png)" in md and "| translated (cut) |" in md
    rows = list(csv.reader((tmp_path / "per_frame.csv").open()))
    assert rows[0][:3] == ["stem", "ref_left", "ref_right"] and len(rows) == 13
    assert "translated:cut/error" in rows[0]
    assert not list(tmp_path.rglob("*.tmp"))


def test_figures_without_reference_actions() -> None:
    pngs = figure_pngs(_result(with_reference=False))
    assert set(pngs) == {"strips"}  # no errors to plot, no worst frames


def test_markdown_without_figures_and_notes() -> None:
    md = render_markdown(_result().metrics, {})
    assert "## Warnings" in md and "**FAIL**" in md
    assert "resized to 48×48" in md and "000099: missing sim partner" in md
    assert "unavailable lpips:" in md


def test_terminal_tables() -> None:
    from rich.console import Console

    console = Console(record=True, width=200)
    print_tables(_result().metrics, console)
    text = console.export_text()
    assert "translated (cut)" in text and "Policy actions vs reference" in text
    assert "warning" in text and "FAIL" in text
    assert "1 unreadable frame(s) skipped" in text and "bad.jpg" in text
    assert "000099: missing sim partner" in text


def test_headline_is_one_line_per_translator() -> None:
    from translate.report import headline

    def st(kind: str, ta: float, gap: dict | None = None, name: str | None = None) -> dict:
        m = {"turn_agreement": {"available": True, "value": ta}}
        if gap is not None:
            m["gap_closed"] = gap
        return {"kind": kind, "label": kind, "translator": name, "metrics": m}

    metrics = {"stages": [st("raw", 0.602), st("translated", 0.662, {"value": 0.302, "ci": [0.263, 0.344]}, "cut"),
                          st("sim", 0.958)]}
    assert headline(metrics) == ["gap closed 30.2 % [26.3, 34.4] · turn agreement 60.2 → 66.2 % (sim 95.8 %) — cut"]


@pytest.mark.parametrize("width", [80, 100, 200])
def test_terminal_tables_fit_the_width_or_fold(width: int) -> None:
    from rich.console import Console

    from translate.report import TABLE_WIDTH, table_rows

    metrics = _result().metrics
    for st in metrics["stages"]:  # a run name as long as the CPU demo's
        if st["kind"] == "translated":
            st["label"] = "translated (cyclegan_jetbot_synth_cpu_demo)"
    console = Console(record=True, width=width)
    print_tables(metrics, console)
    text = console.export_text()
    limit = min(width, TABLE_WIDTH)
    table_lines = [ln for ln in text.splitlines() if ln[:1] in "┏┃┡│└"]
    assert table_lines and max(len(ln) for ln in table_lines) <= limit
    for which in ("actions", "images"):
        header, rows = table_rows(metrics, which)
        assert all(h in text for h in header[2:])  # every column printed, in some fold
    assert "(cyclegan_jetbot_synth_cpu_demo)" in text and "(continued)" in text


def test_tables_printed_to_a_pipe_are_100_columns(capsys: pytest.CaptureFixture[str]) -> None:
    print_tables(_result().metrics)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln[:1] in "┏┃┡│└"]
    assert lines and max(len(ln) for ln in lines) <= 100
