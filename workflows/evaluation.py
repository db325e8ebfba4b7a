"""The evaluation as configured (``configs/eval.yaml``): build the translators, the policy and the frames, score them, write the report."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from translate.eval_schema import check_thresholds
from translate.eval_sets import EvalSet, load_eval_set, resolve_camera
from translate.eval_translators import (
    IdentityTranslator,
    OnnxTranslator,
    TorchModuleTranslator,
    Translator,
)
from translate.evaluate import EvalSettings, evaluate_translators
from translate.policy import Policy, load_policy

__all__ = [
    "CONFIG_DIR",
    "run_hydra_app",
    "load_configured_policy",
    "load_translators",
    "threads_setting",
    "ThresholdError",
    "build_eval_set",
    "default_config",
    "evaluate",
    "evaluate_after_training",
    "load_translator",
    "resolve_policy",
]

log = logging.getLogger("eval_policy_on_translated")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

if not OmegaConf.has_resolver("now"):  # Hydra registers it when it runs; compose-free use needs it
    OmegaConf.register_new_resolver(
        "now", lambda pattern: datetime.datetime.now().strftime(pattern), use_cache=True
    )


class ThresholdError(RuntimeError):
    """A ``fail_under`` / ``fail_over`` threshold was violated; the message lists the failures."""


# --------------------------------------------------------------------------------------------------
# Building the parts
# --------------------------------------------------------------------------------------------------


def _official_kind(path: Path, setting: str) -> str:
    if setting in ("cyclegan", "cut"):
        return setting
    stem = path.stem
    if stem.endswith("G_A") or "G_A" in stem:
        return "cyclegan"
    if stem.endswith("net_G"):
        return "cut"
    raise ValueError(
        f"translator {path}: cannot tell whether this official .pth is CycleGAN or CUT from its "
        "name; set translator_model=cyclegan or translator_model=cut"
    )


def load_translator(
    spec: str,
    *,
    batch_size: int = 16,
    device: str = "cpu",
    model: str = "auto",
    threads: int | None = None,
) -> Translator:
    """Build one translator from a config entry.

    Args:
        spec: ``identity``; an ``.onnx`` file or an export folder (core or robot graph); a
            Lightning ``.ckpt`` of CUT / CycleGAN; an official CycleGAN / CUT ``.pth``.
        batch_size: frames per call.
        device: torch device for checkpoint translators.
        model: ``cyclegan`` | ``cut`` | ``auto`` for official ``.pth`` files.
        threads: onnxruntime intra-op threads for ONNX translators (None: its default).

    Returns:
        The translator.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file of unknown kind, or one that does not load.
    """
    if spec.strip().lower() == "identity":
        return IdentityTranslator()
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"translator not found: {path} (or use translator=identity)")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".onnx":
        return OnnxTranslator(path, batch_size=batch_size, threads=threads)
    if suffix == ".ckpt":
        from models.checkpointing import load_lightning_generator

        generator, name, _ = load_lightning_generator(path)
        return TorchModuleTranslator(
            generator, f"{_run_name(path)}", batch_size=batch_size, device=device,
            info={"kind": "lightning", "path": str(path), "model_name": name},
        )
    if suffix in (".pth", ".pt"):
        from models.official import load_official_checkpoint

        kind = _official_kind(path, model)
        generator = load_official_checkpoint(path, model=kind, which="G", ngf=None, n_blocks=None)
        return TorchModuleTranslator(
            generator, f"{kind}-{path.stem}", batch_size=batch_size, device=device,
            info={"kind": "official", "path": str(path), "model_name": kind},
        )
    raise ValueError(
        f"translator {path}: unknown kind {suffix!r}; give an .onnx export (or its folder), a "
        "Lightning .ckpt, an official .pth, or identity"
    )


def load_translators(cfg: DictConfig, *, threads: int | None, batch_size: int,
                     skip_identity: bool = False) -> list[Translator]:
    """The configured translators (``cfg.translator``: one entry or a list), names made unique.

    Args:
        cfg: the evaluation config (``translator``, ``device``, ``translator_model``).
        threads: onnxruntime threads of ONNX translators.
        batch_size: frames per call.
        skip_identity: leave ``identity`` (and null) entries out (the closed loop has its own
            raw / corrected rows).

    Returns:
        One translator per entry, in order.
    """
    specs = [s for s in _translator_specs(cfg.get("translator"))
             if not (skip_identity and s.strip().lower() in ("identity", "none", "null", ""))]
    return _unique_names([
        load_translator(s, batch_size=batch_size, device=str(cfg.get("device", "cpu")),
                        model=str(cfg.get("translator_model", "auto")), threads=threads)
        for s in specs
    ])


def load_configured_policy(cfg: DictConfig, *, threads: int | None, batch_size: int,
                           features: bool = False) -> Policy:
    """The frozen policy of ``cfg.policy`` (built first when asked, see :func:`resolve_policy`).

    Args:
        cfg: the evaluation config.
        threads: onnxruntime intra-op threads of an ONNX policy (TorchScript: torch's own).
        batch_size: frames per policy call.
        features: also read its penultimate features.

    Returns:
        The policy.
    """
    path = resolve_policy(cfg)
    kwargs: dict[str, Any] = {}
    if threads and path.suffix.lower() == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        kwargs["session_options"] = options
    return load_policy(path, cfg.policy.get("spec") or None, features=features,
                       batch_size=batch_size, **kwargs)


def run_hydra_app(run: Callable[[DictConfig], int], config_name: str, *names: str) -> None:
    """Run ``run`` as a ``hydra.main`` app on ``configs/<names>``; exit with its non-zero code.

    The app reads a private copy of those files and the groups they share (``paths/``,
    ``policy/``), removed afterwards: ``data`` is a plain key of the evaluation configs but a
    config group of ``train.yaml`` in the same ``configs/`` folder, and Hydra, deciding that from
    the config search path, would read ``data=path`` as a group choice and refuse it.

    Args:
        run: the app's body, ``cfg → exit code`` (0 = done).
        config_name: the primary config, e.g. ``eval``.
        *names: the config files to copy, e.g. ``eval.yaml``.
    """
    import shutil
    import sys
    import tempfile

    import hydra

    tmp = Path(tempfile.mkdtemp(prefix="sim2real-eval-config-"))
    try:
        for name in names:
            shutil.copy2(CONFIG_DIR / name, tmp / name)
        for group in ("paths", "policy"):
            shutil.copytree(CONFIG_DIR / group, tmp / group)

        @hydra.main(version_base="1.3", config_path=str(tmp), config_name=config_name)
        def _app(cfg: DictConfig) -> None:
            code = run(cfg)
            if code:
                sys.exit(code)

        _app()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_name(path: Path) -> str:
    parent = path.parent
    if parent.name == "checkpoints" and parent.parent.name:
        parent = parent.parent
    return f"{parent.name}-{path.stem}" if parent.name else path.stem


def _translator_specs(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(v) for v in value]
    return [str(value)]


def _unique_names(translators: list[Translator]) -> list[Translator]:
    seen: dict[str, int] = {}
    for t in translators:
        n = seen.get(t.name, 0)
        seen[t.name] = n + 1
        if n:
            t.name = f"{t.name}-{n + 1}"
    return translators


def resolve_policy(cfg: DictConfig) -> Path:
    """The policy file (``cfg.policy.path``); builds jetbot_synth's reference policy when
    ``policy.build_if_missing`` and it is missing.

    Args:
        cfg: the evaluation config; ``cfg.policy`` is a ``configs/policy`` group entry.

    Returns:
        The policy model file.

    Raises:
        FileNotFoundError: the policy does not exist (the message says how to get one).
    """
    pol: Any = cfg.get("policy") or {}
    if not pol.get("path"):
        raise FileNotFoundError("no frozen policy configured: give one with policy=custom "
                                "policy.path=... policy.spec=...")
    path = Path(str(pol.path))
    if path.is_file():
        return path
    root = path.parent.parent
    synth_root = path.parent.name == "policy" and (root / "dataset.json").is_file()
    if pol.get("build_if_missing") and synth_root:
        from datasets.jetbot_synth.reference_policy import ensure_policy

        log.info("policy %s is missing: building jetbot_synth's reference policy", path)
        built = ensure_policy(root, progress=bool(cfg.get("progress", True)))
        if built.is_file() and built.resolve() == path.resolve():
            return built
    hint = (" (jetbot_synth: set policy.build_if_missing=true to train the reference policy)"
            if synth_root else "")
    raise FileNotFoundError(f"policy model not found: {path}{hint}")


def _ensure_default_data(cfg: DictConfig) -> None:
    """Generate the jetbot_synth world when the configured data lives in a missing synth root."""
    data = Path(str(cfg.data))
    synth: Any = cfg.get("synth") or {}
    if data.exists() or not synth.get("build_if_missing"):
        return
    root = data.parent
    expected = f"jetbot_synth_{synth.size}px_seed{synth.seed}"
    if root.name != expected or (root / "dataset.json").exists():
        return
    from datasets.jetbot_synth.generate import ensure_dataset

    log.info("generating the jetbot_synth evaluation world in %s", root)
    ensure_dataset(root, size=int(synth.size), seed=int(synth.seed), n_real=int(synth.n_real),
                   n_sim=int(synth.n_sim), n_val=int(synth.n_val), n_test=int(synth.n_test),
                   progress=bool(cfg.get("progress", True)))


def build_eval_set(cfg: DictConfig) -> EvalSet:
    """List the evaluation frames named by ``cfg.data`` (and ``cfg.sim_data``)."""
    sim_data = cfg.get("sim_data")
    return load_eval_set(
        str(cfg.data), sim_data=str(sim_data) if sim_data else None,
        max_frames=cfg.get("max_frames"),
    )


def _settings(cfg: DictConfig) -> EvalSettings:
    boot = cfg.get("bootstrap") or {}
    report = cfg.get("report") or {}
    kid_cfg = cfg.get("kid") or {}
    return EvalSettings(
        batch_size=int(cfg.batch_size),
        chunk_size=int(cfg.get("chunk_size") or 256),
        bootstrap=int(boot.get("n", 1000)),
        seed=int(boot.get("seed", 0)),
        ci_level=float(boot.get("level", 0.95)),
        dead_zone=float(cfg.dead_zone),
        tolerance=float(cfg.tolerance),
        lpips=str(cfg.lpips),
        num_workers=int(cfg.num_workers),
        on_error=str(cfg.get("on_error", "skip")),
        n_strips=int(report.get("strips", 6)),
        n_worst=int(report.get("worst", 6)),
        kid_subset_size=int(kid_cfg.get("subset_size", 1000)),
        kid_subsets=int(kid_cfg.get("n_subsets", 50)),
        progress=bool(cfg.get("progress", True)),
    )


def _thresholds(cfg: DictConfig) -> tuple[dict[str, float], dict[str, float]]:
    def table(key: str) -> dict[str, float]:
        value = cfg.get(key) or {}
        if not isinstance(value, Mapping):
            raise ValueError(f"{key} must be a mapping metric -> threshold; got {value!r}")
        out = {}
        for k, v in value.items():
            try:
                out[str(k)] = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{key}.{k} must be a number; got {v!r}") from None
        return out

    return table("fail_under"), table("fail_over")


# --------------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------------


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the configured translators with the frozen policy and write the report.

    Writes ``metrics.json``, ``report.md``, ``report.html``, ``figures/*.png`` and
    ``per_frame.csv`` into ``cfg.out_dir`` and prints the stage × metric table.

    Args:
        cfg: the composed ``configs/eval.yaml``.

    Returns:
        The metrics (as in metrics.json), with ``thresholds`` = ``{"checks": [...], "passed"}``.

    Raises:
        FileNotFoundError: a missing policy, translator, data folder or camera file.
        ValueError: bad settings, a spec that contradicts its model, unusable data.
    """
    fail_under, fail_over = _thresholds(cfg)
    # Unknown threshold names fail now, not after the whole run.
    check_thresholds({"stages": []}, fail_under, fail_over)
    settings = _settings(cfg)
    threads = threads_setting(cfg.get("threads", "auto"))
    _ensure_default_data(cfg)
    with _torch_threads(threads):
        return _evaluate(cfg, settings, threads, fail_under, fail_over)


def threads_setting(value: Any) -> int | None:
    """The ``threads`` setting: ``auto`` = half the CPUs each for the two concurrent compute
    streams (translator and policy on onnxruntime; paired-image metrics or rendering on torch);
    null/0 = the libraries' defaults; else a positive count.

    Args:
        value: the setting.

    Returns:
        Threads per stream, or None for the libraries' defaults.
    """
    if value is None or value == 0:
        return None
    if str(value).lower() == "auto":
        return max(1, (os.cpu_count() or 2) // 2)
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"threads must be auto, null or a positive integer; got {value!r}") from None
    if n < 0:
        raise ValueError(f"threads must be auto, null or a positive integer; got {value!r}")
    return n or None


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """torch's (process-wide) thread count for the evaluation, restored afterwards."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _evaluate(cfg: DictConfig, settings: EvalSettings, threads: int | None,
              fail_under: dict[str, float], fail_over: dict[str, float]) -> dict[str, Any]:
    policy = load_configured_policy(cfg, threads=threads, batch_size=settings.batch_size,
                                    features=True)
    translators = load_translators(cfg, threads=threads, batch_size=settings.batch_size)
    eval_set = build_eval_set(cfg)
    camera, camera_source = resolve_camera(cfg.get("camera", "auto"), eval_set, translators)
    result = evaluate_translators(translators, policy, eval_set, camera=camera,
                                  camera_source=camera_source, settings=settings)
    checks = check_thresholds(result.metrics, fail_under, fail_over)
    result.metrics["thresholds"] = {"checks": checks, "passed": all(c["passed"] for c in checks)}
    from translate.report import print_tables, write_report

    config = OmegaConf.to_container(cfg, resolve=True)
    files = write_report(result, Path(str(cfg.out_dir)), config=config,  # type: ignore[arg-type]
                         html_report=bool((cfg.get("report") or {}).get("html", True)))
    if cfg.get("print_table", True):
        print_tables(result.metrics)
        print(f"report → {files.get('html', files['markdown'])}")
    return result.metrics


def default_config(overrides: Mapping[str, Any] | Sequence[str] = (), *,
                   on_top: Sequence[str] = ()) -> DictConfig:
    """``configs/eval.yaml`` with its config groups (``paths``, ``policy``), plus overrides,
    without Hydra's runtime.

    Args:
        overrides: a mapping of (dotted) keys to values, or ``key=value`` strings; as on the
            command line, ``group=choice`` picks a config group's entry (``policy=custom``).
        on_top: configs of ``configs/`` merged over eval.yaml before the overrides (e.g.
            ``closed_loop.yaml``, whose defaults list starts with ``eval``).

    Returns:
        The config (``defaults`` and ``hydra`` sections dropped).
    """
    base = OmegaConf.load(CONFIG_DIR / "eval.yaml")
    assert isinstance(base, DictConfig)
    choices = {str(k): str(v) for d in base.pop("defaults", []) if isinstance(d, Mapping)
               for k, v in d.items()}
    base.pop("hydra", None)
    items = list(overrides.items()) if isinstance(overrides, Mapping) else [
        tuple(o.split("=", 1)) for o in overrides]
    for key, value in items:
        if key in choices and (CONFIG_DIR / str(key) / f"{value}.yaml").is_file():
            choices[str(key)] = str(value)
    for group, choice in choices.items():
        base[group] = OmegaConf.load(CONFIG_DIR / group / f"{choice}.yaml")
    for name in on_top:  # as a defaults list [eval, _self_]: the layer wins over eval's groups
        layer = OmegaConf.load(CONFIG_DIR / name)
        assert isinstance(layer, DictConfig)
        layer.pop("defaults", None)
        layer.pop("hydra", None)
        merged = OmegaConf.merge(base, layer)
        assert isinstance(merged, DictConfig)
        base = merged
    for key, value in items:
        if key in choices and isinstance(value, str) and value == choices[str(key)]:
            continue
        if isinstance(overrides, Mapping):
            OmegaConf.update(base, str(key), value, merge=False, force_add=True)
        else:
            base = OmegaConf.merge(base, OmegaConf.from_dotlist([f"{key}={value}"]))
    assert isinstance(base, DictConfig)
    return base


def evaluate_after_training(cfg_train: DictConfig, onnx_path: str | Path) -> dict[str, Any] | None:
    """Evaluate a freshly exported translator the way ``train_translate.py`` was configured.

    The two share one config tree: the training's ``policy`` entry (``configs/policy``) is the
    evaluation's, and ``cfg_train.evaluate`` holds ``configs/eval.yaml`` keys, filled from the
    run by interpolation (``data``: the data root's ``evaluate.split`` folder, ``camera``,
    ``out_dir``: ``run_dir/eval``, ...); ``enabled`` and ``split`` are the training's own.

    Args:
        cfg_train: the training config.
        onnx_path: the exported ``translator.onnx``.

    Returns:
        The metrics, or None when there is no policy or no evaluation split (logged).
    """
    policy: Any = cfg_train.get("policy") or {}
    if not policy.get("path"):
        log.warning("evaluation skipped: no frozen policy configured (policy.path)")
        return None
    ev = OmegaConf.to_container(cfg_train.get("evaluate") or {}, resolve=True)
    assert isinstance(ev, dict)
    data = ev.get("data")
    if data is None or not Path(str(data)).exists():
        log.warning("evaluation skipped: no evaluation split %s (set evaluate.split to a paired "
                    "folder under data.root)", data)
        return None
    cfg = default_config({"translator": str(onnx_path), "synth.build_if_missing": False})
    cfg.policy = OmegaConf.create(OmegaConf.to_container(policy, resolve=True))
    for key, value in ev.items():
        if key in ("enabled", "split"):
            continue
        if key in cfg:
            OmegaConf.update(cfg, str(key), value, merge=True)
        else:
            log.warning("evaluate.%s is not an evaluation setting; ignored", key)
    if not cfg_train.data.get("correct_real", True):  # the data's switch that turns camera_yaml off
        cfg.camera = "none"
    return evaluate(cfg)
