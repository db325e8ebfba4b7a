"""Training as configured (``configs/train.yaml``): fit the translator, export the chosen checkpoint, evaluate it with the frozen policy."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from models.base import (
    DistillConfig,
    NonFiniteLossError,
    PolicyLossWeights,
    load_teacher_generator,
    policy_config,
)
from models.checkpointing import (
    AtomicCheckpointIO,
    SaveLastOnTrainEnd,
    remove_orphaned_temp_files,
    resolve_ckpt_path,
)
from models.fast_step import build_executor
from translate.torch_policy import load_torch_policy

__all__ = ["DiskFullError", "LossesToLog", "config_hash", "train"]

log = logging.getLogger("train_translate")

# Lightning's advice for manual optimisation does not apply: our checkpoints are taken between steps
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
warnings.filterwarnings("ignore", message="The number of training batches .* is smaller than the logging")

if not OmegaConf.has_resolver("sum"):
    OmegaConf.register_new_resolver("sum", lambda *xs: sum(xs))


class DiskFullError(OSError):
    """The disk filled up during training; the message says which checkpoint is intact."""


def config_hash(cfg: DictConfig) -> str:
    """Short hash of the resolved config (recorded in exports to tie a file to its recipe)."""
    text = OmegaConf.to_yaml(cfg, resolve=True, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def frozen_nets(model_kwargs: Mapping[Any, Any]) -> dict[str, Any]:
    """The frozen nets a resolved ``model`` config names, loaded once to be injected.

    Args:
        model_kwargs: as for :func:`instantiate_model`.

    Returns:
        ``{"frozen_policy": TorchPolicy}`` when ``policy.path`` is set and
        ``{"teacher_generator": nn.Module}`` when distillation is on (each absent otherwise).
    """
    out: dict[str, Any] = {}
    pol = policy_config(model_kwargs.get("policy"))
    if pol is not None:
        out["frozen_policy"] = load_torch_policy(str(pol["path"]), pol.get("spec"))
    distill = DistillConfig(**dict(model_kwargs.get("distill") or {}))
    if distill.on:
        out["teacher_generator"] = load_teacher_generator(str(distill.teacher))
    return out


def instantiate_model(model_kwargs: Mapping[Any, Any], **injected: Any) -> Any:
    """The translator module of a resolved ``model`` config (plus the policy entries).

    Not recursive: the nested nodes with a ``_target_`` (``model.optimizer``, a custom
    ``model.generator`` or ``model.discriminator``) are specs the module builds itself
    (:meth:`models.base.TranslatorModule.make_optimizer`, :func:`models.networks.build_network`),
    so its hyper-parameters stay plain values in checkpoints (loadable with ``weights_only``).

    Args:
        model_kwargs: ``OmegaConf.to_container(cfg.model, resolve=True)``, policy entries added.
        injected: objects passed through as they are, e.g. :func:`frozen_nets`' frozen policy and
            teacher (not hyper-parameters: kept out of checkpoints).

    Returns:
        The :class:`models.base.TranslatorModule`.
    """
    return hydra.utils.instantiate(model_kwargs, _convert_="all", _recursive_=False, **injected)


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if c and "_target_" in c]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, export and (optionally) evaluate, as configured. Tests call this directly.

    Returns:
        ``{"run_dir", "checkpoint", "export": {...} or None, "metrics": {...} or None,
        "global_step"}``.
    """
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    removed = remove_orphaned_temp_files(run_dir / "checkpoints")
    if removed:
        log.info("removed %d temporary file(s) of interrupted checkpoint writes in %s",
                 len(removed), run_dir / "checkpoints")
    ckpt = resolve_ckpt_path(cfg.get("ckpt_path"), run_dir)
    if ckpt is None and (run_dir / "checkpoints" / "last.ckpt").exists():
        log.warning("%s already has a checkpoint; starting a fresh run over it "
                    "(add ckpt_path=last to resume instead)", run_dir)

    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    model_kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model_kwargs, dict)
    model_kwargs.update(_policy_kwargs(cfg, datamodule))
    model = instantiate_model(model_kwargs, **frozen_nets(model_kwargs))
    step_cfg = OmegaConf.to_container(cfg.step, resolve=True) if cfg.get("step") else None
    assert step_cfg is None or isinstance(step_cfg, dict)
    model.set_executor(build_executor(step_cfg))  # type: ignore[arg-type]

    callbacks = _callbacks(cfg, model, run_dir)
    if ckpt is None:
        _clear_old_event_files(cfg)
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False,
        plugins=[AtomicCheckpointIO()], default_root_dir=str(run_dir),
    )
    log.info("run folder: %s", run_dir.resolve())
    started = time.perf_counter()
    _fit(trainer, model, datamodule, ckpt, run_dir)
    if trainer.interrupted:
        log.warning("training interrupted; resume with ckpt_path=last run_dir=%s", run_dir)
    fit_s = time.perf_counter() - started
    done = trainer.global_step - next(c for c in callbacks if isinstance(c, LossesToLog)).start_step
    log.info("trained %d iterations in %.1f s (%.1f it/s, start-up and validation included)",
             done, fit_s, done / max(fit_s, 1e-9))

    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "global_step": trainer.global_step,
        "rank": trainer.global_rank,
        "fit_seconds": fit_s,
        "checkpoint": str(run_dir / "checkpoints" / "last.ckpt"),
        "export": None,
        "metrics": None,
    }
    if trainer.global_rank != 0:
        return result
    best = _best_path(callbacks)
    if best:
        result["best_checkpoint"] = best
    if cfg.export.enabled and not trainer.interrupted:
        source = best if (cfg.export.checkpoint == "best" and best) else None
        result["export"] = _export(cfg, model, datamodule, source or result["checkpoint"],
                                   reload=source is not None)
        result["metrics"] = _evaluate_export(cfg, result["export"]["onnx"])
    return result


