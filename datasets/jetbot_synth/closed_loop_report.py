"""Closed-loop report: metrics.json, episodes.csv, top-down trajectories, GIF strips, report.html/md, a table."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datasets.jetbot_synth.closed_loop import ClosedLoopResult, StageRun
from datasets.jetbot_synth.drive import StartState
from translate.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["format_rate", "summary_rows", "write_closed_loop_report"]

_OUTCOME_COLOURS = {"success": "#2ca02c", "collision": "#ff7f0e", "timeout": "#d62728"}
_COLUMNS = ("stage", "success [95 % CI]", "gap closed [95 % CI]", "collisions",
            "time to success s", "path m", "jitter", "frame change", "flicker",
            "turn agr. on path")


def _pct(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.1f} %"


def format_rate(entry: Mapping[str, Any] | None) -> str:
    """``"41.7 % [19.3, 68.0]"`` from a ``{"value", "ci"}`` entry (``—`` when undefined).

    Args:
        entry: a rate / gap entry of the summary.

    Returns:
        The text.
    """
    if not entry or entry.get("value") is None:
        return "—"
    ci = entry.get("ci")
    s = _pct(entry["value"])
    return f"{s} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else s


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def summary_rows(metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The stage × metric table of a closed-loop summary.

    Args:
        metrics: :func:`datasets.jetbot_synth.closed_loop.summarise` output.

    Returns:
        ``(header, rows)`` of strings.
    """
    rows = []
    for m in metrics["stages"]:
        rows.append([
            m["label"], format_rate(m["success"]), format_rate(m["gap_closed"]),
            _pct(m["collision_rate"]), _num(m["time_to_success_s"], ".1f"),
            _num(m["path_length_m"], ".2f"), _num(m["action_jitter"]),
            _num(m["frame_change"], ".2f"), _num(m["flicker"], ".3f"),
            _pct(m["turn_agreement_on_path"]),
        ])
    return list(_COLUMNS), rows


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _fig_trajectories(run: StageRun, starts: Sequence[StartState]) -> bytes:
    """Top-down: every episode in its start frame (robot at the origin facing +x)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    log = run.log
    for i, st in enumerate(starts):
        c = _OUTCOME_COLOURS[log.outcome[i]]
        p = log.poses[i, : log.steps[i] + 1]
        ax.plot(p[:, 1] * -1, p[:, 0], color=c, lw=0.8, alpha=0.7)  # x forward = up, y left
        kx, ky = st.state.kong_xy
        ax.plot([-ky], [kx], marker="o", ms=3.5, color=c, mec="k", mew=0.3)
    ax.plot([0], [0], marker="^", ms=7, color="k")
    ax.set_aspect("equal")
    ax.set_xlabel("right (m)")
    ax.set_ylabel("forward (m)")
    ok = int(log.success.sum())
    ax.set_title(f"{run.spec.label}\n{ok}/{len(starts)} reached (dots: Kong)", fontsize=9)
    for o, c in _OUTCOME_COLOURS.items():
        ax.plot([], [], color=c, label=o)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return _png(fig)


def _gif(run: StageRun, every: int) -> bytes | None:
    """Camera frame | policy input, every ``every``-th step of the GIF episode."""
    if not run.gif:
        return None
    from PIL import Image

    frames = []
    for cam, inp in run.gif[:: max(1, every)]:
        h = max(cam.shape[0], inp.shape[0])
        canvas = np.zeros((h, cam.shape[1] + inp.shape[1] + 4, 3), np.uint8)
        canvas[: cam.shape[0], : cam.shape[1]] = cam
        canvas[: inp.shape[0], cam.shape[1] + 4:] = inp
        frames.append(Image.fromarray(canvas))
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100,
                   loop=0)
    return buf.getvalue()


def _strip(run: StageRun, n: int = 8) -> bytes | None:
    """The policy inputs of the GIF episode at ``n`` evenly spaced steps, one row (PNG)."""
    if not run.gif:
        return None
    from PIL import Image

    idx = np.linspace(0, len(run.gif) - 1, min(n, len(run.gif))).round().astype(int)
    row = np.concatenate([np.pad(run.gif[i][1], ((0, 0), (0, 2), (0, 0))) for i in idx], axis=1)
    buf = io.BytesIO()
    Image.fromarray(row).save(buf, format="PNG")
    return buf.getvalue()


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _episodes_csv(result: ClosedLoopResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["stage", "episode", "category", "outcome", "steps", "path_length_m",
                "final_distance_m"])
    for r in result.runs:
        for i, st in enumerate(result.starts):
            w.writerow([r.spec.name, st.index, st.category, r.log.outcome[i], int(r.log.steps[i]),
                        f"{r.log.path_length[i]:.4f}", f"{r.log.final_distance[i]:.4f}"])
    return buf.getvalue()


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _category_rows(metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    cats = list(metrics["categories"])
    header = ["stage"] + [f"{c} (n={metrics['categories'][c]})" for c in cats]
    rows = [[m["label"]] + [_pct(m["by_category"][c]["value"]) for c in cats]
            for m in metrics["stages"]]
    return header, rows


def _session_rows(session: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["stage", "frames", "frame change", "flicker", "action jitter"]
    rows = [[s["label"], str(s["frames"]), _num(s["frame_change"], ".2f"),
             _num(s["flicker"], ".3f"), _num(s["action_jitter"])] for s in session]
    return header, rows


_NOTES = (
    "success: within the success distance of the Kong and facing it before the step limit "
    "(95 % Wilson interval over episodes); gap closed = (success_stage − success_raw) / "
    "(success_sim − success_raw), 95 % bootstrap interval over episodes; jitter: mean "
    "|a_t − a_{t−1}| over consecutive steps; frame change: mean |Δ| of the policy input between "
    "consecutive steps (grey levels); flicker: that change divided by the stage input's own "
    "change (raw frames for lens-corrected, the translator's input for translated); turn "
    "agreement on path: the policy's turn direction vs the expert's on the states the stage "
    "itself visited."
)


def write_closed_loop_report(
    result: ClosedLoopResult,
    out_dir: str | Path,
    *,
    config: Mapping[str, Any] | None = None,
    session: Sequence[Mapping[str, Any]] | None = None,
    gif_every: int = 2,
    html_report: bool = True,
) -> dict[str, str]:
    """Write the closed-loop report into ``out_dir``.

    Files: ``metrics.json`` (summary, config, session temporal metrics), ``episodes.csv`` (one
    row per stage and episode), ``figures/trajectories_<stage>.png`` (top-down, every episode),
    ``figures/episode_<stage>.gif`` and ``figures/strip_<stage>.png`` (one episode: camera frame
    | policy input), ``report.md`` and a self-contained ``report.html``.

    Args:
        result: :func:`datasets.jetbot_synth.closed_loop.run_closed_loop` output.
        out_dir: the folder (created).
        config: the run's config, stored in metrics.json.
        session: :func:`datasets.jetbot_synth.closed_loop.session_temporal` output, if any.
        gif_every: keep every k-th step in the GIFs.
        html_report: also write report.html.

    Returns:
        ``{"metrics", "csv", "markdown", "html"?}`` → paths.
    """
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    metrics = dict(result.metrics)
    if session is not None:
        metrics["session"] = list(session)
    if config is not None:
        metrics["config"] = config
    files: dict[str, str] = {}
    atomic_write_json(out / "metrics.json", metrics)
    files["metrics"] = str(out / "metrics.json")
    atomic_write_text(out / "episodes.csv", _episodes_csv(result))
    files["csv"] = str(out / "episodes.csv")
    figs: list[tuple[str, str, str, str | None, str | None]] = []  # label, traj, gif, strip
    for r in result.runs:
        slug = _slug(r.spec.name)
        traj = fig_dir / f"trajectories_{slug}.png"
        atomic_write_bytes(traj, _fig_trajectories(r, result.starts))
        gif_b, strip_b = _gif(r, gif_every), _strip(r)
        gif_p = strip_p = None
        if gif_b is not None:
            atomic_write_bytes(fig_dir / f"episode_{slug}.gif", gif_b)
            gif_p = f"figures/episode_{slug}.gif"
        if strip_b is not None:
            atomic_write_bytes(fig_dir / f"strip_{slug}.png", strip_b)
            strip_p = f"figures/strip_{slug}.png"
        figs.append((r.spec.label, slug, f"figures/trajectories_{slug}.png", gif_p, strip_p))

    header, rows = summary_rows(metrics)
    ch, crows = _category_rows(metrics)
    md = ["# Closed-loop evaluation", "", f"{metrics['episodes']} episodes per stage.", "",
          _md_table(header, rows), "", "Success by start (Kong bearing / distance):", "",
          _md_table(ch, crows), "", _NOTES, ""]
    if session:
        sh, srows = _session_rows(session)
        md += ["## Recorded session (consecutive frames)", "", _md_table(sh, srows), ""]
    for label, _, traj_p, gif_p, _strip_p in figs:
        md += [f"## {label}", "", f"![trajectories]({traj_p})"]
        if gif_p:
            md += ["", f"![one episode: camera | policy input]({gif_p})"]
        md.append("")
    atomic_write_text(out / "report.md", "\n".join(md))
    files["markdown"] = str(out / "report.md")
    if html_report:
        atomic_write_text(out / "report.html", _html(metrics, figs, out, session))
        files["html"] = str(out / "report.html")
    return files


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html(metrics: Mapping[str, Any], figs: Sequence[tuple[str, str, str, str | None, str | None]],
          out: Path, session: Sequence[Mapping[str, Any]] | None) -> str:
    header, rows = summary_rows(metrics)
    ch, crows = _category_rows(metrics)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Closed-loop evaluation</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:"
        "collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px}"
        "th{background:#f3f3f3}.row{display:flex;flex-wrap:wrap;gap:14px}.row div{font-size:12px}"
        "img.px{image-rendering:pixelated}</style></head><body>",
        "<h1>Closed-loop evaluation</h1>",
        f"<p>{metrics['episodes']} episodes per stage, the same start states and camera noise "
        "for every stage.</p>",
        _html_table(header, rows),
        "<p>Success by start (Kong bearing / distance):</p>", _html_table(ch, crows),
        f"<p style='font-size:12px'>{html.escape(_NOTES)}</p>",
    ]
    if session:
        sh, srows = _session_rows(session)
        parts += ["<h2>Recorded session (consecutive frames)</h2>", _html_table(sh, srows)]
    parts.append("<h2>Trajectories (top-down, each episode in its start frame)</h2><div class='row'>")
    for label, _, traj, _, _ in figs:
        parts.append(f"<div><img src='{_data_uri(out / traj, 'image/png')}' "
                     f"alt='{html.escape(label)}'></div>")
    parts.append("</div><h2>One episode per stage: camera frame | policy input</h2>")
    for label, _, _, gif_p, strip_p in figs:
        if gif_p is None:
            continue
        parts.append(f"<h3>{html.escape(label)}</h3><img class='px' width='520' "
                     f"src='{_data_uri(out / gif_p, 'image/gif')}'>")
        if strip_p:
            parts.append(f"<br><img class='px' src='{_data_uri(out / strip_p, 'image/png')}'>")
    cfg = metrics.get("config")
    if cfg is not None:
        parts.append("<h2>Config</h2><pre style='font-size:11px'>"
                     + html.escape(json.dumps(cfg, indent=1, default=str)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
