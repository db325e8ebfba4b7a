"""Evaluation report: metrics.json, report.md, a self-contained report.html with figures, a terminal table."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from translate.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from translate.evaluate import EvalResult

__all__ = [
    "FIGURES",
    "TABLE_WIDTH",
    "figure_pngs",
    "fold_columns",
    "format_metric",
    "headline",
    "print_tables",
    "render_html",
    "render_markdown",
    "table_rows",
    "write_report",
]

#: Figure file stems, in report order, with their captions.
FIGURES: dict[str, str] = {
    "summary": "Action error (mean |pred − ref|, 95 % CI) and turn agreement per stage",
    "strips": "The same frames through every stage; arrows: reference action (green, dashed) "
              "and the policy's action (orange); numbers: left / right wheel commands",
    "scatter": "Policy action vs reference action, per wheel and stage (diagonal = perfect)",
    "errors": "Per-frame action error per stage",
    "worst": "Worst frames of each translated stage (largest action error)",
}

_REF_COLOUR = "#2ca02c"
_PRED_COLOUR = "#ff7f0e"

# (column title, metric key, kind) — kind picks the number format
_ACTION_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("action MAE [95 % CI]", "action_mae", "err"),
    ("turn agreement", "turn_agreement", "pct"),
    ("gap closed", "gap_closed", "pct"),
    ("within tol.", "within_tolerance", "pct"),
    ("cosine", "action_cosine", "num"),
    ("RMSE", "action_rmse", "err"),
)
_IMAGE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("PSNR dB", "psnr", "db"),
    ("SSIM", "ssim", "num"),
    ("LPIPS", "lpips", "num"),
    ("FD (policy feat.)", "frechet_distance", "big"),
    ("KID", "kid", "kid"),
    ("action energy", "action_energy_distance", "err"),
    ("action SWD", "action_sliced_wasserstein", "err"),
)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def _fmt(value: float, kind: str) -> str:
    if kind == "pct":
        return f"{100 * value:.1f} %"
    if kind == "db":
        return f"{value:.2f}"
    if kind == "big":
        return f"{value:.4g}"
    if kind == "kid":
        return f"{value:.3g}"
    return f"{value:.3f}"


def format_metric(entry: Mapping[str, Any] | None, kind: str = "num", *, ci: bool = True) -> str:
    """Format one metric entry of metrics.json for a table.

    Args:
        entry: ``{"available", "value", "ci"?, "reason"?}``.
        kind: ``pct`` (as %), ``db``, ``err``/``num`` (3 decimals), ``big``, ``kid``.
        ci: append the confidence interval when present.

    Returns:
        ``"0.123 [0.101, 0.140]"``, or ``"—"`` when unavailable, ``"ref"`` for the reference.
    """
    if not entry or not entry.get("available"):
        reason = str((entry or {}).get("reason", ""))
        return "ref" if reason == "reference stage" else "—"
    value = entry.get("value")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    text = _fmt(float(value), kind)
    if ci and entry.get("ci"):
        lo, hi = entry["ci"]
        if kind == "pct":
            text += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
        else:
            text += f" [{_fmt(lo, kind)}, {_fmt(hi, kind)}]"
    return text


def table_rows(metrics: Mapping[str, Any], which: str = "actions") -> tuple[list[str], list[list[str]]]:
    """The stage × metric table as strings.

    Args:
        metrics: the results.
        which: ``actions`` (agreement with the reference actions) or ``images`` (paired-image
            and distribution metrics).

    Returns:
        ``(header, rows)``.
    """
    cols = _ACTION_COLUMNS if which == "actions" else _IMAGE_COLUMNS
    header = ["stage", "frames", *(c[0] for c in cols)]
    rows = []
    for st in metrics.get("stages", []):
        row = [st["label"], str(st["n_frames"])]
        row += [format_metric(st["metrics"].get(key), kind) for _, key, kind in cols]
        rows.append(row)
    return header, rows


def _unavailable_notes(metrics: Mapping[str, Any]) -> list[str]:
    """One line per metric that is unavailable on a non-reference stage, with its reason."""
    seen: dict[str, str] = {}
    for st in metrics.get("stages", []):
        for key, entry in st["metrics"].items():
            reason = entry.get("reason", "")
            if not entry.get("available") and reason != "reference stage" and key not in seen:
                seen[key] = reason
    return [f"{k}: {v}" for k, v in seen.items()]


def headline(metrics: Mapping[str, Any]) -> list[str]:
    """One line per translated stage, what a reader wants first, e.g.
    ``gap closed 30.2 % [26.3, 34.4] · turn agreement 60.2 → 66.2 % (sim 95.8 %) — cut``."""
    stages = {st["kind"]: st for st in metrics.get("stages", []) if st["kind"] in ("raw", "sim")}

    def pct(st: Mapping[str, Any] | None, key: str) -> str:
        e = (st or {}).get("metrics", {}).get(key) or {}
        v = e.get("value")
        return "–" if not isinstance(v, (int, float)) else f"{100 * v:.1f}"

    out = []
    for st in metrics.get("stages", []):
        if st["kind"] != "translated":
            continue
        gap = st["metrics"].get("gap_closed") or {}
        ci = gap.get("ci")
        gap_s = (f"{100 * gap['value']:.1f} %" if isinstance(gap.get("value"), (int, float)) else "–")
        if ci and None not in ci:
            gap_s += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
        out.append(f"gap closed {gap_s} · turn agreement {pct(stages.get('raw'), 'turn_agreement')} → "
                   f"{pct(st, 'turn_agreement')} % (sim {pct(stages.get('sim'), 'turn_agreement')} %)"
                   f" — {st.get('translator') or st['label']}")
    return out


#: the terminal tables fit this many columns (or the terminal's width, when narrower)
TABLE_WIDTH = 100


#: the stage column wraps beyond this many characters (long run names)
_LABEL_WIDTH = 32


def fold_columns(header: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> list[list[int]]:
    """Split a table's columns into groups that each print within ``width`` columns.

    The stage column starts every group and wraps beyond 32 characters; the frames column is in
    the first group only; the metric columns follow in order, as many per group as fit (rich
    draws a column as its widest cell plus 3: padding and a rule).

    Args:
        header: column titles (stage, frames, metrics...).
        rows: the cells, row by row.
        width: the widest line allowed.

    Returns:
        Column indices of each group, e.g. ``[[0, 1, 2, 3], [0, 4, 5]]``.
    """
    need = [max([len(h), *(len(r[i]) for r in rows)]) + 3 for i, h in enumerate(header)]
    if not need:
        return [[]]
    need[0] = min(need[0], _LABEL_WIDTH + 3)
    groups: list[list[int]] = []
    cur = [0, 1] if len(header) > 1 else [0]
    used = 1 + sum(need[i] for i in cur)
    for i in range(len(cur), len(header)):
        if len(cur) > (2 if not groups else 1) and used + need[i] > width:
            groups.append(cur)
            cur, used = [0], 1 + need[0]
        cur.append(i)
        used += need[i]
    groups.append(cur)
    return groups


def print_tables(metrics: Mapping[str, Any], console: Any = None) -> None:
    """Print the stage × metric tables, warnings and threshold checks to the terminal (rich).

    Args:
        metrics: the results.
        console: a ``rich.console.Console`` (default: a new one on stdout).
    """
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # logs and CI: no terminal width; 100 columns read anywhere
            console = Console(width=TABLE_WIDTH)
    width = min(int(console.width), TABLE_WIDTH)
    for line in headline(metrics):
        console.print(f"[bold]{line}[/]")
    titles = {"actions": "Policy actions vs reference", "images": "Images and distributions"}
    for which, title in titles.items():
        header, rows = table_rows(metrics, which)
        for part, cols in enumerate(fold_columns(header, rows, width)):
            table = Table(title=title if part == 0 else f"{title} (continued)", title_justify="left")
            for i in cols:
                if i == 0:
                    table.add_column(header[i], justify="left", max_width=_LABEL_WIDTH, overflow="fold")
                else:
                    table.add_column(header[i], justify="right", no_wrap=True)
            for row in rows:
                table.add_row(*(row[i] for i in cols))
            console.print(table)
    ref = metrics.get("data", {}).get("reference_actions")
    if ref:
        console.print(f"reference actions: {ref}; CIs: bootstrap over frames")
    data = metrics.get("data", {})
    skipped, problems = data.get("skipped") or [], data.get("problems") or []
    if skipped:
        console.print(f"[yellow]{len(skipped)} unreadable frame(s) skipped[/]: " + "; ".join(
            f"{x['path']} ({x['reason']})" for x in skipped[:3]) + ("; ..." if len(skipped) > 3
                                                                   else ""))
    if problems:
        console.print(f"[yellow]{len(problems)} data problem(s)[/]: " + "; ".join(problems[:3])
                      + ("; ... (all in metrics.json)" if len(problems) > 3 else ""))
    for w in metrics.get("warnings", []):
        console.print(f"[bold yellow]warning[/] {w['stage']}: {w['message']}")
    for c in (metrics.get("thresholds") or {}).get("checks", []):
        style = "green" if c["passed"] else "bold red"
        console.print(f"[{style}]{'pass' if c['passed'] else 'FAIL'}[/] {c['message']}")


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)  # laid out by tight_layout: no second draw pass
    _plt().close(fig)
    return buf.getvalue()


def _short(label: str, width: int = 22) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _draw_action(ax: Any, action: np.ndarray, h: int, w: int, colour: str, dashed: bool) -> None:
    """Arrow from the lower centre: up = forward ((l + r) / 2), sideways = turn ((l − r) / 2).

    Starts at 72 % of the height with a quarter of it per unit of forward speed, so full speed
    backwards (−1) still ends inside the frame.
    """
    if len(action) != 2:
        return
    left, right = float(action[0]), float(action[1])
    fwd, turn = (left + right) / 2, (left - right) / 2
    x0, y0 = w / 2, h * 0.72
    dx, dy = turn * w * 0.45, -fwd * h * 0.25
    if abs(dx) + abs(dy) < 0.5:
        ax.plot([x0], [y0], "o", color=colour, markersize=4)
        return
    ax.annotate("", xy=(x0 + dx, y0 + dy), xytext=(x0, y0), annotation_clip=False, arrowprops={
        "arrowstyle": "-|>", "color": colour, "lw": 2.0, "linestyle": "--" if dashed else "-",
        "shrinkA": 0, "shrinkB": 0, "mutation_scale": 12,
    })


def _wheels(a: np.ndarray | None, names: Sequence[str] = ()) -> str:
    if a is None:
        return ""
    vals = np.asarray(a).ravel()
    tags = [n[:1].upper() for n in names] if len(names) == len(vals) else [""] * len(vals)
    return " ".join(f"{t}{v:+.2f}" for t, v in zip(tags, vals, strict=True))


def _image_panel(ax: Any, img: np.ndarray, pred: np.ndarray | None, ref: np.ndarray | None,
                 title: str | None = None, caption: str | None = None) -> None:
    h, w = img.shape[:2]
    ax.imshow(img, interpolation="nearest")
    if ref is not None:
        _draw_action(ax, ref, h, w, _REF_COLOUR, dashed=True)
    if pred is not None:
        _draw_action(ax, pred, h, w, _PRED_COLOUR, dashed=False)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    if caption:
        ax.set_xlabel(caption, fontsize=7)


def _fig_summary(result: EvalResult) -> bytes | None:
    stages = [st for st in result.metrics["stages"] if st["metrics"]["action_mae"]["available"]]
    if not stages:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 + 0.45 * len(stages) + 1.2))
    labels = [_short(st["label"], 28) for st in stages]
    y = np.arange(len(stages))[::-1]
    for ax, key, title, pct in (
        (axes[0], "action_mae", "action MAE (lower is better)", False),
        (axes[1], "turn_agreement", "turn agreement (higher is better)", True),
    ):
        vals, lo, hi = [], [], []
        for st in stages:
            e = st["metrics"].get(key, {})
            v = e.get("value") if e.get("available") else math.nan
            v = math.nan if v is None else v
            ci = e.get("ci") or [v, v]
            vals.append(v)
            lo.append(v - ci[0])
            hi.append(ci[1] - v)
        scale = 100.0 if pct else 1.0
        colours = ["#7f7f7f" if st["kind"] in ("raw", "corrected") else
                   "#1f77b4" if st["kind"] == "translated" else "#2ca02c" for st in stages]
        ax.barh(y, np.array(vals) * scale, xerr=np.array([lo, hi]) * scale, color=colours,
                capsize=3, alpha=0.85)
        for yi, v, up in zip(y, vals, hi, strict=True):
            if math.isfinite(v):
                ax.text((v + (up if math.isfinite(up) else 0.0)) * scale, yi,
                        f"  {v * scale:.1f} %" if pct else f"  {v:.3f}", va="center", fontsize=8)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_title(title, fontsize=9)
        if pct:
            ax.set_xlim(0, 118)
        else:
            finite = [v for v in vals if math.isfinite(v)]
            tops = [v + u for v, u in zip(vals, hi, strict=True) if math.isfinite(v + u)]
            ax.set_xlim(0, 1.3 * max(finite + tops + [1e-3]))
        ax.grid(axis="x", alpha=0.3)
    axes[1].set_yticklabels([])
    ref = result.metrics["data"].get("reference_actions")
    fig.suptitle(f"reference actions: {ref}", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _fig_strips(result: EvalResult) -> bytes | None:
    smp = result.samples
    stages = smp.get("stages") or []
    if not smp.get("stems") or not stages:
        return None
    plt = _plt()
    labels = {st["name"]: st["label"] for st in result.metrics["stages"]}
    names = result.metrics["policy"]["action_names"]
    k, n = len(smp["stems"]), len(stages)
    fig, axes = plt.subplots(k, n, figsize=(1.9 * n, 2.15 * k + 0.4), squeeze=False)
    ref = smp.get("reference")
    for i in range(k):
        for j, name in enumerate(stages):
            pred = smp["actions"][name][i]
            r = None if ref is None else ref[i]
            caption = f"pred {_wheels(pred, names)}" + (
                f"\nref  {_wheels(r, names)}" if r is not None else "")
            _image_panel(axes[i, j], smp["frames"][name][i], pred, r,
                         title=_short(labels.get(name, name)) if i == 0 else None,
                         caption=caption)
        axes[i, 0].set_ylabel(smp["stems"][i], fontsize=8)
    _legend(fig, ref is not None)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / fig.get_figheight()))
    return _png(fig)


def _legend(fig: Any, with_ref: bool) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([0], [0], color=_PRED_COLOUR, lw=2, label="policy action")]
    if with_ref:
        handles.append(Line2D([0], [0], color=_REF_COLOUR, lw=2, ls="--",
                              label="reference action"))
    fig.legend(handles=handles, loc="upper center", ncol=2, fontsize=8, frameon=False,
               title="arrow: up = forward (L+R)/2, sideways = turn (L−R)/2", title_fontsize=8)


def _fig_scatter(result: EvalResult) -> bytes | None:
    ref = result.reference
    if ref is None:
        return None
    names = result.metrics["policy"]["action_names"]
    stages = [st for st in result.metrics["stages"] if st["name"] in result.errors]
    if not stages:
        return None
    plt = _plt()
    a = ref.shape[1]
    fig, axes = plt.subplots(a, len(stages), figsize=(2.3 * len(stages), 2.3 * a + 0.3),
                             squeeze=False)
    for j, st in enumerate(stages):
        pred = result.actions[st["name"]]
        for i in range(a):
            ax = axes[i, j]
            ax.plot([-1, 1], [-1, 1], color="#999999", lw=1, zorder=1)
            ax.scatter(ref[:, i], pred[:, i], s=6 if len(ref) > 200 else 16, alpha=0.5,
                       color="#1f77b4", zorder=2, linewidths=0)
            lo = min(-1.0, float(ref[:, i].min()), float(pred[:, i].min()))
            hi = max(1.0, float(ref[:, i].max()), float(pred[:, i].max()))
            ax.set_xlim(lo - 0.05, hi + 0.05)
            ax.set_ylim(lo - 0.05, hi + 0.05)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
            mae = float(np.abs(pred[:, i] - ref[:, i]).mean())
            ax.text(0.03, 0.97, f"MAE {mae:.3f}", transform=ax.transAxes, va="top", fontsize=7)
            if i == 0:
                ax.set_title(_short(st["label"]), fontsize=8)
            if j == 0:
                ax.set_ylabel(f"policy {names[i] if i < len(names) else i}", fontsize=8)
            if i == a - 1:
                ax.set_xlabel(f"reference {names[i] if i < len(names) else i}", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _fig_errors(result: EvalResult) -> bytes | None:
    if not result.errors:
        return None
    plt = _plt()
    stages = [st for st in result.metrics["stages"] if st["name"] in result.errors]
    fig, axes = plt.subplots(len(stages), 1, figsize=(6.5, 1.15 * len(stages) + 0.6),
                             sharex=True, squeeze=False)
    top = max(float(e.max()) for e in result.errors.values())
    bins = np.linspace(0.0, max(top, 1e-3) * 1.001, 41)
    for ax, st in zip(axes[:, 0], stages, strict=True):
        e = result.errors[st["name"]]
        colour = ("#7f7f7f" if st["kind"] in ("raw", "corrected") else
                  "#1f77b4" if st["kind"] == "translated" else "#2ca02c")
        ax.hist(e, bins=bins, color=colour, alpha=0.85)
        ax.axvline(float(e.mean()), color="black", lw=1, ls="--")
        ax.text(0.99, 0.9, f"{_short(st['label'], 30)}  mean {e.mean():.3f}",
                transform=ax.transAxes, ha="right", va="top", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylabel("frames", fontsize=7)
    axes[-1, 0].set_xlabel("per-frame mean |policy action − reference|", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _fig_worst(result: EvalResult) -> bytes | None:
    if not result.worst:
        return None
    plt = _plt()
    blocks = list(result.worst.items())
    rows = sum(len(w["stems"]) for _, w in blocks)
    has_sim = all(w["sim"] is not None for _, w in blocks)
    cols = 3 if has_sim else 2
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.2 * rows + 0.4), squeeze=False)
    labels = {st["name"]: st["label"] for st in result.metrics["stages"]}
    names = result.metrics["policy"]["action_names"]
    r = 0
    for name, w in blocks:
        for i, stem in enumerate(w["stems"]):
            pred, ref = w["pred"][i], w["ref"][i]
            _image_panel(axes[r, 0], w["input"][i], None, ref,
                         title="translator input" if i == 0 else None,
                         caption=f"ref  {_wheels(ref, names)}")
            _image_panel(axes[r, 1], w["output"][i], pred, ref,
                         title=_short(labels.get(name, name)) if i == 0 else None,
                         caption=f"pred {_wheels(pred, names)}  err {w['errors'][i]:.3f}")
            if has_sim:
                sim_pred = None if w.get("sim_pred") is None else w["sim_pred"][i]
                _image_panel(axes[r, 2], w["sim"][i], sim_pred, ref,
                             title="sim" if i == 0 else None,
                             caption="" if sim_pred is None else
                             f"pred {_wheels(sim_pred, names)}")
            axes[r, 0].set_ylabel(f"{stem}", fontsize=8)
            r += 1
    _legend(fig, True)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / fig.get_figheight()))
    return _png(fig)


def figure_pngs(result: EvalResult) -> dict[str, bytes]:
    """Render the report's figures (matplotlib, Agg backend) as PNG bytes.

    Args:
        result: the evaluation result.

    Returns:
        Figure stem (see :data:`FIGURES`) → PNG bytes; figures the data does not allow (no
        reference actions, no translated stage) are left out.
    """
    makers = {"summary": _fig_summary, "strips": _fig_strips, "scatter": _fig_scatter,
              "errors": _fig_errors, "worst": _fig_worst}
    out: dict[str, bytes] = {}
    for name, make in makers.items():
        png = make(result)
        if png is not None:
            out[name] = png
    return out


# --------------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------------


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(x: str) -> str:
        return x.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _summary_lines(metrics: Mapping[str, Any]) -> list[str]:
    d = metrics["data"]
    p = metrics["policy"]
    cam = d.get("camera")
    lines = [
        f"data: {d['path']} ({d['kind']}, {d['n_frames']} of {d['n_listed']} frames"
        + (f", real {d['real_size'][1]}×{d['real_size'][0]}" if d.get("real_size") else "")
        + (f", sim {d['sim_size'][1]}×{d['sim_size'][0]}" if d.get("sim_size") else "") + ")",
        f"policy: {p['path']} (input "
        + (f"{p['input_size'][1]}×{p['input_size'][0]}" if p.get("input_size") else "any size")
        + f", {p['spec'].get('layout')} {p['spec'].get('channel_order')} "
        f"{p['spec'].get('scale')}; features: {p['features']})",
        "reference actions: " + {
            "manifest": "the manifest's expert actions",
            "session": "the session's recorded (teleop) actions",
            "policy_on_sim": "the policy's own action on the paired sim frame",
            None: "none (distribution metrics only)",
        }.get(d.get("reference_actions"), str(d.get("reference_actions"))),
        "camera correction: " + (f"{cam['source']} (real {cam['in_size'][1]}×"
                                 f"{cam['in_size'][0]} → sim {cam['out_size'][1]}×"
                                 f"{cam['out_size'][0]})" if cam else "none"),
        "translators: " + (", ".join(f"{t['name']} ({t.get('kind', '?')})"
                                     for t in metrics.get("translators", [])) or "none"),
    ]
    t = metrics.get("timing", {})
    if t.get("seconds"):
        lines.append(f"time: {t['seconds']:.1f} s ({t.get('frames_per_second') or 0:.1f} frames/s)")
    return lines


def _notes(metrics: Mapping[str, Any]) -> list[str]:
    out = []
    for st in metrics.get("stages", []):
        out += [f"{st['label']}: {n}" for n in st.get("notes", [])]
    d = metrics["data"]
    if d.get("skipped"):
        out.append(f"{len(d['skipped'])} unreadable frame(s) skipped: " + "; ".join(
            f"{s['path']} ({s['reason']})" for s in d["skipped"][:10]))
    out += [f"data: {p}" for p in d.get("problems", [])[:20]]
    out += [f"unavailable {u}" for u in _unavailable_notes(metrics)]
    return out


def render_markdown(metrics: Mapping[str, Any], figures: Mapping[str, str]) -> str:
    """report.md: summary, the two tables, warnings, checks, notes and linked figures.

    Args:
        metrics: the results (with ``thresholds`` when checked).
        figures: figure stem → relative path of its PNG.

    Returns:
        Markdown text.
    """
    out = ["# Policy on translated frames: evaluation report", ""]
    out += [f"- {line}" for line in _summary_lines(metrics)]
    out += ["", "## Policy actions vs reference", "",
            _md_table(*table_rows(metrics, "actions")), "",
            "## Images and distributions", "", _md_table(*table_rows(metrics, "images")), "",
            "CIs: percentile bootstrap over frames. Gap closed = (err_raw − err_stage) / "
            "(err_raw − err_sim) on action MAE. FD / KID in the frozen policy's penultimate "
            "features, against the sim frames. See docs/metrics.md.", ""]
    if metrics.get("warnings"):
        out += ["## Warnings", ""]
        out += [f"- **{w['stage']}** ({w['kind']}): {w['message']}" for w in metrics["warnings"]]
        out.append("")
    checks = (metrics.get("thresholds") or {}).get("checks") or []
    if checks:
        out += ["## Thresholds", ""]
        out += [f"- {'PASS' if c['passed'] else '**FAIL**'} {c['message']}" for c in checks]
        out.append("")
    notes = _notes(metrics)
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    for name, caption in FIGURES.items():
        if name in figures:
            out += [f"## {name.capitalize()}", "", caption, "", f"![{name}]({figures[name]})", ""]
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}tr.translated td{background:#eef5fc}tr.sim td{background:#eef8ee}
.warn{background:#fff4e0;border-left:4px solid #f0a020;padding:.4em .8em;margin:.3em 0}
.fail{background:#fde8e8;border-left:4px solid #d33;padding:.4em .8em;margin:.3em 0}
.pass{background:#e8f6e8;border-left:4px solid #3a3;padding:.4em .8em;margin:.3em 0}
img{max-width:100%;border:1px solid #eee}.small{color:#666;font-size:.85em}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em}
"""


