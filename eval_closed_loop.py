"""Closed-loop evaluation of real→sim translators in jetbot_synth episodes (Hydra entry point)."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as eval_policy_on_translated.py: small maths

import logging
import sys

from omegaconf import DictConfig

from translate.eval_translators import TranslatorOutputError
from translate.policy import PolicySpecError
from workflows.closed_loop import evaluate_closed_loop
from workflows.evaluation import run_hydra_app

__all__ = ["main", "run"]

log = logging.getLogger("eval_closed_loop")


def run(cfg: DictConfig) -> int:
    """Evaluate; 0 = done, 1 = an error (one line naming the file or key)."""
    try:
        evaluate_closed_loop(cfg)
    except (FileNotFoundError, ValueError, PolicySpecError, TranslatorOutputError) as exc:
        log.error("%s", exc)
        print(f"eval_closed_loop.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    """``python eval_closed_loop.py translator=x.onnx``; exits 0 when done, 1 on an error."""
    run_hydra_app(run, "closed_loop", "eval.yaml", "closed_loop.yaml")


if __name__ == "__main__":
    main()
