"""Evaluation stages (raw, corrected, translated:<name>, sim) turn a chunk of frames into what the policy sees."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from translate.camera import CameraCorrection
from translate.eval_translators import Translator, check_output, resize_frames
from translate.policy import Policy

__all__ = [
    "Chunk",
    "CorrectedStage",
    "PolicyRunner",
    "RawStage",
    "SimStage",
    "Stage",
    "TranslatedStage",
    "build_stages",
    "fit",
]


@dataclass
class Chunk:
    """One chunk of frames on its way through the stages; what every accumulator reads.

    Attributes:
        index: the frames' positions in the evaluation set, (N,).
        raw: the real frames, or None in a chunk of the unpaired sim reference set.
        sim: the paired sim frames, or None.
        frames: stage name → the frames that stage shows the policy.
        inputs: translated stage name → the frames its translator was given.
        policy_frames: stage name → its frames at the policy's input size.
        actions: stage name → the policy's actions, float64 (N, A).
        features: stage name → the policy's penultimate features (N, F), when it gives them.
        reference: the reference actions (N, A) (manifest, session, else the policy on the
            paired sim frames), or None.
        reference_set: a chunk of the unpaired sim reference set (``sim_data``), not of the
            evaluation set.

    Shape:
        - raw, sim, frames: :math:`(N, H, W, 3)` uint8 RGB.
    """

    index: list[int]
    raw: np.ndarray | None = None
    sim: np.ndarray | None = None
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    policy_frames: dict[str, np.ndarray] = field(default_factory=dict)
    actions: dict[str, np.ndarray] = field(default_factory=dict)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    reference: np.ndarray | None = None
    reference_set: bool = False


class Stage:
    """One row of the evaluation: the frames of a chunk it shows the policy.

    Args:
        name: the row's id in ``metrics.json`` (``raw``, ``corrected``, ``translated:<name>``,
            ``sim``).
        label: the row's label in tables.
    """

    kind = "stage"
    translator: Translator | None = None

    def __init__(self, name: str, label: str) -> None:
        self.name = name
        self.label = label
        self.notes: list[str] = []
        self.size: tuple[int, int] | None = None
        self.seconds = 0.0

    def note(self, text: str) -> None:
        """Record what happened to the stage's frames (once per text)."""
        if text not in self.notes:
            self.notes.append(text)

    def frames(self, chunk: Chunk, timing: dict[str, float]) -> np.ndarray:
        """The chunk's frames at this stage, (N, H, W, 3) uint8; earlier stages' are in
        ``chunk.frames``. ``timing`` accumulates seconds by part."""
        raise NotImplementedError


class RawStage(Stage):
    """The raw real frames."""

    kind = "raw"

    def __init__(self) -> None:
        super().__init__("raw", "raw real")

    def frames(self, chunk: Chunk, timing: dict[str, float]) -> np.ndarray:
        assert chunk.raw is not None
        return chunk.raw


class CorrectedStage(Stage):
    """The real frames through the lens correction."""

    kind = "corrected"

    def __init__(self, camera: CameraCorrection) -> None:
        super().__init__("corrected", "lens-corrected real")
        self.camera = camera

    def frames(self, chunk: Chunk, timing: dict[str, float]) -> np.ndarray:
        assert chunk.raw is not None
        t0 = time.perf_counter()
        out = self.camera.apply(fit(self, chunk.raw, self.camera.in_size, "the camera correction"))
        timing["correct"] = timing.get("correct", 0.0) + time.perf_counter() - t0
        return out


class TranslatedStage(Stage):
    """The corrected (or, for ``takes_raw`` translators, raw) frames through a translator."""

    kind = "translated"

    def __init__(self, translator: Translator) -> None:
        super().__init__(f"translated:{translator.name}", f"translated ({translator.name})")
        self.translator = translator

    def frames(self, chunk: Chunk, timing: dict[str, float]) -> np.ndarray:
        t = self.translator
        assert t is not None and chunk.raw is not None
        takes_raw = getattr(t, "takes_raw", False)
        if takes_raw:
            self.note("fed raw real frames: the lens correction is inside the translator")
        src = chunk.raw if takes_raw else chunk.frames.get("corrected", chunk.raw)
        src = fit(self, src, getattr(t, "input_size", None), "the translator")
        t0 = time.perf_counter()
        out = check_output(t.name, src, t(src))
        dt = time.perf_counter() - t0
        self.seconds += dt
        timing["translate"] = timing.get("translate", 0.0) + dt
        chunk.inputs[self.name] = src
        return out


class SimStage(Stage):
    """The sim frames: the paired partners (the oracle) or the unpaired reference set."""

    kind = "sim"

    def __init__(self, label: str = "sim (oracle)") -> None:
        super().__init__("sim", label)

    def frames(self, chunk: Chunk, timing: dict[str, float]) -> np.ndarray:
        assert chunk.sim is not None
        return chunk.sim


def build_stages(translators: Sequence[Translator], camera: CameraCorrection | None,
                 paired: bool) -> list[Stage]:
    """The evaluation's rows in pipeline order: raw, corrected (with a camera), one per
    translator, sim (with paired sim frames)."""
    stages: list[Stage] = [RawStage()]
    if camera is not None:
        stages.append(CorrectedStage(camera))
    stages += [TranslatedStage(t) for t in translators]
    if paired:
        stages.append(SimStage())
    return stages


def fit(stage: Stage, frames: np.ndarray, size: tuple[int, int] | None, what: str) -> np.ndarray:
    """``frames`` at ``size`` (H, W) for ``what``, resized (and noted on the stage) if needed.

    Shape:
        - frames: :math:`(N, H, W, 3)` uint8; output: :math:`(N, H', W', 3)`.
    """
    if size is None or frames.shape[1:3] == tuple(size):
        return frames
    h, w = frames.shape[1:3]
    stage.note(f"{w}×{h} frames resized to {size[1]}×{size[0]} for {what} (bilinear, "
               "antialiased)")
    return resize_frames(frames, size)


class PolicyRunner:
    """Run the frozen policy on a stage's frames and put its actions and features in the chunk.

    Args:
        policy: the frozen policy.
        batch_size: frames per policy call.
        timing: accumulates the seconds spent in the policy (``policy``).
    """

    def __init__(self, policy: Policy, batch_size: int, timing: dict[str, float]) -> None:
        self.policy = policy
        self.batch_size = batch_size
        self.timing = timing

    def __call__(self, stage: Stage, frames: np.ndarray, chunk: Chunk) -> None:
        """Score ``frames`` (N, H, W, 3) uint8 as ``stage``'s frames of ``chunk``."""
        stage.size = (int(frames.shape[1]), int(frames.shape[2]))
        chunk.frames[stage.name] = frames
        x = fit(stage, frames, self.policy.input_size, "the policy")
        chunk.policy_frames[stage.name] = x
        t0 = time.perf_counter()
        out = self.policy.run(x, features=True, batch_size=self.batch_size)
        self.timing["policy"] = self.timing.get("policy", 0.0) + time.perf_counter() - t0
        chunk.actions[stage.name] = out.action.astype(np.float64)
        if out.features is not None:
            chunk.features[stage.name] = out.features.astype(np.float64)

