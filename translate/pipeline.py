"""The robot loop: camera → correction → translator → policy → wheels, with per-stage latency."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from translate.sources import (
    CameraLostError,
    Frame,
    FrameSource,
    load_plugin,
    make_source,
    read_with_reconnect,
)

__all__ = [
    "STAGES",
    "ActionSink",
    "JetbotSink",
    "JsonlSink",
    "LatencyStats",
    "LoopResult",
    "NullSink",
    "PrintSink",
    "main",
    "make_sink",
    "run_loop",
]

log = logging.getLogger("translate.pipeline")

#: Stage names in table order. ``fused`` replaces ``translate`` + ``policy`` with a fused graph.
STAGES = ("capture", "correct", "translate", "policy", "fused", "sink", "total")


class LatencyStats:
    """Per-stage latency samples with p50 / p95 / mean summaries.

    Args:
        maxlen: samples kept per stage (the newest; 100k ≈ an hour at 30 fps).

    Example:
        >>> s = LatencyStats()
        >>> s.add("capture", 0.002); s.add("total", 0.010)
        >>> s.summary()["total"]["p50_ms"]
        10.0
    """

    def __init__(self, maxlen: int = 100_000) -> None:
        self._samples: dict[str, deque[float]] = {}
        self._maxlen = maxlen

    def add(self, stage: str, seconds: float) -> None:
        """Record one sample of ``stage`` (seconds)."""
        self._samples.setdefault(stage, deque(maxlen=self._maxlen)).append(float(seconds))

    @contextlib.contextmanager
    def time(self, stage: str) -> Iterator[None]:
        """Time the block as one sample of ``stage``."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t)

    def count(self, stage: str = "total") -> int:
        """Samples recorded for ``stage``."""
        return len(self._samples.get(stage, ()))

    def summary(self) -> dict[str, dict[str, float]]:
        """``{stage: {"n", "p50_ms", "p95_ms", "mean_ms", "max_ms"}}`` in :data:`STAGES` order."""
        out: dict[str, dict[str, float]] = {}
        names = [s for s in STAGES if s in self._samples]
        names += [s for s in self._samples if s not in STAGES]
        for name in names:
            a = np.asarray(self._samples[name], dtype=np.float64) * 1000.0
            if a.size == 0:
                continue
            out[name] = {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)),
                         "p95_ms": float(np.percentile(a, 95)), "mean_ms": float(a.mean()),
                         "max_ms": float(a.max())}
        return out

    def table(self, title: str = "latency per stage") -> str:
        """A plain-text table of :meth:`summary`, with the frame rate the total p50 allows."""
        summ = self.summary()
        lines = [f"{title}", f"{'stage':<10} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} "
                 f"{'mean ms':>8} {'max ms':>8}"]
        for name, s in summ.items():
            lines.append(f"{name:<10} {s['n']:>6d} {s['p50_ms']:>8.2f} {s['p95_ms']:>8.2f} "
                         f"{s['mean_ms']:>8.2f} {s['max_ms']:>8.2f}")
        if "total" in summ and summ["total"]["p50_ms"] > 0:
            lines.append(f"-> {1000.0 / summ['total']['p50_ms']:.1f} frames/s at the p50 total")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Action sinks
# --------------------------------------------------------------------------------------------------


class ActionSink:
    """Where actions go. ``send`` gets the clamped action, the frame and the step's record."""

    def send(self, action: np.ndarray, frame: Frame, record: dict[str, Any]) -> None:
        """Deliver one action (A,)."""

    def stop(self) -> None:
        """Bring the robot to a standstill (called when the loop ends, however it ends)."""

    def close(self) -> None:
        """Release resources."""


class NullSink(ActionSink):
    """Discard actions (latency measurements)."""


class PrintSink(ActionSink):
    """Print one line per ``every`` frames: index, action, reference action (if any), latency.

    Args:
        every: print every N-th frame.
        stream: where to print (default stdout).
    """

    def __init__(self, every: int = 1, stream: IO[str] | None = None) -> None:
        self.every = max(1, int(every))
        self.stream = stream

    def send(self, action: np.ndarray, frame: Frame, record: dict[str, Any]) -> None:
        if frame.index % self.every:
            return
        text = f"frame {frame.index:6d}  action " + " ".join(f"{a:+.3f}" for a in action)
        if frame.action is not None:
            text += "  (reference " + " ".join(f"{a:+.3f}" for a in frame.action) + ")"
        text += f"  {record.get('latency_ms', {}).get('total', float('nan')):.1f} ms"
        print(text, file=self.stream or sys.stdout, flush=True)