def _html_table(metrics: Mapping[str, Any], which: str) -> str:
    header, rows = table_rows(metrics, which)
    kinds = [st["kind"] for st in metrics.get("stages", [])]
    parts = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for kind, row in zip(kinds, rows, strict=True):
        parts.append(f'<tr class="{kind}">' + "".join(
            f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def render_html(
    metrics: Mapping[str, Any], figures: Mapping[str, bytes], config: Any = None
) -> str:
    """report.html: one self-contained page (figures embedded as base64 PNG, no external files).

    Args:
        metrics: the results.
        figures: figure stem → PNG bytes.
        config: the run's configuration (shown at the end), or None.

    Returns:
        HTML text.
    """
    e = html.escape
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
           "<title>Policy on translated frames: evaluation report</title>",
           f"<style>{_CSS}</style></head><body>",
           "<h1>Does the translator make the sim policy act on real frames as on sim frames?</h1>",
           *(f"<p class='headline'><b>{e(x)}</b></p>" for x in headline(metrics)),
           "<ul>" + "".join(f"<li>{e(x)}</li>" for x in _summary_lines(metrics)) + "</ul>"]
    checks = (metrics.get("thresholds") or {}).get("checks") or []
    for c in checks:
        out.append(f"<div class='{'pass' if c['passed'] else 'fail'}'>"
                   f"{'PASS' if c['passed'] else 'FAIL'} {e(c['message'])}</div>")
    for w in metrics.get("warnings", []):
        out.append(f"<div class='warn'><b>{e(w['stage'])}</b> ({e(w['kind'])}): "
                   f"{e(w['message'])}</div>")
    out += ["<h2>Policy actions vs reference</h2>", _html_table(metrics, "actions"),
            "<h2>Images and distributions</h2>", _html_table(metrics, "images"),
            "<p class='small'>Brackets: 95 % percentile-bootstrap CI over frames. Gap closed = "
            "(err_raw − err_stage) / (err_raw − err_sim) on action MAE: 0 % = no better than "
            "raw real frames, 100 % = as on sim frames. FD / KID are measured in the frozen "
            "policy's penultimate-feature space against the sim frames; “—” = not available "
            "(see notes), “ref” = the reference itself.</p>"]
    for name, caption in FIGURES.items():
        if name in figures:
            b64 = base64.b64encode(figures[name]).decode("ascii")
            out += [f"<h2>{e(name.capitalize())}</h2><p class='small'>{e(caption)}</p>",
                    f"<img alt='{e(name)}' src='data:image/png;base64,{b64}'>"]
    notes = _notes(metrics)
    if notes:
        out += ["<h2>Notes</h2><ul>"] + [f"<li>{e(n)}</li>" for n in notes] + ["</ul>"]
    if config is not None:
        text = config if isinstance(config, str) else json.dumps(config, indent=2, default=str)
        out += ["<h2>Configuration</h2>", f"<pre>{e(text)}</pre>"]
    out.append("</body></html>")
    return "\n".join(out)


def _per_frame_csv(result: EvalResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    names = list(result.metrics["policy"]["action_names"])
    stages = [st["name"] for st in result.metrics["stages"]
              if len(result.actions.get(st["name"], [])) == len(result.stems)
              and not (st["kind"] == "sim" and result.metrics["data"]["kind"] != "paired")]
    header = ["stem"] + [f"ref_{n}" for n in names] if result.reference is not None else ["stem"]
    for s in stages:
        header += [f"{s}/{n}" for n in names]
        if s in result.errors:
            header.append(f"{s}/error")
    writer.writerow(header)
    for i, stem in enumerate(result.stems):
        row: list[Any] = [stem]
        if result.reference is not None:
            row += [f"{v:.6g}" for v in result.reference[i]]
        for s in stages:
            row += [f"{v:.6g}" for v in result.actions[s][i]]
            if s in result.errors:
                row.append(f"{result.errors[s][i]:.6g}")
        writer.writerow(row)
    return buf.getvalue()


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    return x


def write_report(
    result: EvalResult,
    out_dir: str | os.PathLike[str],
    *,
    config: Mapping[str, Any] | None = None,
    html_report: bool = True,
) -> dict[str, Path]:
    """Write metrics.json, report.md, report.html, figures/*.png and per_frame.csv (atomically).

    Args:
        result: the evaluation result (``result.metrics`` may carry ``thresholds``).
        out_dir: the output folder (created).
        config: the run's resolved configuration, stored in metrics.json and the HTML page.
        html_report: also write report.html.

    Returns:
        File kind → path (``metrics``, ``markdown``, ``html``, ``per_frame``, ``figure/<stem>``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = figure_pngs(result)
    files: dict[str, Path] = {}
    rel: dict[str, str] = {}
    for name, png in pngs.items():
        path = atomic_write_bytes(out / "figures" / f"{name}.png", png)
        files[f"figure/{name}"] = path
        rel[name] = f"figures/{name}.png"
    files["per_frame"] = atomic_write_text(out / "per_frame.csv", _per_frame_csv(result))
    files["markdown"] = out / "report.md"
    if html_report:
        files["html"] = out / "report.html"
    files["metrics"] = out / "metrics.json"
    metrics = dict(result.metrics)
    metrics["files"] = {k: str(p.relative_to(out)) for k, p in files.items()}
    if config is not None:
        metrics["config"] = config
    metrics = _json_safe(metrics)
    atomic_write_text(files["markdown"], render_markdown(metrics, rel))
    if html_report:
        atomic_write_text(files["html"], render_html(metrics, pngs, config))
    atomic_write_json(files["metrics"], metrics)
    result.metrics.update({"files": metrics["files"]})
    return files
