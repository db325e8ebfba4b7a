"""Fixtures of the closed-loop tests: a stage's run made up from outcome counts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from datasets.jetbot_synth.closed_loop import StageRun, StageSpec
from datasets.jetbot_synth.drive import EpisodeLog

#: ``fake_run(name, kind, successes, n=10)`` → a :class:`StageRun` of ``n`` five-step episodes.
FakeRun = Callable[..., StageRun]


@pytest.fixture
def fake_run() -> FakeRun:
    """A factory of made-up stage runs: ``successes`` of ``n`` episodes reach the Kong, the rest
    time out; every episode drives the same five actions."""

    def make(name: str, kind: str, successes: int, n: int = 10) -> StageRun:
        steps = np.full(n, 5)
        outcome = ["success"] * successes + ["timeout"] * (n - successes)
        actions = np.tile(np.array([[0.0, 0.0], [0.2, 0.0], [0.2, 0.4], [0.2, 0.4], [0.2, 0.4]]),
                          (n, 1, 1))
        log = EpisodeLog(np.zeros((n, 6, 3)), actions, steps, outcome, np.ones(n), np.ones(n),
                         info={"dt": 0.1})
        return StageRun(StageSpec(name, kind, name), log, out_change=8.0, in_change=4.0, n_changes=4)

    return make
