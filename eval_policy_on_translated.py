"""Score real→sim translators by how a frozen sim policy acts on translated real frames (Hydra entry point)."""

from __future__ import annotations

import os

# The evaluation's linear algebra is small (512 × 512 feature covariances); multi-threaded OpenBLAS
# busy-waits and ran it ~50× slower on a loaded 2-core machine. Set before numpy loads; a value the
# user set wins. (numpy only: torch and onnxruntime keep their own thread pools.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from translate.eval_sets import EvalDataError
from translate.eval_translators import TranslatorOutputError
from translate.imageio import DataFolderError, ImageDecodeError
from translate.policy import PolicySpecError
from workflows.evaluation import CONFIG_DIR, evaluate, run_hydra_app

__all__ = ["main", "run"]

log = logging.getLogger("eval_policy_on_translated")


def run(cfg: DictConfig) -> int:
    """Evaluate and turn the outcome into an exit status (what ``main`` returns to the shell).

    Returns:
        0 = done and every threshold passed; 1 = an error (logged, naming the file or key);
        2 = a ``fail_under`` / ``fail_over`` threshold was violated.
    """
    try:
        metrics = evaluate(cfg)
    except (FileNotFoundError, ValueError, PolicySpecError, DataFolderError, EvalDataError,
            ImageDecodeError, TranslatorOutputError) as exc:
        log.error("%s", exc)
        print(f"eval_policy_on_translated.py: error: {exc}", file=sys.stderr)
        return 1
    thresholds = metrics.get("thresholds") or {}
    if not thresholds.get("passed", True):
        failed = [c["message"] for c in thresholds["checks"] if not c["passed"]]
        print("eval_policy_on_translated.py: threshold(s) violated: " + "; ".join(failed),
              file=sys.stderr)
        return 2
    return 0


def _old_policy_form(argv: Sequence[str]) -> str | None:
    """The hint for the pre-shared-config form ``policy=PATH`` / ``policy_spec=...``, or None."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+~") == "policy_spec" or (
                key == "policy" and not (CONFIG_DIR / "policy" / f"{value}.yaml").is_file()
                and Path(value).suffix):
            return (f"{arg}: the policy is a config group, as in training: "
                    "policy=custom policy.path=PATH policy.spec=SPEC")
    return None


def main() -> None:
    """``python eval_policy_on_translated.py translator=x.onnx policy=custom policy.path=p.onnx data=path``.

    Exits 0 when done and every threshold passed, 1 on an error, 2 on a violated threshold.
    """
    hint = _old_policy_form(sys.argv[1:])
    if hint:
        print(f"eval_policy_on_translated.py: error: {hint}", file=sys.stderr)
        sys.exit(1)
    run_hydra_app(run, "eval", "eval.yaml")


if __name__ == "__main__":
    main()