def _callbacks(cfg: DictConfig, model: Any, run_dir: Path) -> list[Any]:
    """The configured callbacks (no progress bar when it is off), the best-checkpoint keeper,
    the loss log and the end-of-training ``last.ckpt``."""
    callbacks = _instantiate_all(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):
        from lightning.pytorch.callbacks import ProgressBar

        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    callbacks += _best_checkpoint_callbacks(cfg, model)
    callbacks.append(LossesToLog(every=int(cfg.get("log_losses_every_n_steps") or 0)))
    callbacks.append(SaveLastOnTrainEnd(run_dir / "checkpoints"))
    return callbacks


def _fit(trainer: L.Trainer, model: Any, datamodule: Any, ckpt: str | None, run_dir: Path) -> None:
    """``trainer.fit``; a non-finite loss or a full disk is re-raised naming the intact checkpoint."""
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    except NonFiniteLossError as exc:
        last = run_dir / "checkpoints" / "last.ckpt"
        keep = f"last good checkpoint: {last}" if last.exists() else "no checkpoint was written yet"
        raise NonFiniteLossError(f"{exc} — {keep}") from exc
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        last = run_dir / "checkpoints" / "last.ckpt"
        keep = (f"{last} is intact (checkpoints are written atomically): free some space, then "
                f"resume with ckpt_path=last run_dir={run_dir}") if last.exists() else "no checkpoint was written yet"
        raise DiskFullError(exc.errno, f"disk full while training ({exc.strerror}); {keep}") from exc


def _export(cfg: DictConfig, model: Any, datamodule: Any, checkpoint: str, *,
            reload: bool) -> dict[str, Any]:
    """Export the trained translator (``reload``: the chosen ``checkpoint``'s weights) as
    ``cfg.export`` says; returns :func:`translate.export.export_generator`'s record."""
    from translate.export import export_from_module

    if reload:
        model = type(model).load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    info = export_from_module(
        model,
        Path(cfg.run_dir) / "export",
        image_size=cfg.export.image_size or _frame_size(datamodule),
        camera=datamodule.correction,
        model_name=str(cfg.model.name),
        config_hash=config_hash(cfg),
        robot=bool(cfg.export.robot),
        opset=int(cfg.export.opset),
        checkpoint=checkpoint,
    )
    print(f"\nexported translator → {info['onnx']}")
    if info.get("robot_onnx"):
        print(f"robot-ready (uint8 HWC) → {info['robot_onnx']}")
    print(f"checkpoint → {checkpoint}")
    return info


def _evaluate_export(cfg: DictConfig, onnx_path: str) -> dict[str, Any] | None:
    """Score the export with the frozen policy (``cfg.evaluate``), logging the headline; None
    when the evaluation is off or has no policy."""
    if not cfg.evaluate.enabled or not cfg.policy.path:
        return None
    if not Path(str(cfg.policy.path)).is_file():
        log.warning("evaluation skipped: no frozen policy at %s", cfg.policy.path)
        return None
    from translate.report import headline
    from workflows.evaluation import evaluate_after_training

    metrics = evaluate_after_training(cfg, onnx_path)
    for line in headline(metrics) if metrics else []:
        log.info("test: %s", line)
    return metrics


