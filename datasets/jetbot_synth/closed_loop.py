"""Closed-loop evaluation core: drive jetbot_synth episodes with policy(stage(frame)) per stage and score them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datasets.jetbot_synth.drive import (
    OUTCOMES,
    DriveConfig,
    EpisodeLog,
    StartState,
    expert_actor,
    run_episodes,
)
from datasets.jetbot_synth.render import Renderer
from datasets.jetbot_synth.world import SceneState, WorldConfig, expert_action
from translate.camera import CameraCorrection
from translate.eval_translators import TranslatorOutputError, resize_frames
from translate.metrics import (
    action_jitter,
    bootstrap_ci,
    gap_closed,
    mean_abs_change,
    turn_agreement,
    wilson_interval,
)
from translate.policy import Policy
from translate.recording import RecordingSession

__all__ = [
    "STAGE_KINDS",
    "ClosedLoopResult",
    "ClosedLoopSettings",
    "StageRun",
    "StageSpec",
    "build_stages",
    "run_closed_loop",
    "session_temporal",
    "summarise",
]

#: Stage kinds, in report order. ``expert`` acts on the true state (no camera): the ceiling.
STAGE_KINDS: tuple[str, ...] = ("expert", "raw", "corrected", "translated", "sim")


@dataclass(frozen=True)
class StageSpec:
    """One row of the closed-loop report.

    Args:
        name: unique key (``raw``, ``corrected``, ``translated:<name>``, ``sim``, ``expert``).
        kind: one of :data:`STAGE_KINDS`.
        label: what the report prints.
        translator: the translator (``translated`` only): a callable on uint8 NHWC RGB frames
            with a ``name`` (``translate.eval_translators.OnnxTranslator`` = the robot's runtime).
    """

    name: str
    kind: str
    label: str
    translator: Any = None


@dataclass(frozen=True)
class ClosedLoopSettings:
    """How the episodes are run and scored.

    Args:
        noise_seed: seed of the real camera's sensor noise.
        jpeg: JPEG round trip the real frames, as recorded frames are (translators were trained
            on such frames).
        gif_episode: the episode whose frames go into each stage's GIF (None: none).
        gif_every: keep every k-th step of it.
        bootstrap_n: resamples of the gap-closed interval (over episodes; 0 = none).
        bootstrap_seed: their seed.
        level: interval coverage.
        dead_zone: turn-direction dead zone for the on-path turn agreement.
        batch_size: frames per translator / policy call.
        pipeline_chunks: split each step's batch into this many chunks, each rendered, translated
            and acted on whole by one of ``workers`` threads (1 = the whole batch at once, in the
            calling thread).
        workers: threads that process chunks at the same time (the cores to use).
        progress: print a line per stage.
    """

    noise_seed: int = 0
    jpeg: bool = True
    gif_episode: int | None = 0
    gif_every: int = 2
    bootstrap_n: int = 1000
    bootstrap_seed: int = 0
    level: float = 0.95
    dead_zone: float = 0.05
    batch_size: int = 128
    pipeline_chunks: int = 4
    workers: int = 2
    progress: bool = True


@dataclass
class StageRun:
    """One stage's episodes and temporal statistics.

    Attributes:
        spec: the stage.
        log: the episodes (:class:`datasets.jetbot_synth.drive.EpisodeLog`).
        out_change: sum over consecutive steps of the policy input's mean |change| (0–255).
        in_change: the same for the stage's input (raw frames for ``corrected``, the
            translator's input for ``translated``).
        n_changes: number of consecutive-step pairs summed.
        agree: per visited step, whether the policy's turn matches the expert's on that state.
        gif: ``(camera frame, policy input)`` pairs of the GIF episode.
        seconds: wall time of the stage.
        timing: seconds per part (render, correct, translate, policy, drive).
    """

    spec: StageSpec
    log: EpisodeLog
    out_change: float = 0.0
    in_change: float = 0.0
    n_changes: int = 0
    agree: list[np.ndarray] = field(default_factory=list)
    gif: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    seconds: float = 0.0
    timing: dict[str, float] = field(default_factory=dict)


@dataclass
class ClosedLoopResult:
    """Every stage's run plus the summary (:func:`summarise`).

    Attributes:
        starts: the episodes' start states.
        runs: per stage, in report order.
        metrics: the summary (JSON-ready).
    """

    starts: list[StartState]
    runs: list[StageRun]
    metrics: dict[str, Any]


def build_stages(kinds: Sequence[str], translators: Sequence[Any],
                 camera: CameraCorrection | None) -> list[StageSpec]:
    """The stage rows for the wanted kinds: one ``translated`` row per translator.

    Args:
        kinds: subset of :data:`STAGE_KINDS` (any order; reported in :data:`STAGE_KINDS` order).
        translators: the translators (each with a ``name``).
        camera: the lens correction (None: no ``corrected`` row).

    Returns:
        The stage specs.

    Raises:
        ValueError: an unknown kind (the message lists the valid ones).
    """
    bad = [k for k in kinds if k not in STAGE_KINDS]
    if bad:
        raise ValueError(f"closed_loop.stages: unknown stage(s) {bad}; valid: {list(STAGE_KINDS)}")
    out: list[StageSpec] = []
    for k in STAGE_KINDS:
        if k not in kinds:
            continue
        if k == "expert":
            out.append(StageSpec("expert", "expert", "expert (true state)"))
        elif k == "raw":
            out.append(StageSpec("raw", "raw", "raw real"))
        elif k == "corrected" and camera is not None:
            out.append(StageSpec("corrected", "corrected", "lens-corrected real"))
        elif k == "translated":
            out += [StageSpec(f"translated:{t.name}", "translated", f"translated ({t.name})", t)
                    for t in translators]
        elif k == "sim":
            out.append(StageSpec("sim", "sim", "sim (oracle)"))
    return out


class _StageActor:
    """``policy(stage(camera frame))`` for a batch of episodes, with temporal bookkeeping."""

    def __init__(self, run: StageRun, renderer: Renderer, policy: Policy,
                 camera: CameraCorrection | None, settings: ClosedLoopSettings,
                 max_steps: int) -> None:
        self.run, self.renderer, self.policy = run, renderer, policy
        self.camera, self.s, self.max_steps = camera, settings, max_steps
        self.world = renderer.config
        self.prev_in: dict[int, np.ndarray] = {}
        self.prev_out: dict[int, np.ndarray] = {}
        self.pool: ThreadPoolExecutor | None = None

    def _timed(self, key: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.run.timing[key] = self.run.timing.get(key, 0.0) + t1 - t0
        return t1

    def __call__(self, ids: np.ndarray, states: list[SceneState], t: int) -> np.ndarray:
        # The step's batch in chunks, each rendered, corrected, translated and run through the
        # policy by one of the pool's workers: torch (render) and onnxruntime (translator,
        # policy) release the GIL, so with two workers every core is busy with a whole chunk
        # (rendering the next chunk beside translating the last one left the renderer idle half
        # the time: the translator costs more than the render). Chunks are independent (the
        # noise is keyed by episode and step), so any chunking gives the same frames.
        k = max(1, min(self.s.pipeline_chunks, len(ids)))
        bounds = np.linspace(0, len(ids), k + 1).round().astype(int)

        def chunk(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
            lo, hi = int(bounds[c]), int(bounds[c + 1])
            t0 = time.perf_counter()
            cam = self._render(ids[lo:hi], states[lo:hi], t)
            rendered = time.perf_counter() - t0
            inp, x, a, timing = self._tail(cam)
            return cam, inp, x, a, {"render": rendered, **timing}

        parts = list(self.pool.map(chunk, range(k))) if self.pool is not None and k > 1 \
            else [chunk(c) for c in range(k)]
        for p in parts:
            for key, v in p[4].items():
                self.run.timing[key] = self.run.timing.get(key, 0.0) + v
        cam, inp, x, a = (np.concatenate([p[i] for p in parts]) for i in range(4))
        t0 = time.perf_counter()
        self._bookkeep(ids, states, cam, inp, x, a)
        self._timed("metrics", t0)
        return a

    def _render(self, ids: np.ndarray, states: list[SceneState], t: int) -> np.ndarray:
        if self.run.spec.kind == "sim":
            return self.renderer.render(states, "sim")
        # noise keyed by (episode, step): an episode's frames do not depend on its batch
        frame_ids = (ids * (self.max_steps + 1) + t).tolist()
        return self.renderer.render(states, "real", self.s.noise_seed, jpeg=self.s.jpeg,
                                    frame_ids=frame_ids)

    def _tail(self, cam: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
        """camera frames -> (stage input, policy input, actions, seconds per part)."""
        spec, s = self.run.spec, self.s
        timing: dict[str, float] = {}
        t0 = time.perf_counter()

        def lap(key: str) -> None:
            nonlocal t0
            t1 = time.perf_counter()
            timing[key] = timing.get(key, 0.0) + t1 - t0
            t0 = t1

        inp = x = cam
        wants_correction = spec.kind == "corrected" or (
            spec.kind == "translated" and not getattr(spec.translator, "takes_raw", False))
        if wants_correction and self.camera is not None:
            x = self.camera.apply(resize_frames(cam, self.camera.in_size))
            lap("correct")
        if spec.kind == "translated":
            inp = x
            size = getattr(spec.translator, "input_size", None)
            x = self._translate(resize_frames(x, size) if size else x)
            lap("translate")
        size = self.policy.input_size
        x = resize_frames(x, size) if size else x
        a = self.policy.act(x, batch_size=s.batch_size).astype(np.float64)
        lap("policy")
        return inp, x, a, timing

    def _translate(self, frames: np.ndarray) -> np.ndarray:
        name = self.run.spec.name
        out = self.run.spec.translator(frames)
        if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.ndim != 4 \
                or len(out) != len(frames) or out.shape[-1] != 3:
            shape = getattr(out, "shape", None)
            raise TranslatorOutputError(f"translator {name!r} returned {type(out).__name__} "
                                        f"{shape}; expected uint8 ({len(frames)}, H, W, 3)")
        return out

    def _bookkeep(self, ids: np.ndarray, states: list[SceneState], cam: np.ndarray,
                  inp: np.ndarray, out: np.ndarray, a: np.ndarray) -> None:
        run, s = self.run, self.s
        ref = np.stack([expert_action(st, self.world) for st in states])
        run.agree.append(turn_agreement(a, ref, s.dead_zone))
        have = [k for k, i in enumerate(ids.tolist()) if i in self.prev_out]
        if have:
            prev_o = np.stack([self.prev_out[int(ids[k])] for k in have])
            prev_i = np.stack([self.prev_in[int(ids[k])] for k in have])
            run.out_change += float(mean_abs_change(prev_o, out[have]).sum())
            run.in_change += float(mean_abs_change(prev_i, inp[have]).sum())
            run.n_changes += len(have)
        for k, i in enumerate(ids.tolist()):
            self.prev_out[i], self.prev_in[i] = out[k], inp[k]
            if i == s.gif_episode:
                run.gif.append((cam[k], out[k]))


def run_closed_loop(
    stages: Sequence[StageSpec],
    policy: Policy | None,
    starts: Sequence[StartState],
    world: WorldConfig,
    drive: DriveConfig,
    *,
    camera: CameraCorrection | None = None,
    settings: ClosedLoopSettings | None = None,
    renderer: Renderer | None = None,
) -> ClosedLoopResult:
    """Drive the same episodes once per stage and summarise them.

    Every stage starts from the same start states and sees the same camera noise at the same
    (episode, step); the episodes of a stage are stepped together (one render, translator and
    policy batch per step).

    Args:
        stages: the rows (:func:`build_stages`).
        policy: the frozen sim policy (not needed for an expert-only run).
        starts: the episodes (:func:`datasets.jetbot_synth.drive.start_states`).
        world: the world the frames are rendered in (the policy's dataset world).
        drive: kinematics and episode rules.
        camera: the lens correction for ``corrected`` and translators that take corrected frames.
        settings: run and scoring settings.
        renderer: a renderer of ``world`` to reuse.

    Returns:
        A :class:`ClosedLoopResult`.
    """
    s = settings or ClosedLoopSettings()
    renderer = renderer or Renderer(world)
    runs: list[StageRun] = []
    for spec in stages:
        t0 = time.perf_counter()
        run = StageRun(spec, EpisodeLog(np.zeros((0, 1, 3)), np.zeros((0, 0, 2)),
                                        np.zeros(0, np.int64), [], np.zeros(0), np.zeros(0)))
        if spec.kind == "expert":
            log = run_episodes(starts, expert_actor(world), drive)
        else:
            if policy is None:
                raise ValueError(f"stage {spec.name} needs a policy")
            actor = _StageActor(run, renderer, policy, camera, s, drive.max_steps)
            with ThreadPoolExecutor(max(1, s.workers), thread_name_prefix="closed-loop") as pool:
                actor.pool = pool if s.pipeline_chunks > 1 and s.workers > 1 else None
                log = run_episodes(starts, actor, drive)
        run.log = log
        run.seconds = time.perf_counter() - t0
        runs.append(run)
        if s.progress:
            n = len(starts)
            print(f"[closed loop] {spec.label}: {int(log.success.sum())}/{n} reached the Kong, "
                  f"{int(log.steps.sum())} steps in {run.seconds:.1f} s", flush=True)
    return ClosedLoopResult(list(starts), runs, summarise(runs, list(starts), s))


def _rate(k: int, n: int, level: float) -> dict[str, Any]:
    ci = wilson_interval(k, n, level)
    return {"value": k / n if n else None, "k": k, "n": n, "ci": list(ci) if ci else None}


def summarise(runs: Sequence[StageRun], starts: Sequence[StartState],
              settings: ClosedLoopSettings) -> dict[str, Any]:
    """Per stage: success with a Wilson interval, per category, collisions, time to success,
    path length, closed-loop gap closed (bootstrap over episodes), action jitter, flicker.

    Gap closed is ``(success_stage − success_raw) / (success_sim − success_raw)``:
    :func:`translate.metrics.gap_closed` on failure rates. Flicker is the mean |change| of the
    policy input between consecutive steps divided by the stage input's own change.

    Args:
        runs: the stages' runs.
        starts: the episodes.
        settings: interval settings.

    Returns:
        JSON-ready dict: ``{"episodes", "categories", "stages": [...]}``.
    """
    cats = sorted({st.category for st in starts})
    by_name = {r.spec.name: r for r in runs}
    raw = by_name.get("raw")
    sim = by_name.get("sim")
    out_stages = []
    for r in runs:
        log, n = r.log, len(starts)
        succ = log.success
        m: dict[str, Any] = {"name": r.spec.name, "kind": r.spec.kind, "label": r.spec.label}
        m["success"] = _rate(int(succ.sum()), n, settings.level)
        m["outcomes"] = {o: int(sum(x == o for x in log.outcome)) for o in OUTCOMES}
        m["collision_rate"] = m["outcomes"]["collision"] / n if n else None
        m["by_category"] = {
            c: _rate(int(sum(succ[i] for i, st in enumerate(starts) if st.category == c)),
                     sum(st.category == c for st in starts), settings.level)
            for c in cats
        }
        tts = log.steps[succ].astype(np.float64)
        m["time_to_success_s"] = (float(tts.mean()) * _dt(log) if len(tts) else None)
        m["steps"] = int(log.steps.sum())
        m["path_length_m"] = float(log.path_length.mean()) if n else None
        # pooled over every consecutive pair of steps: episodes weighted by their pairs
        pairs = [(action_jitter(log.actions[i, : log.steps[i]]), int(log.steps[i]) - 1)
                 for i in range(n) if log.steps[i] >= 2]
        m["action_jitter"] = (sum(j * k for j, k in pairs) / sum(k for _, k in pairs)
                              if pairs else None)
        m["frame_change"] = r.out_change / r.n_changes if r.n_changes else None
        m["flicker"] = (r.out_change / r.in_change if r.spec.kind in ("corrected", "translated")
                        and r.in_change > 0 else None)
        agree = np.concatenate(r.agree) if r.agree else np.zeros(0, bool)
        m["turn_agreement_on_path"] = float(agree.mean()) if len(agree) else None
        m["gap_closed"] = _gap(r, raw, sim, settings)
        m["seconds"] = round(r.seconds, 3)
        m["timing"] = {k: round(v, 3) for k, v in r.timing.items()}
        out_stages.append(m)
    return {"episodes": len(starts), "categories": {c: sum(st.category == c for st in starts)
                                                     for c in cats}, "stages": out_stages}


def _dt(log: EpisodeLog) -> float:
    return float(log.info.get("dt", 1.0))


def _gap(r: StageRun, raw: StageRun | None, sim: StageRun | None,
         settings: ClosedLoopSettings) -> dict[str, Any]:
    if r.spec.kind not in ("corrected", "translated"):
        return {"value": None, "reason": "reference stage" if r.spec.kind in ("raw", "sim")
                else "not a camera stage", "ci": None}
    if raw is None or sim is None:
        return {"value": None, "reason": "needs the raw and sim stages", "ci": None}
    fr, fs, fx = (1.0 - x.log.success.astype(np.float64) for x in (raw, sim, r))
    value, reason = gap_closed(float(fr.mean()), float(fx.mean()), float(fs.mean()))
    ci = None
    if value is not None and settings.bootstrap_n > 0:
        def stat(idx: np.ndarray) -> np.ndarray:
            a, b, c = fr[idx].mean(1), fx[idx].mean(1), fs[idx].mean(1)
            gap = a - c
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(np.abs(gap) > 1e-9, (a - b) / gap, np.nan)
        ci = bootstrap_ci(stat, len(fr), n_resamples=settings.bootstrap_n,
                          seed=settings.bootstrap_seed, level=settings.level)
    return {"value": value, "reason": reason, "ci": list(ci) if ci else None}


def session_temporal(
    session: RecordingSession,
    stages: Sequence[StageSpec],
    policy: Policy,
    camera: CameraCorrection | None,
    *,
    max_frames: int | None = None,
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """Flicker and action jitter of each camera stage on a recorded session's consecutive frames.

    Args:
        session: the recording (frames in manifest order = time order).
        stages: the stages (``raw``, ``corrected``, ``translated`` are scored; others skipped).
        policy: the frozen policy.
        camera: the lens correction.
        max_frames: the first N frames only.
        batch_size: frames per call.

    Returns:
        Per stage: ``name``, ``frames``, ``frame_change``, ``flicker`` (policy input change /
        stage input change), ``action_jitter``.
    """
    n = len(session) if max_frames is None else min(len(session), int(max_frames))
    if n < 2:
        raise ValueError(f"{session.root}: a session needs >= 2 frames for temporal metrics, "
                         f"has {n}")
    raw = np.stack([session.load_frame(i) for i in range(n)])
    out = []
    for spec in stages:
        if spec.kind not in ("raw", "corrected", "translated"):
            continue
        inp = x = raw
        if spec.kind in ("corrected", "translated") and camera is not None and not (
                spec.kind == "translated" and getattr(spec.translator, "takes_raw", False)):
            x = camera.apply(resize_frames(raw, camera.in_size))
        if spec.kind == "translated":
            inp = x
            size = getattr(spec.translator, "input_size", None)
            x = np.concatenate([spec.translator(resize_frames(x[i:i + batch_size], size)
                                                if size else x[i:i + batch_size])
                                for i in range(0, n, batch_size)])
        size = policy.input_size
        xp = resize_frames(x, size) if size else x
        a = policy.act(xp, batch_size=batch_size)
        oc = mean_abs_change(xp[:-1], xp[1:]).sum()
        ic = mean_abs_change(inp[:-1], inp[1:]).sum()
        out.append({"name": spec.name, "label": spec.label, "frames": n,
                    "frame_change": float(oc / (n - 1)),
                    "flicker": float(oc / ic) if spec.kind != "raw" and ic > 0 else None,
                    "action_jitter": action_jitter(a)})
    return out