class JsonlSink(ActionSink):
    """Append one JSON line per frame: index, times, action, mu, reference action, latency (ms).

    Args:
        path: the log file (appended to; the folder is created).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def send(self, action: np.ndarray, frame: Frame, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class JetbotSink(ActionSink):
    """Drive the Jetbot: ``Robot.set_motors(left, right)`` from the policy's wheel commands.

    Assumption (the seed's rl_games Jetbot policy): the action is ``clamp(mu, -1, 1)`` = (left,
    right) wheel commands in [-1, 1], with ±1 the fastest the simulated wheels turn. The Jetbot's
    ``set_motors`` takes PWM duty fractions in [-1, 1]; full duty is far faster than the sim robot
    drove, so the command is scaled: ``motor = clip(action, -1, 1) * max_speed`` (0.3 by default,
    the speed the Jetbot's own examples use). ``trim`` adds a per-wheel correction for a robot
    that pulls to one side. The motors are stopped when the loop ends, however it ends.

    Args:
        max_speed: motor value for an action of 1.
        trim: (left, right) added to the motor values.
        robot: an object with ``set_motors(left, right)`` and ``stop()`` (default
            ``jetbot.Robot()``).
    """

    def __init__(self, max_speed: float = 0.3, trim: tuple[float, float] = (0.0, 0.0),
                 robot: Any = None) -> None:
        if not 0.0 < max_speed <= 1.0:
            raise ValueError(f"max_speed must be in (0, 1], got {max_speed}")
        if robot is None:
            try:
                from jetbot import Robot
            except ImportError as exc:
                raise ImportError(
                    "the jetbot sink needs the jetbot package (on the robot: pip install -e "
                    "jetbot from NVIDIA-AI-IOT/jetbot); use --sink print or jsonl:PATH elsewhere"
                ) from exc
            robot = Robot()
        self.robot = robot
        self.max_speed = float(max_speed)
        self.trim = (float(trim[0]), float(trim[1]))

    def motor_values(self, action: np.ndarray | Sequence[float]) -> tuple[float, float]:
        """The (left, right) motor values for an action."""
        if np.asarray(action).size < 2:
            raise ValueError(f"the jetbot sink needs (left, right) actions, got {action!r}")
        a = np.clip(np.asarray(action, np.float64)[:2], -1.0, 1.0) * self.max_speed
        left = float(np.clip(a[0] + self.trim[0], -1.0, 1.0))
        right = float(np.clip(a[1] + self.trim[1], -1.0, 1.0))
        return left, right

    def send(self, action: np.ndarray, frame: Frame, record: dict[str, Any]) -> None:
        left, right = self.motor_values(action)
        record["motors"] = [left, right]
        self.robot.set_motors(left, right)

    def stop(self) -> None:
        self.robot.stop()


class _MultiSink(ActionSink):
    def __init__(self, sinks: Sequence[ActionSink]) -> None:
        self.sinks = list(sinks)

    def send(self, action: np.ndarray, frame: Frame, record: dict[str, Any]) -> None:
        for s in self.sinks:
            s.send(action, frame, record)

    def stop(self) -> None:
        for s in self.sinks:
            with contextlib.suppress(Exception):
                s.stop()

    def close(self) -> None:
        for s in self.sinks:
            with contextlib.suppress(Exception):
                s.close()


def make_sink(spec: str, *, max_speed: float = 0.3, print_every: int = 1) -> ActionSink:
    """Build a sink from ``print``, ``none``, ``jsonl:PATH`` or ``jetbot``."""
    kind, _, arg = spec.partition(":")
    if kind == "print":
        return PrintSink(every=print_every)
    if kind in ("none", "null"):
        return NullSink()
    if kind == "jsonl":
        if not arg:
            raise ValueError("the jsonl sink needs a path: --sink jsonl:actions.jsonl")
        return JsonlSink(arg)
    if kind == "jetbot":
        return JetbotSink(max_speed=max_speed)
    raise ValueError(f"unknown action sink {spec!r}; use print, none, jsonl:PATH or jetbot")


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


@dataclass
class LoopResult:
    """What :func:`run_loop` returns.

    Args:
        frames: frames processed.
        status: ``complete`` (end of stream or limit), ``interrupted`` (signal) or
            ``camera_lost``.
        stats: the latency samples.
        seconds: wall time of the loop.
        actions: the actions sent (kept when ``keep_actions``), (N, A).
    """

    frames: int
    status: str
    stats: LatencyStats
    seconds: float
    actions: list[np.ndarray] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Frames per second over the run."""
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


class _Signals:
    """SIGINT/SIGTERM set ``stop``; SIGUSR1 sets ``report``. Restores the old handlers."""

    def __init__(self) -> None:
        self.stop = False
        self.report = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self

        def on_stop(signum: int, _frame: Any) -> None:
            if self.stop:  # a second Ctrl-C: leave now
                raise KeyboardInterrupt
            self.stop = True

        def on_report(signum: int, _frame: Any) -> None:
            self.report = True

        for sig, handler in ((signal.SIGINT, on_stop), (signal.SIGTERM, on_stop),
                             (getattr(signal, "SIGUSR1", None), on_report)):
            if sig is not None:
                self._old[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run_loop(
    source: FrameSource,
    *,
    policy: Any = None,
    translator: Any = None,
    fused: Any = None,
    correction: Any = None,
    sink: ActionSink | None = None,
    frames: int | None = None,
    duration: float | None = None,
    stats_every: int = 0,
    reconnect_tries: int = 5,
    reconnect_backoff_s: float = 0.5,
    keep_actions: bool = False,
    out: Callable[[str], None] | None = None,
) -> LoopResult:
    """Run camera → correction → translator → policy → sink until the stream ends or a limit.

    Either ``fused`` (a :class:`translate.runtime.FusedPolicy`) or ``policy`` (a
    :class:`translate.policy.Policy`) with an optional ``translator``
    (:class:`translate.runtime.Translator`; None runs the policy on the raw, or only
    ``correction``-corrected, frames: the baseline). Sources deliver RGB; give the translator
    ``input_channel_order="RGB"``.

    The latency table (p50 / p95 / mean per stage) is printed at the end, every ``stats_every``
    frames, and when the process gets SIGUSR1 (``kill -USR1 PID``). SIGINT / SIGTERM end the loop
    after the current frame; the sink's ``stop`` (motors off) runs however the loop ends.

    Args:
        source: the frame source.
        policy: the frozen policy.
        translator: the translator, or None.
        fused: a fused translator + policy graph (instead of ``policy`` / ``translator``).
        correction: a :class:`translate.camera.CameraCorrection` for the no-translator baseline.
        sink: where actions go (default :class:`NullSink`).
        frames: stop after this many frames.
        duration: stop after this many seconds.
        stats_every: print the table every N frames (0: only at the end and on SIGUSR1).
        reconnect_tries: camera reconnect attempts before giving up.
        reconnect_backoff_s: first wait between attempts (doubling, up to 4 s).
        keep_actions: keep every action in the result.
        out: where the tables go (default: print to stdout).

    Returns:
        A :class:`LoopResult`.
    """
    if fused is None and policy is None:
        raise ValueError("run_loop needs a policy (and optionally a translator) or a fused graph")
    emit = out or (lambda s: print(s, flush=True))
    sink = sink or NullSink()
    stats = LatencyStats()
    kept: list[np.ndarray] = []
    n = 0
    status = "complete"
    t_start = time.monotonic()
    perf = time.perf_counter
    try:
        with _Signals() as sig, source:
            while True:
                if sig.stop:
                    status = "interrupted"
                    break
                if frames is not None and n >= frames:
                    break
                if duration is not None and time.monotonic() - t_start >= duration:
                    break
                t0 = perf()
                try:
                    frame = read_with_reconnect(source, tries=reconnect_tries,
                                                backoff_s=reconnect_backoff_s,
                                                should_stop=lambda: sig.stop)
                except CameraLostError as exc:
                    sink.stop()
                    emit(f"camera lost: {exc}")
                    status = "camera_lost"
                    break
                if frame is None:
                    break
                t1 = perf()
                lat: dict[str, float] = {"capture": t1 - t0}
                if fused is not None:
                    x = fused.correct(frame.image)
                    t2 = perf()
                    outs = fused.run_corrected(x)
                    t3 = perf()
                    action = np.asarray(outs[fused.action_output], np.float32)[0]
                    mu = None
                    lat.update(correct=t2 - t1, fused=t3 - t2)
                else:
                    img = frame.image
                    if translator is not None:
                        x = translator.correct(img)
                        t2 = perf()
                        sim = translator.run_corrected(x)[0]
                        t3 = perf()
                        lat.update(correct=t2 - t1, translate=t3 - t2)
                    else:
                        sim = correction.apply(img) if correction is not None else img
                        t3 = perf()
                        lat.update(correct=t3 - t1)
                    res = policy.run(sim)
                    action = res.action[0]
                    mu = res.mu[0]
                    lat["policy"] = perf() - t3
                t4 = perf()
                record: dict[str, Any] = {
                    "index": frame.index, "t_wall": frame.t_wall,
                    "action": [float(a) for a in action],
                }
                if mu is not None:
                    record["mu"] = [float(a) for a in mu]
                if frame.action is not None:
                    record["reference_action"] = list(frame.action)
                record["latency_ms"] = {k: round(v * 1000, 3) for k, v in lat.items()}
                record["latency_ms"]["total"] = round((t4 - t0) * 1000, 3)
                sink.send(action, frame, record)
                t5 = perf()
                lat.update(sink=t5 - t4, total=t5 - t0)
                for k, v in lat.items():
                    stats.add(k, v)
                if keep_actions:
                    kept.append(np.asarray(action, np.float32))
                n += 1
                if sig.report or (stats_every and n % stats_every == 0):
                    sig.report = False
                    emit(stats.table(f"latency after {n} frames"))
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        with contextlib.suppress(Exception):
            sink.stop()
        sink.close()
    seconds = time.monotonic() - t_start
    result = LoopResult(frames=n, status=status, stats=stats, seconds=seconds, actions=kept)
    emit(stats.table(f"latency over {n} frames ({status}, {result.fps:.1f} frames/s overall)"))
    return result


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m translate.pipeline",
        description="The robot loop: camera -> correction -> translator -> policy -> action sink, "
                    "with per-stage latency (p50/p95/mean) at the end, every --stats-every "
                    "frames and on SIGUSR1.",
    )
    p.add_argument("--translator", default=None,
                   help="translator_robot.onnx or translator.onnx; 'none' runs the policy on raw "
                        "frames (the baseline)")
    p.add_argument("--fused", default=None,
                   help="a fused translator+policy graph (python -m translate.fusion ...) "
                        "instead of --translator/--policy")
    p.add_argument("--policy", default=None, help="the frozen policy (.onnx or TorchScript)")
    p.add_argument("--spec", default=None,
                   help="policy spec: preset name or YAML (default: policy_spec.yaml next to it)")
    p.add_argument("--source", default="csi",
                   help="csi[:SENSOR_ID], usb:INDEX|/dev/videoN, video:PATH, folder:PATH, "
                        "session:PATH, synth[:SEED] (with --plugin datasets.jetbot_synth.source)")
    p.add_argument("--plugin", action="append", default=[],
                   help="import a module that registers frame sources (repeatable)")
    p.add_argument("--width", type=int, default=None,
                   help="frame width from the source (default: the translator's input size)")
    p.add_argument("--height", type=int, default=None, help="frame height (see --width)")
    p.add_argument("--fps", type=int, default=30, help="camera frame rate (csi/usb)")
    p.add_argument("--flip-method", type=int, default=0, help="CSI nvvidconv flip-method")
    p.add_argument("--camera", default=None,
                   help="camera.yaml: lens correction for the --translator none baseline")
    p.add_argument("--frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    p.add_argument("--sink", action="append", default=None,
                   help="print | none | jsonl:PATH | jetbot (repeatable; default print)")
    p.add_argument("--print-every", type=int, default=1, help="print sink: every N-th frame")
    p.add_argument("--max-speed", type=float, default=0.3,
                   help="jetbot sink: motor value for a wheel action of 1 (default 0.3)")
    p.add_argument("--providers", default=None,
                   help="comma-separated onnxruntime providers (default TensorRT,CUDA,CPU by "
                        "availability)")
    p.add_argument("--fp16", action="store_true", help="TensorRT fp16 engines")
    p.add_argument("--trt-cache", default=None, help="TensorRT engine cache folder")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    p.add_argument("--stats-every", type=int, default=0,
                   help="print the latency table every N frames (0: end and SIGUSR1 only)")
    p.add_argument("--reconnect-tries", type=int, default=5)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``python -m translate.pipeline --help``); returns the exit code.

    argparse, not Hydra: the robot may have only numpy, onnxruntime, pillow and pyyaml (plus
    OpenCV for cameras and the ``jetbot`` package for motors). Exit codes: 0 ok, 2 bad
    arguments, 3 camera lost.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _main(args)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        # an unknown source, frames of the wrong size, a missing file or module: its own line
        print(f"python -m translate.pipeline: error: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    from translate.policy import load_policy
    from translate.runtime import FusedPolicy, Translator

    for plugin in args.plugin:
        load_plugin(plugin)
    providers = args.providers.split(",") if args.providers else None
    ort_kw: dict[str, Any] = {"providers": providers, "threads": args.threads,
                              "fp16": args.fp16, "trt_cache_dir": args.trt_cache}
    translator = fused = policy = correction = None
    if args.fused:
        if args.translator or args.policy:
            print("error: give --fused, or --translator/--policy, not both", file=sys.stderr)
            return 2
        fused = FusedPolicy.from_onnx(args.fused, input_channel_order="RGB", **ort_kw)
        size = fused.input_size
        print(f"fused graph {args.fused}: providers {fused.providers}")
    else:
        if not args.policy:
            print("error: --policy is required (or --fused)", file=sys.stderr)
            return 2
        policy_providers = providers if providers else None
        policy = load_policy(args.policy, args.spec, providers=policy_providers)
        size = policy.input_size
        if args.translator and args.translator.lower() != "none":
            translator = Translator.from_onnx(args.translator, input_channel_order="RGB", **ort_kw)
            size = translator.input_size or translator.output_size
            print(f"translator {args.translator} ({translator.variant}): providers "
                  f"{translator.providers}")
        elif args.camera:
            from translate.camera import CameraCorrection

            correction = CameraCorrection.from_yaml(args.camera)
            size = correction.in_size
        print(f"policy {args.policy}: {policy!r}")
    h, w = size if size is not None else (224, 224)
    width = args.width or w
    height = args.height or h
    kwargs: dict[str, Any] = {"width": width, "height": height}
    kind = args.source.partition(":")[0]
    if kind in ("csi", "usb"):
        kwargs["fps"] = args.fps
    if kind == "csi":
        kwargs["flip_method"] = args.flip_method
    if correction is not None and (height, width) != correction.in_size:
        ch, cw = correction.in_size
        raise ValueError(
            f"--width {width} --height {height} but the real camera in {args.camera} is {cw}x{ch}: "
            "frames must have the size the camera was calibrated at (drop --width/--height, or "
            "make camera.yaml at that size: python -m translate.calibrate ... --size W H)")
    source = make_source(args.source, **kwargs)
    sinks = [make_sink(s, max_speed=args.max_speed, print_every=args.print_every)
             for s in (args.sink or ["print"])]
    sink = sinks[0] if len(sinks) == 1 else _MultiSink(sinks)
    print(f"source {source.describe()} at {width}x{height}; pid {os.getpid()} "
          "(kill -USR1 it for the latency table)")
    result = run_loop(source, policy=policy, translator=translator, fused=fused,
                      correction=correction, sink=sink, frames=args.frames,
                      duration=args.duration, stats_every=args.stats_every,
                      reconnect_tries=args.reconnect_tries)
    return 3 if result.status == "camera_lost" else 0


if __name__ == "__main__":
    sys.exit(main())
