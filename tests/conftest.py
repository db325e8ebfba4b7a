"""Shared pytest fixtures: tiny jetbot_synth data, Hydra config composition, GPU skipping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from omegaconf import DictConfig

torch.set_num_threads(1)  # tiny tensors: one thread is faster than two fighting on a 2-core runner

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The project checkout."""
    return REPO


@pytest.fixture(scope="session")
def compose_cfg() -> Callable[..., object]:
    """Compose a config from ``configs/`` with overrides, as the entry points do."""
    from hydra import compose, initialize_config_dir

    import workflows.training  # noqa: F401  (registers the ${sum:} resolver)

    def _compose(config_name: str, overrides: list[str]) -> object:
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)

    return _compose


@pytest.fixture(scope="session")
def tiny_unpaired(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 real + 8 sim random 32×32 PNGs under ``root/real`` and ``root/sim``."""
    import numpy as np

    from translate.imageio import write_image

    root = tmp_path_factory.mktemp("tiny_unpaired")
    rng = np.random.default_rng(0)
    for i in range(8):
        write_image(root / "real" / f"{i:03d}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        sim = np.full((32, 32, 3), 128, np.uint8)
        sim[8 + i : 16 + i, 8:16] = (200, 30, 30)
        write_image(root / "sim" / f"{i:03d}.png", sim)
    return root


def tiny_eval_cfg(root: Path, out: Path, **overrides: object) -> DictConfig:
    """The evaluation config (``workflows.evaluation.default_config``) on a tiny jetbot_synth
    folder ``root``: its test split and policy, quiet, few bootstrap draws and figures."""
    from workflows import evaluation

    base: dict[str, object] = {
        "data": str(root / "test"),
        "policy.path": str(root / "policy" / "policy.onnx"),
        "out_dir": str(out),
        "progress": False,
        "print_table": False,
        "bootstrap.n": 100,
        "report.strips": 2,
        "report.worst": 2,
        "policy.build_if_missing": False,
        "synth.build_if_missing": False,
    }
    base.update(overrides)
    return evaluation.default_config(base)


def tiny_train_overrides(model: str, data_root: Path, runs_dir: Path, steps: int = 3) -> list[str]:
    """Overrides for a seconds-long CPU training run on :func:`tiny_unpaired` data."""
    ov = [
        f"model={model}", "data=folders", f"data.root={data_root}", "data.load_size=null",
        "data.crop_size=null", "data.num_workers=0", "data.cache=true", "policy=none",
        "experiment=cpu_demo", f"trainer.max_steps={steps}", "model.generator.ngf=8",
        "model.generator.n_blocks=2", "model.discriminator.ndf=8", f"paths.runs_dir={runs_dir}",
        "trainer.enable_progress_bar=false", "callbacks.last_checkpoint.every_n_train_steps=2",
        "data.steps_per_epoch=4", "model.n_epochs=1", "model.n_epochs_decay=1",
        "model.log_images_every_n_steps=2", "evaluate.enabled=false",
        "model.policy_losses.cycle=0", "model.policy_losses.sim_identity=0",
        "model.policy_losses.paired=0", "model.policy_losses.paired_pixel=0", "data.randomized_pairs=false",
    ]
    if model in ("cut", "fastcut"):
        ov.append("model.num_patches=16")
    return ov


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48 px jetbot_synth dataset (8 frames a split) with an untrained rl_games policy in policy/."""
    from datasets.jetbot_synth.generate import ensure_dataset
    from datasets.jetbot_synth.policy_net import RlGamesJetbotNet, export_rl_games_onnx

    root = tmp_path_factory.mktemp("tiny_synth") / "jetbot_synth_48px_seed0"
    ensure_dataset(root, size=48, seed=0, n_real=8, n_sim=8, n_val=8, n_test=8, progress=False,
                   contact_sheet=False)
    torch.manual_seed(0)
    export_rl_games_onnx(RlGamesJetbotNet(image_size=48), root / "policy" / "policy.onnx",
                         height=48, width=48)
    return root