class LossesToLog(L.Callback):
    """Write the latest ``train/*`` losses to the run's log (``train_translate.log``) every
    ``every`` iterations (0 = off), and the validation figures after each validation."""

    def __init__(self, every: int = 500) -> None:
        self.every = int(every)
        self.start_step = 0  # the step training (re)started from, once it has

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.start_step = int(trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if not self.every or step % self.every or trainer.global_rank:
            return
        items = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/loss")}
        if items:
            log.info("step %d: %s", step, " ".join(f"{k[6:]}={float(v):.4g}" for k, v in sorted(items.items())))

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.global_rank:
            return
        items = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if items:
            log.info("step %d validation: %s", trainer.global_step,
                     " ".join(f"{k[4:]}={float(v):.4g}" for k, v in sorted(items.items())))


def _frame_size(datamodule: Any) -> tuple[int, int]:
    """(H, W) the translator sees: the sim camera's size, or the sim frames' size."""
    if datamodule.correction is not None:
        h, w = datamodule.correction.out_size
        return int(h), int(w)
    ds = datamodule.train_set
    if ds is not None and getattr(ds, "_sim", None):
        return int(ds._sim[0].shape[0]), int(ds._sim[0].shape[1])
    from translate.imageio import read_image

    img = read_image(ds.sim_paths[0])
    return int(img.shape[0]), int(img.shape[1])


def _policy_kwargs(cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
    """Frozen-policy settings for validation by action agreement and the policy losses."""
    pol = cfg.get("policy")
    if not pol or not pol.get("path"):
        return {}
    path = Path(pol.path)
    if not path.exists() and pol.get("build_if_missing") and cfg.data.get("synth"):
        from datasets.jetbot_synth.reference_policy import ensure_policy

        ensure_policy(Path(cfg.data.root))
    if not path.exists() and pol.get("build_if_missing") and not cfg.data.get("synth"):
        # the default policy is jetbot_synth's; own folders without one train without it
        log.warning("no frozen policy at %s: training without the policy losses and without "
                    "validation by action agreement (give yours with policy=custom "
                    "policy.path=... policy.spec=...)", path)
        return {"policy_losses": {f.name: 0.0 for f in dataclasses.fields(PolicyLossWeights)},
                "distill": {**dict(cfg.model.get("distill") or {}), "policy": 0.0}}
    if not path.exists():
        raise FileNotFoundError(f"policy.path: {path} does not exist")
    _check_policy_spec(path, pol.get("spec"), cfg.data.get("val_dir"))
    return {"policy": {"path": str(path), "spec": pol.get("spec")}}


def _check_policy_spec(path: Path, spec: Any, val_dir: Any) -> None:
    """Before training against a frozen policy: its spec's self-check on the val split's sim
    frames and expert actions (:mod:`translate.policy_check`); findings are logged loudly."""
    manifest = Path(str(val_dir)) / "manifest.jsonl" if val_dir else None
    if manifest is None or not manifest.is_file():
        return
    from translate.policy import load_policy
    from translate.policy_check import check_policy_contract, read_sim_frames

    frames, actions = read_sim_frames(manifest.parent, manifest, 64)
    result = check_policy_contract(path, load_policy(path, spec).spec, frames, actions)
    for w in result.warnings:
        log.warning("%s\n%s", w, result.table())


def _best_checkpoint_callbacks(cfg: DictConfig, model: Any) -> list[Any]:
    monitor = cfg.get("select_by")
    if not monitor or not getattr(model, "has_validation", False) or not cfg.data.get("val_dir"):
        return []  # no validation metric to select by (no policy, or no paired val/)
    from lightning.pytorch.callbacks import ModelCheckpoint

    mode = "min" if monitor.endswith(("mae", "rmse", "_err")) else "max"
    return [ModelCheckpoint(dirpath=str(Path(cfg.run_dir) / "checkpoints"), filename="best",
                            monitor=monitor, mode=mode, save_top_k=1, save_last=False,
                            auto_insert_metric_name=False, enable_version_counter=False)]


def _clear_old_event_files(cfg: DictConfig) -> None:
    """A fresh run over an old run folder starts its TensorBoard logs afresh (a resumed run keeps
    appending to its own): the old event files are removed, saying so. Rank 0 only: a DDP
    rank started later must not remove the events rank 0 has begun."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) != 0:
        return
    for c in (cfg.get("logger") or {}).values():
        if not c or "save_dir" not in c:
            continue
        folder = Path(str(c.save_dir)) / str(c.get("name") or "") / str(c.get("version") or "")
        old = sorted(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []
        for f in old:
            f.unlink()
        if old:
            log.warning("removed %d TensorBoard event file(s) of an earlier run in %s "
                        "(a fresh run; ckpt_path=last resumes and keeps them)", len(old), folder)


def _best_path(callbacks: list[Any]) -> str | None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    for cb in callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor and cb.best_model_path:
            return str(cb.best_model_path)
    return None
