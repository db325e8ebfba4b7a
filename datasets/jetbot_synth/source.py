"""The synthetic world as a frame source (real-look frames + expert actions), named ``synth``."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from datasets.jetbot_synth.render import DOMAINS, Renderer
from datasets.jetbot_synth.world import WorldConfig, expert_actions, make_rig, sample_states
from translate.sources import FrameSource, register_source

__all__ = ["SynthSource"]


class SynthSource(FrameSource):
    """Real-look (or sim-look) renders of the jetbot_synth world, with the expert's action.

    Frames are rendered in small chunks on demand, so the stream can be endless. Frame ``i`` of
    ``SynthSource(seed=s, width=k)`` equals frame ``i`` of
    ``render_arrays(n, s, domain, size=k)`` (same states, same sensor noise, same JPEG round trip).

    Args:
        width: frame size (square: ``height`` must equal it).
        height: frame size.
        seed: the stream's seed.
        frames: stop after this many frames (None: endless).
        domain: ``real`` (what a robot camera would see) or ``sim``.
        chunk: frames rendered per step.
        world: :class:`WorldConfig` overrides (a dict), e.g. ``{"out_of_view_fraction": 0.5}``.

    Example:
        >>> src = SynthSource(32, 32, frames=2)
        >>> [f.image.shape for f in src]
        [(32, 32, 3), (32, 32, 3)]
    """

    kind = "synth"

    def __init__(
        self,
        width: int | None = 224,
        height: int | None = 224,
        *,
        seed: int = 0,
        frames: int | None = None,
        domain: str = "real",
        chunk: int = 8,
        world: dict[str, Any] | None = None,
    ) -> None:
        size = width if width is not None else (height if height is not None else 224)
        if height is not None and height != size:
            raise ValueError(
                f"SynthSource renders square frames; got width {width}, height {height}")
        if domain not in DOMAINS:
            raise ValueError(f"SynthSource: domain must be one of {DOMAINS}, got {domain!r}")
        if frames is not None and frames < 0:
            raise ValueError(f"SynthSource: frames must be >= 0 or None, got {frames}")
        super().__init__(size, size)
        self.config = dataclasses.replace(WorldConfig(**(world or {})), size=int(size))
        self.seed = int(seed)
        self.frames = frames
        self.domain = domain
        self.chunk = max(1, int(chunk))
        # the same streams as generate.render_arrays(n, seed, ...)
        states_seq, noise_seq = np.random.SeedSequence(self.seed).spawn(2)
        self._noise_seed = int(noise_seq.generate_state(1)[0])
        self._rng = np.random.default_rng(states_seq)
        self._renderer: Renderer | None = None
        self._buffer: list[tuple[np.ndarray, np.ndarray, dict[str, Any]]] = []
        self._made = 0
        self.camera_rig = make_rig(self.config)  # written to the session's camera.yaml

    def describe(self) -> str:
        return f"synth:{self.seed}"

    def info(self) -> dict[str, Any]:
        return {**super().info(), "seed": self.seed, "domain": self.domain,
                "world": self.config.to_dict()}

    def _open(self) -> None:
        if self._renderer is None:
            self._renderer = Renderer(self.config)

    def _read(self) -> tuple[np.ndarray, float | None, tuple[float, ...],
                             dict[str, Any]] | None:
        if not self._buffer:
            left = self.chunk if self.frames is None else min(self.chunk, self.frames - self._made)
            if left <= 0:
                return None
            assert self._renderer is not None
            # one sequential state stream, read in pieces
            states = sample_states(left, self._rng, self.config)
            images = self._renderer.render(states, self.domain, self._noise_seed,
                                           index_offset=self._made, jpeg=True)
            actions = expert_actions(states, self.config)
            self._buffer = [(images[i], actions[i], states[i].to_dict()) for i in range(left)]
            self._made += left
        image, action, state = self._buffer.pop(0)
        return image, None, tuple(float(a) for a in action), state


register_source("synth", SynthSource, arg="seed", replace=True)
