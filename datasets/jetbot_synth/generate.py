"""Write the jetbot_synth dataset (unpaired real/sim, paired val/test), render arrays in memory."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from datasets.jetbot_synth.render import DOMAINS, Renderer
from datasets.jetbot_synth.world import (
    SceneState,
    WorldConfig,
    expert_actions,
    kong_in_view,
    make_rig,
    sample_states,
)
from translate.fsutil import atomic_write_json, atomic_write_text, swap_folder_into_place
from translate.imageio import write_image

__all__ = [
    "DATASET_NAME",
    "FORMAT_VERSION",
    "GENERATOR_VERSION",
    "DatasetExistsError",
    "dataset_params",
    "ensure_dataset",
    "generate_dataset",
    "make_contact_sheet",
    "render_arrays",
]

DATASET_NAME = "jetbot_synth"
FORMAT_VERSION = 1
# Bump when the same parameters would render different frames (renderer or sampler changes).
GENERATOR_VERSION = 2
_SPLITS = ("real", "sim", "val", "test")
_CHUNK = 64  # frames rendered and written per step


class DatasetExistsError(FileExistsError):
    """The output folder exists and is not a jetbot_synth dataset: refusing to overwrite it."""


def _config(config: WorldConfig | None, size: int) -> WorldConfig:
    config = config or WorldConfig()
    return config if config.size == size else dataclasses.replace(config, size=size)


def _split_seeds(seed: int) -> dict[str, tuple[np.random.SeedSequence, int]]:
    """Independent (state stream, noise seed) per split, so no two splits share a state."""
    out = {}
    for name, child in zip(_SPLITS, np.random.SeedSequence(seed).spawn(len(_SPLITS)),
                           strict=True):
        states_seq, noise_seq = child.spawn(2)
        out[name] = (states_seq, int(noise_seq.generate_state(1)[0]))
    return out


@contextlib.contextmanager
def _progress(enabled: bool, total: int, what: str) -> Iterator[Any]:
    """A rich progress bar (or a no-op) with an ``advance(n)`` callable."""
    if not enabled or total <= 0:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


# ---------------------------------------------------------------------------- in memory


def render_arrays(
    n: int,
    seed: int,
    domains: str | Sequence[str] = "sim",
    size: int = 128,
    *,
    config: WorldConfig | None = None,
    jpeg: bool = True,
    progress: bool = False,
) -> tuple[np.ndarray | dict[str, np.ndarray], np.ndarray, list[SceneState]]:
    """Sample ``n`` states and render them in memory, without touching the disk.

    The same ``seed`` gives the same states for every domain, so ``("sim", "real")`` gives pairs.

    Args:
        n: number of frames.
        seed: seed of the states and of the real camera's noise.
        domains: ``"sim"``, ``"real"`` or a sequence of them.
        size: square image size (overrides ``config.size``).
        config: the world (default :class:`WorldConfig`).
        jpeg: JPEG round trip real frames, so they equal frames saved by the dataset writer.
        progress: show a progress bar.

    Returns:
        ``(frames, actions, states)``: frames is an (N, H, W, 3) uint8 array when ``domains`` is
        one string, else a dict domain -> array; actions is (N, 2) float32 (left, right).

    Shape:
        - frames: :math:`(N, H, W, 3)` per domain
        - actions: :math:`(N, 2)`

    Example:
        >>> frames, actions, states = render_arrays(4, seed=0, domains="sim", size=32)
        >>> frames.shape, actions.shape
        ((4, 32, 32, 3), (4, 2))
    """
    doms = [domains] if isinstance(domains, str) else list(domains)
    for d in doms:
        if d not in DOMAINS:
            raise ValueError(f"domains must be among {DOMAINS}, got {d!r}")
    cfg = _config(config, size)
    states_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
    noise_seed = int(noise_seq.generate_state(1)[0])
    states = sample_states(n, states_seq, cfg)
    actions = expert_actions(states, cfg)
    renderer = Renderer(cfg)
    frames: dict[str, np.ndarray] = {}
    with _progress(progress, n * len(doms), "jetbot_synth render") as advance:
        for d in doms:
            out = np.empty((n, cfg.size, cfg.size, 3), dtype=np.uint8)
            for i in range(0, n, _CHUNK):
                part = states[i : i + _CHUNK]
                out[i : i + len(part)] = renderer.render(part, d, noise_seed, index_offset=i,
                                                         jpeg=jpeg)
                advance(len(part))
            frames[d] = out
    return (frames[doms[0]] if isinstance(domains, str) else frames), actions, states


# ---------------------------------------------------------------------------- contact sheet


def make_contact_sheet(
    pairs: Sequence[Sequence[np.ndarray]],
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    titles: Sequence[str] = ("sim", "real", "real, corrected"),
    min_cell: int = 192,
) -> Path:
    """Write rows of frames side by side (e.g. sim | real | corrected real) as one PNG.

    Frames are enlarged by an integer factor (nearest neighbour, so pixels stay visible) until a
    cell is at least ``min_cell`` pixels wide. Written atomically.

    Args:
        pairs: rows; each row is a sequence of RGB uint8 (H, W, 3) frames of one size.
        path: the PNG to write.
        labels: one caption per row (e.g. distance, bearing, action).
        titles: column titles.
        min_cell: smallest displayed cell size in pixels.

    Returns:
        The path written.
    """
    if not pairs:
        raise ValueError("pairs is empty: nothing to put on a contact sheet")
    h, w = pairs[0][0].shape[:2]
    ncol = max(len(r) for r in pairs)
    scale = max(1, -(-min_cell // max(h, w)))
    ch, cw = h * scale, w * scale
    pad, band = 4, 16
    width = ncol * (cw + pad) + pad
    height = band + len(pairs) * (ch + band + pad) + pad
    sheet = Image.new("RGB", (width, height), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for j in range(ncol):
        if j < len(titles):
            draw.text((pad + j * (cw + pad) + 2, 2), titles[j], fill=(230, 230, 230))
    for i, row in enumerate(pairs):
        y = band + i * (ch + band + pad)
        if labels is not None and i < len(labels):
            draw.text((pad + 2, y + 2), labels[i], fill=(200, 200, 120))
        for j, frame in enumerate(row):
            if frame.shape[:2] != (h, w) or frame.dtype != np.uint8:
                raise ValueError(
                    f"contact sheet frames must all be uint8 {h}x{w}x3, row {i} column {j} is "
                    f"{frame.dtype} {frame.shape}"
                )
            tile = Image.fromarray(frame).resize((cw, ch), Image.Resampling.NEAREST)
            sheet.paste(tile, (pad + j * (cw + pad), y + band))
    return write_image(path, np.asarray(sheet))


def _sheet_picks(states: Sequence[SceneState], cfg: WorldConfig, k: int = 8) -> list[int]:
    """Indices of a varied selection: nearest, mid and farthest in view, and out of view."""
    inv = [i for i, s in enumerate(states) if kong_in_view(s, cfg)]
    out = [i for i, s in enumerate(states) if not kong_in_view(s, cfg)]
    inv.sort(key=lambda i: states[i].kong_distance)
    picks: list[int] = []
    if inv:
        for q in (0.0, 0.05, 0.35, 0.6, 0.9, 1.0):
            picks.append(inv[min(len(inv) - 1, int(q * (len(inv) - 1)))])
    picks += out[: max(0, k - len(set(picks)))]
    return sorted(set(picks))[:k]


def _label(state: SceneState, action: np.ndarray, cfg: WorldConfig) -> str:
    view = "in view" if kong_in_view(state, cfg) else "OUT of view"
    return (f"d={state.kong_distance:.2f} m  bearing={state.kong_bearing_deg:+.0f} deg  {view}  "
            f"action=({action[0]:+.2f}, {action[1]:+.2f})  floor={state.floor_type}")


# ---------------------------------------------------------------------------- the writer


def dataset_params(
    *, size: int = 128, seed: int = 0, n_real: int = 2000, n_sim: int = 2000, n_val: int = 200,
    n_test: int = 500, config: WorldConfig | None = None,
) -> dict[str, Any]:
    """The parameters that identify a dataset: what dataset.json must match to be reused.

    Returns:
        ``{"name", "format_version", "generator_version", "size", "seed", "counts", "world"}``.
    """
    for key, v in (("n_real", n_real), ("n_sim", n_sim), ("n_val", n_val), ("n_test", n_test)):
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {v!r}")
    cfg = _config(config, size)
    return {
        "name": DATASET_NAME,
        "format_version": FORMAT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "size": size,
        "seed": seed,
        "counts": {"real": n_real, "sim": n_sim, "val": n_val, "test": n_test},
        "world": cfg.to_dict(),
    }


def _read_meta(root: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def _matches(meta: dict[str, Any] | None, params: dict[str, Any]) -> bool:
    return meta is not None and all(meta.get(k) == v for k, v in params.items())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(root: Path) -> None:
    """Remove temporary folders left by killed generations of ``root`` (their process is gone)."""
    if not root.parent.is_dir():
        return
    for p in root.parent.glob(f".{root.name}.partial-*"):
        try:
            pid = int(p.name.rsplit(".partial-", 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            continue
        if p.is_dir() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _write_split(renderer: Renderer, folder: Path, states: Sequence[SceneState],
                 actions: np.ndarray, domains: Sequence[str], noise_seed: int,
                 pool: ThreadPoolExecutor, advance: Any, keep: set[int],
                 kept: dict[int, dict[str, np.ndarray]]) -> None:
    """Render one split in chunks and write its frames and manifest. Paired when 2 domains."""
    cfg = renderer.config
    quality = cfg.real.jpeg_quality
    ext = {"sim": "png", "real": "jpg"}
    lines: list[str] = []
    pending: list[Future[Path]] = []
    for i in range(0, len(states), _CHUNK):
        part = states[i : i + _CHUNK]
        rendered = {d: renderer.render(part, d, noise_seed, index_offset=i) for d in domains}
        for f in pending:  # bound memory: at most one chunk is being written while rendering
            f.result()
        pending = []
        for j in range(len(part)):
            g = i + j
            stem = f"{g:06d}"
            for d in domains:
                sub = folder / d if len(domains) > 1 else folder
                pending.append(pool.submit(write_image, sub / f"{stem}.{ext[d]}",
                                           rendered[d][j], quality=quality))
            if g in keep:
                kept[g] = {d: rendered[d][j].copy() for d in domains}
            rec: dict[str, Any]
            if len(domains) > 1:
                rec = {"stem": stem, "real": f"real/{stem}.jpg", "sim": f"sim/{stem}.png"}
            else:
                rec = {"file": f"{stem}.{ext[domains[0]]}"}
            rec["action"] = [float(a) for a in actions[g]]
            rec["in_view"] = kong_in_view(states[g], cfg)
            rec["state"] = states[g].to_dict()
            lines.append(json.dumps(rec))
        advance(len(part) * len(domains))
    for f in pending:
        f.result()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "manifest.jsonl", "".join(line + "\n" for line in lines))


def generate_dataset(
    root: str | os.PathLike[str],
    *,
    size: int = 128,
    seed: int = 0,
    n_real: int = 2000,
    n_sim: int = 2000,
    n_val: int = 200,
    n_test: int = 500,
    config: WorldConfig | None = None,
    progress: bool = True,
    contact_sheet: bool = True,
) -> Path:
    """Render and write a complete jetbot_synth dataset to ``root`` (replacing an old one).

    Everything is written into a hidden temporary folder beside ``root``, ``dataset.json`` last,
    and the folder is renamed onto ``root`` at the end: a killed run never leaves ``root``
    looking complete. Layout::

        dataset.json  camera.yaml  contact_sheet.png
        real/NNNNNN.jpg + real/manifest.jsonl      unpaired REAL frames
        sim/NNNNNN.png  + sim/manifest.jsonl       unpaired SIM frames (other states)
        val/{real,sim}/ + val/manifest.jsonl       paired: the same state rendered both ways
        test/{real,sim}/ + test/manifest.jsonl

    Args:
        root: the dataset folder.
        size: square image size.
        seed: the seed of everything (splits get independent streams).
        n_real: unpaired real training frames.
        n_sim: unpaired sim training frames.
        n_val: paired validation states.
        n_test: paired test states.
        config: the world (``size`` overrides ``config.size``).
        progress: show a progress bar.
        contact_sheet: write ``contact_sheet.png`` (test pairs, near/far/out of view).

    Returns:
        ``root`` as a Path.

    Raises:
        DatasetExistsError: ``root`` exists, is not empty and is not a jetbot_synth dataset.
    """
    root = Path(root)
    params = dataset_params(size=size, seed=seed, n_real=n_real, n_sim=n_sim, n_val=n_val,
                            n_test=n_test, config=config)
    if root.exists() and (not root.is_dir() or (
            any(root.iterdir()) and (_read_meta(root) or {}).get("name") != DATASET_NAME)):
        raise DatasetExistsError(
            f"{root} exists and is not a {DATASET_NAME} dataset (no dataset.json naming it); "
            "refusing to overwrite it: choose another --out or remove it"
        )
    cfg = _config(config, size)
    root.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(root)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        make_rig(cfg).save(tmp / "camera.yaml")
        renderer = Renderer(cfg)
        seeds = _split_seeds(seed)
        counts = params["counts"]
        total = counts["real"] + counts["sim"] + 2 * (counts["val"] + counts["test"])
        kept: dict[int, dict[str, np.ndarray]] = {}
        sheet_states: list[SceneState] = []
        sheet_actions = np.zeros((0, 2), dtype=np.float32)
        sheet_split = "test" if n_test else "val"
        with ThreadPoolExecutor(max_workers=2) as pool, \
                _progress(progress, total, f"jetbot_synth {size}px") as advance:
            for split in _SPLITS:
                states_seq, noise_seed = seeds[split]
                states = sample_states(counts[split], states_seq, cfg)
                actions = expert_actions(states, cfg)
                paired = split in ("val", "test")
                keep: set[int] = set()
                if contact_sheet and split == sheet_split:
                    keep = set(_sheet_picks(states, cfg))
                _write_split(renderer, tmp / split, states, actions,
                             ("real", "sim") if paired else (split,), noise_seed, pool, advance,
                             keep, kept)
                if keep:
                    sheet_states, sheet_actions = states, actions
        if contact_sheet and kept:
            from translate.camera import CameraCorrection

            corr = CameraCorrection(renderer.rig.real, renderer.rig.sim)
            order = sorted(kept)
            make_contact_sheet(
                [(kept[i]["sim"], kept[i]["real"], corr.apply(kept[i]["real"])) for i in order],
                tmp / "contact_sheet.png",
                labels=[_label(sheet_states[i], sheet_actions[i], cfg) for i in order],
            )
        meta = dict(params)
        meta["files"] = {
            "camera": "camera.yaml",
            "real": "real/manifest.jsonl",
            "sim": "sim/manifest.jsonl",
            "val": "val/manifest.jsonl",
            "test": "test/manifest.jsonl",
        }
        atomic_write_json(tmp / "dataset.json", meta)  # last: its presence means complete
        _swap_into_place(tmp, root, params)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _swap_into_place(tmp: Path, root: Path, params: dict[str, Any]) -> None:
    """Rename the finished ``tmp`` onto ``root``, unless another process finished the same build."""
    swap_folder_into_place(tmp, root, lambda p: _matches(_read_meta(p), params))


def ensure_dataset(
    root: str | os.PathLike[str],
    *,
    size: int = 128,
    seed: int = 0,
    n_real: int = 2000,
    n_sim: int = 2000,
    n_val: int = 200,
    n_test: int = 500,
    config: WorldConfig | None = None,
    progress: bool = True,
    contact_sheet: bool = True,
) -> Path:
    """Return ``root`` if it holds a complete dataset with these parameters, else generate it.

    A folder whose ``dataset.json`` is missing (a killed run) or differs (other size, seed,
    counts, world or generator version) is regenerated; see :func:`generate_dataset`.

    Args:
        root: the dataset folder.
        size: square image size.
        seed: the seed of everything.
        n_real: unpaired real training frames.
        n_sim: unpaired sim training frames.
        n_val: paired validation states.
        n_test: paired test states.
        config: the world.
        progress: show a progress bar when generating.
        contact_sheet: write ``contact_sheet.png`` when generating.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    params = dataset_params(size=size, seed=seed, n_real=n_real, n_sim=n_sim, n_val=n_val,
                            n_test=n_test, config=config)
    if _matches(_read_meta(root), params):
        return root
    return generate_dataset(root, size=size, seed=seed, n_real=n_real, n_sim=n_sim, n_val=n_val,
                            n_test=n_test, config=config, progress=progress,
                            contact_sheet=contact_sheet)
