"""Train an unpaired real→sim translator (CUT, FastCUT or CycleGAN), export it to ONNX and score it (Hydra entry point)."""

from __future__ import annotations

import logging
import sys

import hydra
import torch
from omegaconf import DictConfig

from models.base import NonFiniteLossError
from workflows.training import DiskFullError, train

log = logging.getLogger("train_translate")


def default_experiment(argv: list[str]) -> list[str]:
    """Pick the recipe when the command line names none: ``cpu_demo`` without a GPU, ``gpu`` with.

    The choice goes first, so every Hydra flag (``--cfg job``, ``-m``, ``--help``) works in any
    position; ``experiment=null`` (or ``none``) means no recipe (``train.yaml`` as it is).
    """
    named = [a for a in argv if not a.startswith("-") and a.split("=")[0].lstrip("+~") == "experiment"]
    if named:
        if any(a.split("=", 1)[-1].strip().lower() in ("null", "none", "") for a in named if "=" in a):
            return [a for a in argv if a not in named]
        return argv
    recipe = "gpu" if torch.cuda.is_available() else "cpu_demo"
    print(f"[train_translate] no experiment= given: using experiment={recipe} "
          f"({'GPU' if recipe == 'gpu' else 'no GPU'} found)")
    return [f"experiment={recipe}", *argv]


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: ``python train_translate.py model=cut data=jetbot_synth ...``."""
    from hydra.errors import InstantiationException

    try:
        train(cfg)
    except InstantiationException as exc:  # a config value a constructor refused: its own message
        cause = exc.__cause__
        if not isinstance(cause, (FileNotFoundError, ValueError)):
            raise
        log.error("%s", cause)
        sys.exit(1)
    except (NonFiniteLossError, FileNotFoundError, ValueError, DiskFullError) as exc:
        log.error("%s", _one_line(exc))
        sys.exit(1)
    except RuntimeError as exc:  # a DataLoader worker's error, re-raised with its traceback inside
        if "DataLoader worker" not in str(exc):
            raise
        log.error("%s", _one_line(exc))
        sys.exit(1)


def _one_line(exc: BaseException) -> str:
    """The message of ``exc``; for an error re-raised from a DataLoader worker, its original line."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        return text.splitlines()[-1]
    return text


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *default_experiment(sys.argv[1:])]
    main()
