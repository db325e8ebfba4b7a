"""Shared LightningModule machinery of the translators: schedules, NaN guard, image strips, checkpoint state."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from models.augment import diff_augment, draw_diffaug_params, parse_diffaug
from models.checkpointing import load_lightning_generator
from models.losses import discriminate_with_r1
from models.networks import ChannelGain, build_discriminator, build_generator, resolve_target
from translate.torch_policy import TorchPolicy, load_torch_policy

log = logging.getLogger(__name__)

__all__ = [
    "DistillConfig",
    "NonFiniteLossError",
    "Phase",
    "PolicyLossWeights",
    "TranslatorModule",
    "build_discriminator",
    "build_generator",
    "capturable_optimizers",
    "eager_optimizers",
    "health_thumbnail",
    "linear_decay_lambda",
    "stall_extension_schedule",
    "translator_health",
    "translator_stall",
]


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite. The message names the loss and the step."""


@dataclass(frozen=True)
class PolicyLossWeights:
    """Weights of the policy-consistency losses (0 = off; each term costs compute only when on).

    Attributes:
        cycle: CycleGAN: π(x_sim) ≈ π(G_A(G_B(x_sim))) — the action survives sim→real→sim.
        sim_identity: π(x_sim) ≈ π(G(x_sim)) — a sim frame stays a sim frame for the policy
            (CycleGAN's G_A, CUT's G).
        paired: π(G(x_real)) ≈ π(y_sim) on paired frames, when the data provides them (real
            pairs, ``data.paired_dir``, or random-camera pairs, ``data.randomized_pairs``).
        features: extra weight of a penultimate-feature term (MSE, scale-normalised) added to each
            active term.
        paired_pixel: λ × L1(G(x_real), y_sim) on paired frames: pixel supervision (needs no
            policy; off unless the data provides pairs; on real pairs: the paired ceiling).
        real_student: CycleGAN: λ × |π(G_A(x_real)) − π_real(x_real)|, where π_real is a copy of
            the policy fine-tuned on sim→real translations G_B(x_sim) to act as π acts on x_sim:
            a per-frame action target on unpaired real frames (RL-CycleGAN's real-domain Q,
            distilled instead of learned by RL). Ramps in after ``real_student_warmup``.
        real_student_warmup: iterations before the term starts (π_real and G_B need them), then
            as many again to reach full weight.
    """

    cycle: float = 0.0
    sim_identity: float = 0.0
    paired: float = 0.0
    features: float = 0.0
    paired_pixel: float = 0.0
    real_student: float = 0.0
    real_student_warmup: int = 1000

    #: the terms that need the frozen policy
    NEEDS_POLICY: ClassVar[tuple[str, ...]] = ("cycle", "sim_identity", "paired", "real_student")

    def any(self) -> bool:
        """True when some term that needs the frozen policy is on."""
        return max(float(getattr(self, k)) for k in self.NEEDS_POLICY) > 0

    def student_ramp(self, step: int) -> float:
        """The real-student term's weight factor at ``step``: 0 during the warm-up, then linear
        to 1 over as many iterations."""
        w = max(int(self.real_student_warmup), 0)
        if w == 0:
            return 1.0
        return float(min(max((step - w) / w, 0.0), 1.0))


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation from a trained translator (``model.distill``), e.g. full → edge generator.

    The teacher's real→sim generator is loaded from a ``train_translate.py`` checkpoint (CycleGAN,
    CUT or FastCUT; weights only), frozen, and run on the same real frames as the student; its
    output is a per-pixel target (GAN Compression's distillation for compressed CycleGAN/CUT
    generators), on top of the model's own losses.

    Attributes:
        teacher: path of the teacher's ``.ckpt``; None or "" = off.
        pixel: λ × L1(G(x_real), teacher(x_real)) on [-1, 1] images (``loss_distill``).
        policy: λ × |π(G(x_real)) − π(teacher(x_real))| on the frozen policy's clamped mu
            (``loss_policy_distill``; needs the policy).
    """

    teacher: str | None = None
    pixel: float = 10.0
    policy: float = 0.0

    @property
    def weighted(self) -> bool:
        """True when some weight is non-zero."""
        return max(self.pixel, self.policy) > 0

    @property
    def on(self) -> bool:
        """True when a teacher is set and some weight is non-zero."""
        return bool(self.teacher) and self.weighted


def policy_config(policy: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The frozen-policy entries of a model config (``path``, ``spec``), or None without a path."""
    return dict(policy) if policy and policy.get("path") else None


def load_teacher_generator(path: str) -> nn.Module:
    """The frozen real→sim generator of a ``train_translate.py`` checkpoint, for distillation.

    Args:
        path: the teacher's ``.ckpt`` (CycleGAN, CUT or FastCUT; loaded with weights only).

    Returns:
        The generator in eval mode with gradients off; it maps (N, 3, H, W) in [-1, 1] to the same.

    Raises:
        FileNotFoundError / ValueError naming ``model.distill.teacher`` and the file.
    """
    try:
        gen, _, _ = load_lightning_generator(path)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"model.distill.teacher: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"model.distill.teacher: {exc}") from exc
    gen.requires_grad_(False)
    return gen.eval()


#: A phase's loss function: (iteration context) → (named losses to log, the scalar to backward).
PhaseLosses = Callable[[dict[str, Any]], tuple[dict[str, torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class Phase:
    """One update of a GAN iteration: a loss over the iteration context and the optimisers it steps.

    A model's iteration is a short list of phases (CycleGAN: generators, then discriminators; CUT:
    discriminator, then generator and patch MLP). Every executor — Lightning's eager loop
    (:meth:`TranslatorModule.training_step`) and the fast one (:mod:`models.fast_step`) — runs the
    same phases: optional host-side ``before`` work, then ``losses`` and its backward with the
    ``frozen`` networks' gradients off, then the optimisers' steps. Neither derives a loss itself.

    Attributes:
        name: ``"G"`` or ``"D"`` (logs, graph names).
        losses: the loss function; it may add tensors to the context for later phases (e.g. the
            generators' outputs), and reads only the context, the module's networks and its
            frozen nets (policy, teacher).
        optimizers: indices into ``configure_optimizers``' list that this phase steps; index 0 (the
            generator optimiser) is stepped through Lightning and counts the iteration.
        frozen: networks whose parameters get no gradient in this phase (e.g. D in the G phase).
        before: host-side work on the context before the phase (CycleGAN's image pool), called as
            ``before(ctx, live)``; with ``live=False`` (a CUDA-graph capture or its warm-up) it must
            change no state and only put same-shaped tensors into the context.
    """

    name: str
    losses: PhaseLosses
    optimizers: tuple[int, ...]
    frozen: Sequence[nn.Module] = field(default_factory=tuple)
    before: Callable[[dict[str, Any], bool], None] | None = None


def health_thumbnail(frames: torch.Tensor) -> torch.Tensor:
    """The per-frame summary :func:`translator_health` compares: an 8 × 8 thumbnail, flattened.

    Shape:
        (N, 3, H, W) → (N, 3 · 64), float32.
    """
    return torch.nn.functional.adaptive_avg_pool2d(frames.float(), 8).flatten(1)


def translator_health(
    actions: Any, sim_actions: Any, moved: Any, thumbs: Any, dead_zone: float = 0.05,
    sim_thumbs: Any = None,
) -> dict[str, Any]:
    """Signs that a translator collapsed, from one validation pass (numpy in, floats out).

    - the policy's actions on translated frames collapse onto one value: their spread (std over
      frames, mean over action dimensions) under a quarter of the spread on the sim partners, or
      one turn direction on more than 90 % of the frames where sim frames have at most 70 %;
    - output ≈ input: the translation moves pixels by less than 0.01 on average (in [-1, 1]);
    - constant output: the translated frames differ from each other less than a quarter as much as
      the sim partners do (the spread over frames of 8 × 8 thumbnails, mean over cells), or, without
      sim partners, by less than 0.01. Thumbnails, not mean colours: the sim look is flat, so a
      healthy translation's mean colour hardly changes from frame to frame (jetbot_synth val:
      0.033 on the sim renders) while where things are does.

    Args:
        actions: (N, A) the policy's actions on translated frames.
        sim_actions: (N, A) its actions on the paired sim frames, or None.
        moved: (N,) mean |G(x) − x| per frame.
        thumbs: (N, K) a small summary per translated frame (the validation uses
            :func:`health_thumbnail`, K = 3 · 64, in [-1, 1]).
        dead_zone: the turn-direction dead zone.
        sim_thumbs: (M, K) the same summary of the sim partners, or None.

    Returns:
        ``{"action_spread", "turn_mode_share", "moved", "output_spread", "warnings": [str]}``
        (plus ``"sim_output_spread"`` when ``sim_thumbs`` is given).
    """
    import numpy as np

    from translate.metrics import action_collapse

    spread, mode = action_collapse(actions, dead_zone)
    out: dict[str, Any] = {"action_spread": spread, "turn_mode_share": mode,
                           "moved": float(np.asarray(moved).mean()),
                           "output_spread": float(np.asarray(thumbs).std(axis=0).mean())}
    floor, floor_what = 0.01, "0.01"
    if sim_thumbs is not None and len(sim_thumbs) > 1:
        out["sim_output_spread"] = float(np.asarray(sim_thumbs).std(axis=0).mean())
        floor, floor_what = 0.25 * out["sim_output_spread"], f"a quarter of the sim frames' {out['sim_output_spread']:.4f}"
    warnings_: list[str] = []
    if sim_actions is not None and len(sim_actions) == len(actions):
        s_spread, s_mode = action_collapse(sim_actions, dead_zone)
        if spread < 0.25 * s_spread or (mode > 0.9 and s_mode <= 0.7):
            warnings_.append(
                f"translator health: the policy's actions on translated frames collapsed (spread "
                f"{spread:.3f} vs {s_spread:.3f} on sim frames, one turn direction on {100 * mode:.0f} % "
                f"of frames vs {100 * s_mode:.0f} %): the translation hides what the policy needs")
    if out["moved"] < 0.01:
        warnings_.append(f"translator health: output ≈ input (mean |G(x) − x| {out['moved']:.4f})")
    if out["output_spread"] < floor:
        warnings_.append(f"translator health: near-constant output (frames differ by {out['output_spread']:.4f}, "
                         f"under {floor_what})")
    out["warnings"] = warnings_
    return out


def translator_stall(
    history: Sequence[float], done: float, *, threshold: float = 0.15, min_done: float = 0.4,
    min_checks: int = 3,
) -> str | None:
    """A warning when ``val/gap_closed`` has not left zero by ``min_done`` of the schedule, else None.

    The failure it names: on a real look far from the sim (held-out cool_led) the GPU recipe's
    validation stayed within a few points of zero for most of the 10,000 iterations on 5 of 6
    seeds, while on looks it learns it passes 35 % by the first check; a 20,000-iteration schedule
    lifted one such seed to 73.8 % (README, held-out looks).

    Args:
        history: ``val/gap_closed`` of every validation so far, in order (NaN: undefined, skipped).
        done: the fraction of the schedule's iterations done, in [0, 1].
        threshold: the best value below which the run counts as stalled (0.15 = 15 %).
        min_done: warn only from this fraction of the schedule on.
        min_checks: warn only after this many defined checks.

    Returns:
        One line naming the best value and the longer schedule to try, or None.
    """
    values = [float(v) for v in history if v is not None and math.isfinite(float(v))]
    if len(values) < min_checks or done < min_done or max(values) >= threshold:
        return None
    return (f"translator health: val/gap_closed has stayed below {100 * threshold:.0f} % for "
            f"{len(values)} checks ({100 * done:.0f} % of the schedule; best {100 * max(values) + 0.0:.1f} %): "
            "the translator has not learnt this look yet. A longer schedule can help: on the GPU "
            "recipe 14 + 6 epochs (20,000 iterations; model.stall_extension, on in experiment=gpu) "
            "lifted a stalled look from 6 to 74 % (README, held-out looks)")


def capturable_optimizers(optimizers: list[Any], device: torch.device) -> str | None:
    """Make ``optimizers`` steppable inside a CUDA graph, in place; None, or why they cannot be.

    Every param group gets ``capturable=True`` and its LR as a 0-d float32 tensor on ``device``
    (an LR schedule then fills it in place: a float would be baked into the captured kernels);
    step counters already in the state move to ``device``. Nothing changes when one optimiser
    has no capturable mode.

    Args:
        optimizers: Lightning's optimisers or raw ``torch.optim`` ones.
        device: the CUDA device of the parameters.
    """
    raws = [getattr(o, "optimizer", o) for o in optimizers]
    for raw in raws:
        if any("capturable" not in g for g in raw.param_groups):
            return f"{type(raw).__name__} has no capturable mode"
    for raw in raws:
        for g in raw.param_groups:
            g["capturable"] = True
            lr = g["lr"]
            if not (isinstance(lr, torch.Tensor) and lr.device == device and lr.dtype == torch.float32):
                g["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=device)
        for st in raw.state.values():
            step = st.get("step")
            if isinstance(step, torch.Tensor) and step.device != device:
                st["step"] = step.to(device=device, dtype=torch.float32)
    return None


def eager_optimizers(optimizers: list[Any]) -> None:
    """Undo :func:`capturable_optimizers` in place (float LRs, ``capturable=False``): for an eager
    run resumed from a checkpoint of a run that stepped inside its graphs (a CPU one too)."""
    for o in optimizers:
        for g in getattr(o, "optimizer", o).param_groups:
            if isinstance(g.get("lr"), torch.Tensor):
                g["lr"] = float(g["lr"])
            if g.get("capturable"):
                g["capturable"] = False


def linear_decay_lambda(n_epochs: int, n_epochs_decay: int):  # noqa: ANN201 - a closure
    """The official LR rule: constant for ``n_epochs``, then linear to ~0 over ``n_epochs_decay``.

    ``lr(epoch) = lr0 * (1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1))`` with
    ``epoch`` counted from 0 (the official ``epoch_count`` = 1).
    """

    def rule(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)

    return rule


def stall_extension_schedule(
    spec: Mapping[str, Any] | None, n_epochs: int, n_epochs_decay: int,
) -> tuple[int, int] | None:
    """``model.stall_extension`` checked against the configured schedule: ``(n_epochs, n_epochs_decay)``.

    Args:
        spec: ``{"n_epochs": int, "n_epochs_decay": int}``, the schedule a stalled run switches to
            (:meth:`TranslatorModule.extend_schedule_on_stall`), or None / empty (off).
        n_epochs: the configured constant-LR epochs.
        n_epochs_decay: the configured decay epochs.

    Returns:
        The longer schedule, or None when off.

    Raises:
        ValueError: naming the key, for an unknown key or a schedule that is not longer.
    """
    if not spec:
        return None
    unknown = sorted(set(spec) - {"n_epochs", "n_epochs_decay"})
    if unknown:
        raise ValueError(f"model.stall_extension.{unknown[0]} is not a key; valid: n_epochs, n_epochs_decay")
    try:
        n_new, d_new = int(spec.get("n_epochs", n_epochs)), int(spec.get("n_epochs_decay", n_epochs_decay))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model.stall_extension: n_epochs and n_epochs_decay must be integers ({exc})") from exc
    if n_new < n_epochs or d_new < 0:
        raise ValueError(f"model.stall_extension.n_epochs={n_new} must be at least model.n_epochs={n_epochs} "
                         "(the extension lengthens the constant-LR part, it never cuts it)")
    if n_new + d_new <= n_epochs + n_epochs_decay:
        raise ValueError(f"model.stall_extension ({n_new} + {d_new} epochs) must be longer than the schedule "
                         f"({n_epochs} + {n_epochs_decay})")
    return n_new, d_new


class TranslatorModule(L.LightningModule):
    """Base of the CycleGAN and CUT modules.

    Subclasses build their networks, list an iteration's updates as :class:`Phase` objects
    (:meth:`iteration_phases`) and define ``forward(x)`` as the real→sim generator (the deployable
    path). ``training_step`` runs the phases through Lightning's manual optimisation
    (``step=eager``) or through the fast executor (``step=fast``, :mod:`models.fast_step`). This base holds what the
    two share: optimiser factory, the per-epoch linear-decay schedule, the non-finite-loss guard,
    TensorBoard image strips, and checkpoint state that Lightning does not save by itself (image
    pools, RNG states).

    Only the generator optimiser's ``step`` goes through Lightning (so ``trainer.global_step``
    counts training iterations, not optimiser calls); the others are stepped directly. Mixed
    precision is therefore supported as ``bf16-mixed`` (no grad scaler), not ``16-mixed``.
    """

    automatic_optimization = False
    #: names of ``configure_optimizers``' optimisers, for ``train/lr_<name>`` (subclasses extend)
    optimizer_names: tuple[str, ...] = ("G", "D")

    def __init__(
        self,
        *,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        n_epochs: int = 100,
        n_epochs_decay: int = 100,
        log_images_every_n_steps: int = 500,
        check_finite_every_n_steps: int = 1,
        fused_adam: bool | None = None,
        policy: Mapping[str, Any] | None = None,
        policy_losses: Mapping[str, Any] | None = None,
        val_dead_zone: float = 0.05,
        distill: Mapping[str, Any] | None = None,
        ema_decay: float = 0.0,
        optimizer: Mapping[str, Any] | None = None,
        frozen_policy: TorchPolicy | None = None,
        teacher_generator: nn.Module | None = None,
        diffaug: str | Sequence[str] | None = None,
        stall_extension: Mapping[str, Any] | None = None,
        r1_gamma: float = 0.0,
        colour_match: bool = False,
    ) -> None:
        super().__init__()
        self.lr = lr
        self.betas = (float(betas[0]), float(betas[1]))
        self.n_epochs = n_epochs
        self.n_epochs_decay = n_epochs_decay
        self.log_images_every_n_steps = log_images_every_n_steps
        self.check_finite_every_n_steps = max(1, int(check_finite_every_n_steps))
        self.fused_adam = fused_adam
        self.policy_cfg = policy_config(policy)
        if frozen_policy is not None and not isinstance(frozen_policy, TorchPolicy):
            raise TypeError(f"frozen_policy must be a translate.torch_policy.TorchPolicy, got "
                            f"{type(frozen_policy).__name__}")
        if teacher_generator is not None and not isinstance(teacher_generator, nn.Module):
            raise TypeError(f"teacher_generator must be an nn.Module, got {type(teacher_generator).__name__}")
        # the injected frozen nets: not registered submodules, so neither trained, saved in
        # checkpoints nor wrapped by DDP; without them they are loaded from their config on first use
        self._frozen_policy: TorchPolicy | None = None
        self._teacher: nn.Module | None = None
        if frozen_policy is not None:
            frozen_policy.requires_grad_(False)
            object.__setattr__(self, "_frozen_policy", frozen_policy.eval())
        if teacher_generator is not None:
            teacher_generator.requires_grad_(False)
            object.__setattr__(self, "_teacher", teacher_generator.eval())
        self.policy_weights = PolicyLossWeights(**(policy_losses or {}))
        if self.policy_weights.any() and not self.has_policy:
            on = {k: v for k, v in dataclasses.asdict(self.policy_weights).items()
                  if k in PolicyLossWeights.NEEDS_POLICY and v}
            raise ValueError(
                f"model.policy_losses has non-zero weights {on} but no frozen policy is configured: "
                "set policy.path (or policy=jetbot_synth), or switch them off with "
                + " ".join(f"model.policy_losses.{k}=0" for k in on)
            )
        self.val_dead_zone = val_dead_zone
        self.distill_cfg = DistillConfig(**(distill or {}))
        if self.distill_on and self.distill_cfg.policy > 0 and not self.has_policy:
            raise ValueError(
                "model.distill.policy > 0 needs the frozen policy: set policy.path (or "
                "policy=jetbot_synth), or model.distill.policy=0"
            )
        if not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"model.ema_decay must be in [0, 1) (0 = off), got {ema_decay}")
        self.ema_decay = float(ema_decay)
        self.optimizer_spec = dict(optimizer) if optimizer else {"_target_": "torch.optim.Adam",
                                                                   "betas": list(self.betas)}
        self._optimizer_class()  # a wrong target fails at construction, naming the key
        # DiffAugment on every discriminator input; its own stream, so off leaves every other draw
        self.diffaug_ops = parse_diffaug(diffaug)
        self.diffaug_gen = torch.Generator().manual_seed(torch.initial_seed() + 5)
        if not (math.isfinite(float(r1_gamma)) and float(r1_gamma) >= 0.0):
            raise ValueError(f"model.r1_gamma must be a finite number >= 0 (0 = off), got {r1_gamma}")
        self.r1_gamma = float(r1_gamma)
        self.colour_match = bool(colour_match)
        self._val_outputs: list[dict[str, torch.Tensor]] = []
        self._val_baseline: dict[str, float] | None = None
        self._val_sim_actions: Any = None
        self._val_sim_thumbs: Any = None
        self._val_gap_history: list[float] = []  # val/gap_closed per check (the stall warning)
        self._stall_warned = False
        self.stall_extension = stall_extension_schedule(stall_extension, n_epochs, n_epochs_decay)
        self._stall_extended = False  # the schedule was stretched (saved in checkpoints)

    # -- optimisers ---------------------------------------------------------------------------
    def _optimizer_class(self) -> type[torch.optim.Optimizer]:
        target = str(self.optimizer_spec.get("_target_", "torch.optim.Adam"))
        cls = resolve_target(target, "model.optimizer._target_")
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise ValueError(f"model.optimizer._target_={target!r} is not a torch.optim.Optimizer class")
        return cls

    def make_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        """One optimiser of the model (G, D, CUT's F) from ``model.optimizer``.

        ``model.optimizer`` is a Hydra-style node: ``_target_`` names a ``torch.optim`` class
        (default ``torch.optim.Adam``; ``_partial_`` is accepted and implied), the other entries
        are its keyword arguments (the official ``betas: [0.5, 0.999]``). The learning rate is
        always ``model.lr`` (the linear-decay schedule scales it); optimisers that take ``fused``
        get ``fused=True`` on CUDA unless ``fused_adam`` or the node says otherwise.

        Args:
            params: the parameters to optimise.

        Returns:
            The optimiser.
        """
        cls = self._optimizer_class()
        kwargs: dict[str, Any] = {k: v for k, v in self.optimizer_spec.items()
                                  if k not in ("_target_", "_partial_")}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(float(b) for b in kwargs["betas"])
        if "fused" in inspect.signature(cls).parameters and "fused" not in kwargs:
            fused = self.fused_adam if self.fused_adam is not None else torch.cuda.is_available()
            kwargs["fused"] = bool(fused) or None
        try:
            make: Any = cls
            return make(list(params), lr=self.lr, **kwargs)  # type: ignore[no-any-return]
        except TypeError as exc:
            raise ValueError(f"model.optimizer: {cls.__name__}({', '.join(kwargs)}) failed: {exc}") from exc

    def _schedulers(self, optimizers: list[torch.optim.Optimizer]) -> list[dict[str, Any]]:
        def rule(epoch: int) -> float:  # the module's schedule as it is now (the stall extension changes it)
            return linear_decay_lambda(self.n_epochs, self.n_epochs_decay)(epoch)

        return [
            {"scheduler": torch.optim.lr_scheduler.LambdaLR(o, lr_lambda=rule), "interval": "epoch"}
            for o in optimizers
        ]

    def _start_schedule(self) -> None:
        # An "epoch" of the schedule is num_training_batches iterations, counted from global_step.
        # Lightning re-runs an epoch when resuming from a checkpoint taken on its last batch, so
        # its epoch counter cannot pace the schedule or the stop; the step count can.
        nb = self.trainer.num_training_batches
        self._batches_per_epoch = int(nb) if math.isfinite(nb) and nb > 0 else 0
        max_epochs = self.trainer.max_epochs
        self._schedule_sets_max_steps = bool(
            self.trainer.max_steps in (-1, None) and max_epochs and max_epochs > 0 and self._batches_per_epoch)
        # (a run resumed after a stall extension: load_extra_state already lengthened max_epochs)
        if self._schedule_sets_max_steps and max_epochs:
            self.trainer.fit_loop.epoch_loop.max_steps = max_epochs * self._batches_per_epoch
        self._lr_epoch = -1

    def extend_schedule_on_stall(self, trainer: Any) -> str:
        """Stretch the LR schedule and the run to ``model.stall_extension``, once; returns what it did.

        Called when :func:`translator_stall` fires. The extension only lengthens the constant-LR
        part and the decay, so a run still at constant LR continues on exactly the schedule of a
        run configured with the longer one from the start. A run that already decays, or whose
        length is fixed by ``trainer.max_steps``, keeps its schedule (the returned line says why).

        Args:
            trainer: the Lightning trainer of this run.

        Returns:
            One line for the log.
        """
        assert self.stall_extension is not None
        n_new, d_new = self.stall_extension
        if not getattr(self, "_schedule_sets_max_steps", False) and trainer.max_steps not in (-1, None):
            return (f"model.stall_extension not applied: trainer.max_steps={trainer.max_steps} fixes the "
                    "run's length")
        if self.schedule_epoch() >= self.n_epochs:
            return (f"model.stall_extension not applied: the LR already decays (epoch {self.schedule_epoch() + 1} "
                    f"of {self.n_epochs} + {self.n_epochs_decay})")
        old = (self.n_epochs, self.n_epochs_decay)
        self.n_epochs, self.n_epochs_decay = n_new, d_new  # the LR rule reads these
        self._stall_extended = True
        trainer.fit_loop.max_epochs = n_new + d_new
        nb = getattr(self, "_batches_per_epoch", 0)
        if getattr(self, "_schedule_sets_max_steps", False) and nb:
            trainer.fit_loop.epoch_loop.max_steps = (n_new + d_new) * nb
        self._lr_epoch = -1  # re-derive the LR at the next iteration (schedule epochs are >= 0)
        its = f" ({(n_new + d_new) * nb:,} iterations)" if nb else ""
        return (f"model.stall_extension: training longer, the schedule goes from {old[0]} + {old[1]} "
                f"to {n_new} + {d_new} epochs{its}; trainer.max_time still applies")

    def schedule_epoch(self) -> int:
        """The schedule's epoch: ``global_step // batches_per_epoch``."""
        nb = getattr(self, "_batches_per_epoch", 0)
        return self.global_step // nb if nb else self.current_epoch

    def sync_lr_schedule(self) -> None:
        """Set every optimiser's LR from :meth:`schedule_epoch` (the official per-epoch rule).

        Lightning does not step schedulers under manual optimisation; deriving the LR from the
        step count (instead of counting calls) makes a resumed run follow the same schedule.
        """
        epoch = self.schedule_epoch()
        if epoch == getattr(self, "_lr_epoch", None):
            return
        scheds = self.lr_schedulers()
        if scheds is None:
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            for s in scheds if isinstance(scheds, list) else [scheds]:
                s.last_epoch = epoch - 1  # type: ignore[union-attr]
                s.step()  # type: ignore[union-attr,call-arg]
        self._lr_epoch = epoch
        for name, opt in zip(self.optimizer_names, self.lightning_optimizers(), strict=False):
            self.log(f"train/lr_{name}", float(opt.param_groups[0]["lr"]), on_step=True, on_epoch=False)

    def _global_rank(self) -> int:
        trainer = getattr(self, "_trainer", None)
        return int(getattr(trainer, "global_rank", 0) or 0)

    def offset_random_streams(self, rank: int) -> None:
        """Give DDP rank ``rank`` (> 0) its own random streams, derived from the current states.

        Every rank starts from the same seed (and a resumed run restores rank 0's saved states on
        every rank). Without an offset the ranks would draw the same image-pool swaps and PatchNCE
        positions, and, with ``data.num_workers=0``, the same sim frames and augmentations (the
        dataset draws them from torch's global generator; loader workers are seeded per rank by
        Lightning). Rank 0 keeps its streams, so a 1-process run is unchanged.
        """
        if rank <= 0:
            return
        for gen in self.rank_generators():
            gen.manual_seed(int(torch.randint(2**62, (1,), generator=gen).item()) + 1000 * rank)
        torch.manual_seed(int(torch.randint(2**62, (1,)).item()) + 1000 * rank)

    def setup(self, stage: str) -> None:
        """Offset the random streams by the DDP rank (a resume re-offsets after its restore)."""
        if stage == "fit":
            self.offset_random_streams(self._global_rank())

    def on_fit_start(self) -> None:
        precision = str(getattr(self.trainer, "precision", "32"))
        if precision.startswith("16"):
            raise ValueError(
                f"trainer.precision={precision!r} is not supported by the GAN modules (their "
                "secondary optimisers step without a grad scaler); use 'bf16-mixed' or '32-true'"
            )
        self.fit_colour_match(getattr(self.trainer, "datamodule", None))

    def real_generator_spec(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The real→sim generator's config: ``spec`` with ``colour_match`` (a white-balance gain
        layer first, :class:`models.networks.ChannelGain`) set when
        ``model.colour_match`` is on (the sim→real generator of CycleGAN keeps ``spec`` as is).

        Raises:
            ValueError: ``model.colour_match`` with a ``_target_`` generator (only the project's
                ResNet generator has the colour layer).
        """
        if not self.colour_match:
            return dict(spec)
        if "_target_" in spec:
            raise ValueError(f"model.colour_match=true needs the project's ResNet generator, but "
                             f"model.generator._target_={spec['_target_']!r}; set model.colour_match=false")
        return {**spec, "colour_match": True}

    def fit_colour_match(self, datamodule: Any) -> None:
        """Fit every :class:`models.networks.ChannelGain` of this module (the real→sim generator's
        and its weight average's) from ``datamodule.colour_means()``: the gain that takes the real
        training frames' per-channel mean to the sim frames'. Once: a layer already fitted (a
        resumed run's checkpoint) is left as it is.

        Raises:
            ValueError: colour layers to fit but no data module with ``colour_means()``.
        """
        layers = [m for m in self.modules() if isinstance(m, ChannelGain) and not bool(m.fitted)]
        if not layers:
            return
        means_of = getattr(datamodule, "colour_means", None)
        if means_of is None:
            raise ValueError("model.colour_match=true needs the training data module "
                             "(datasets.datamodule.TranslationDataModule) to measure the frames' colours")
        means = means_of()
        real, sim = means["real"], means["sim"]
        for m in layers:
            m.fit(real, sim)

        def fmt(t: Any) -> str:
            return "/".join(f"{float(v):.3f}" for v in t)

        log.info("colour match: real → sim gain per channel (RGB) %s (channel means in [-1, 1]: real %s, "
                 "sim %s)", fmt(layers[0].gain), fmt(real), fmt(sim))

    @staticmethod
    def set_requires_grad(nets: Iterable[nn.Module | None], flag: bool) -> None:
        """Freeze or unfreeze networks (the official ``set_requires_grad``)."""
        for net in nets:
            if net is not None:
                for p in net.parameters():
                    p.requires_grad_(flag)

    # -- DiffAugment on the discriminators' inputs ----------------------------------------------
    def discriminator_calls(self) -> int:
        """How many discriminator inputs one iteration has (each gets its own augmentation)."""
        return 0

    def draw_diffaug(self, ctx: dict[str, Any], live: bool = True) -> None:
        """Host-side draw of ``ctx["diffaug"]``, (calls, N, 7), when ``model.diffaug`` is on
        (identity parameters under a graph capture); see :mod:`models.augment`."""
        if not self.diffaug_ops:
            return
        real = ctx["real"]
        params = draw_diffaug_params(self.discriminator_calls(), int(real.shape[0]), int(real.shape[-2]),
                                     int(real.shape[-1]), self.diffaug_gen, live)
        ctx["diffaug"] = params.to(real.device, non_blocking=True)

    def discriminate_real(self, disc: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Discriminator ``disc`` on its real input ``x`` (N, 3, H, W): ``(D(x), R1 penalty)``,
        the penalty (:func:`models.losses.discriminate_with_r1`, from the same D pass) only when
        ``model.r1_gamma`` > 0, else None. A model adds ``model.r1_gamma / 2`` × the penalty to
        that discriminator's loss."""
        if self.r1_gamma <= 0:
            return disc(x), None
        return discriminate_with_r1(disc, x)

    def d_input(self, x: torch.Tensor, aug: torch.Tensor | None, call: int) -> torch.Tensor:
        """A discriminator's input: ``x`` (N, 3, H, W), augmented with call ``call``'s parameters
        of ``aug`` (``ctx["diffaug"]``) when DiffAugment is on, else ``x`` itself."""
        if aug is None or not self.diffaug_ops:
            return x
        return diff_augment(x, aug[call], self.diffaug_ops)

    # -- the frozen policy: validation by action agreement and policy-consistency losses -----
    @property
    def has_policy(self) -> bool:
        """Whether a frozen policy is injected (``frozen_policy``) or configured (``policy.path``)."""
        return self._frozen_policy is not None or self.policy_cfg is not None

    @property
    def has_validation(self) -> bool:
        """Whether validation by action agreement runs (a frozen policy is there)."""
        return self.has_policy

    @property
    def distill_on(self) -> bool:
        """Whether distillation runs: a teacher injected or configured, and a non-zero weight."""
        cfg = self.distill_cfg
        return (self._teacher is not None or bool(cfg.teacher)) and cfg.weighted

    @property
    def frozen_policy(self) -> TorchPolicy | None:
        """The frozen sim policy as a differentiable module, on this module's device: the one
        injected as ``frozen_policy`` (what ``train_translate.py`` does), else loaded from
        ``policy.path`` on first use; None without either. Not a registered submodule, so it is
        neither trained nor saved in checkpoints."""
        if self._frozen_policy is None:
            if self.policy_cfg is None:
                return None
            tp = load_torch_policy(self.policy_cfg["path"], self.policy_cfg.get("spec"))
            object.__setattr__(self, "_frozen_policy", tp)
        pol = self._frozen_policy
        assert pol is not None
        if next(iter(pol.buffers()), torch.empty(0)).device != self.device:
            pol.to(self.device)
        return pol

    def paired_on(self, batch: Mapping[str, Any]) -> bool:
        """True when the batch holds paired frames and a paired term (``paired``,
        ``paired_pixel``) is on."""
        w = self.policy_weights
        return "paired_real" in batch and max(w.paired, w.paired_pixel) > 0

    @staticmethod
    def paired_frames(batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's pairs as one batch of frames: ``paired_real``, ``paired_sim`` of shape
        (N, 3, H, W), or (N, k, 3, H, W) with k pairs per item, → two (N·k, 3, H, W)."""
        return batch["paired_real"].flatten(0, -4), batch["paired_sim"].flatten(0, -4)

    def paired_losses(self, batch: Mapping[str, Any], generator: nn.Module) -> dict[str, torch.Tensor]:
        """The terms on paired frames, when the batch holds ``paired_real`` / ``paired_sim``.

        ``loss_paired_pixel`` = ``paired_pixel`` × L1(G(x_real), y_sim) and ``loss_policy_paired``
        = ``paired`` × |π(G(x_real)) − π(y_sim)|, on one generator pass.

        Args:
            batch: the iteration context; ``paired_real``, ``paired_sim``: (N, 3, H, W) or
                (N, k, 3, H, W) in [-1, 1] (:meth:`paired_frames`).
            generator: the real→sim generator (CycleGAN's G_A, CUT's G).

        Returns:
            The named terms; empty when no pairs or both weights are 0.
        """
        w = self.policy_weights
        if not self.paired_on(batch):
            return {}
        real, sim = self.paired_frames(batch)
        fake = generator(real)
        out: dict[str, torch.Tensor] = {}
        if w.paired_pixel > 0:
            out["loss_paired_pixel"] = w.paired_pixel * F.l1_loss(fake.float(), sim.float())
        if w.paired > 0:
            out.update(self.policy_consistency(sim, fake, "paired", w.paired))
        return out

    def policy_consistency(
        self, target_images: torch.Tensor, images: torch.Tensor, name: str, weight: float
    ) -> dict[str, torch.Tensor]:
        """``weight`` × |π(images) − π(target_images)| on clamped mu (+ features if configured).

        The policy is frozen and the target branch detached, so the gradient reaches only the
        generator(s) that produced ``images``.

        Args:
            target_images: (N, 3, H, W) in [-1, 1] whose actions are the target (e.g. sim frames).
            images: (N, 3, H, W) in [-1, 1] produced by the generator(s).
            name: loss name suffix (logged as ``train/loss_policy_<name>``).
            weight: the loss weight; 0 returns nothing and costs nothing.

        Returns:
            ``{"loss_policy_<name>": scalar}`` or an empty dict.
        """
        if weight <= 0:
            return {}
        pol = self.frozen_policy
        assert pol is not None
        with torch.no_grad():
            tgt = pol(target_images.float())
        out = pol(images.float())
        loss = F.l1_loss(out.action, tgt.action)
        fw = self.policy_weights.features
        if fw > 0 and out.features is not None and tgt.features is not None:
            scale = tgt.features.detach().abs().mean().clamp_min(1e-6)
            loss = loss + fw * F.mse_loss(out.features / scale, tgt.features / scale)
        return {f"loss_policy_{name}": weight * loss}

    # -- distillation from a trained teacher ------------------------------------------------------
    @property
    def teacher(self) -> nn.Module | None:
        """The frozen teacher generator of ``model.distill`` on this module's device, or None.

        The one injected as ``teacher_generator`` (what ``train_translate.py`` does), else loaded
        from ``model.distill.teacher`` on first use (weights only). Not a registered submodule:
        neither trained, saved in checkpoints nor wrapped by DDP. Raises FileNotFoundError /
        ValueError naming the file.
        """
        if not self.distill_on:
            return None
        if self._teacher is None:
            object.__setattr__(self, "_teacher", load_teacher_generator(str(self.distill_cfg.teacher)))
        assert self._teacher is not None
        if next(self._teacher.parameters()).device != self.device:
            self._teacher.to(self.device)
        return self._teacher

    def distill_losses(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Distillation terms of ``model.distill`` (empty when off).

        Args:
            real: (N, 3, H, W) in [-1, 1], the real frames the student translated.
            fake: (N, 3, H, W) in [-1, 1], the student's translation of ``real``.

        Returns:
            ``{"loss_distill": pixel × L1(fake, teacher(real))}`` and, with ``policy > 0``,
            ``{"loss_policy_distill": ...}``; weights of 0 leave their term out.
        """
        teacher = self.teacher
        if teacher is None:
            return {}
        with torch.no_grad():
            target = teacher(real.float()).to(fake.dtype)
        cfg = self.distill_cfg
        losses: dict[str, torch.Tensor] = {}
        if cfg.pixel > 0:
            losses["loss_distill"] = cfg.pixel * F.l1_loss(fake, target)
        losses.update(self.policy_consistency(target, fake, "distill", cfg.policy))
        return losses

    @staticmethod
    def extra_generator_loss(losses: Mapping[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """Sum of the terms added on top of a model's own ``loss_G`` (policy, paired, distillation).

        Args:
            losses: the iteration's named losses.
            like: any tensor on the target device (for the zero when there are none).

        Returns:
            Scalar: the sum of every ``loss_policy_*``, ``loss_paired_*`` and ``loss_distill`` entry.
        """
        extra = [v for k, v in losses.items()
                 if k.startswith(("loss_policy", "loss_paired")) or k == "loss_distill"]
        return torch.stack(extra).sum() if extra else torch.zeros((), device=like.device)

    def validation_directions(self) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor], str, str]]:
        """The translations shown in TensorBoard at each validation: ``(tag, generator, input key,
        partner key)``; real→sim here, models with a sim→real generator add it."""
        return [("val/real|translated|sim", self, "real", "sim")]

    def log_validation_strips(self, batch: Mapping[str, Any], translated: torch.Tensor | None = None) -> None:
        """Full-frame strips of the first validation batch (input | translation | paired partner),
        one per :meth:`validation_directions` entry, at the current step (not during the sanity check)."""
        trainer = getattr(self, "_trainer", None)
        if trainer is None or trainer.sanity_checking:
            return
        with torch.no_grad():
            for tag, gen, src, partner in self.validation_directions():
                if src not in batch or partner not in batch:
                    continue
                # ``self`` runs forward(), i.e. the deployable generator (the average when on)
                out = translated if (translated is not None and src == "real" and gen is self) else gen(batch[src])
                self.add_strip(tag, [batch[src], out, batch[partner]], self.global_step)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pol = self.frozen_policy
        if pol is None:
            if batch_idx == 0:
                self.log_validation_strips(batch)
            return
        with torch.no_grad():
            translated = self(batch["real"])  # forward(): the deployable generator
            if batch_idx == 0:
                self.log_validation_strips(batch, translated)
            out = {
                "ref": batch["action"].float(),
                "translated": pol(translated).action,
                # health: how far the translation moved each frame, and an 8 x 8 thumbnail of it
                "moved": (translated.float() - batch["real"].float()).abs().mean(dim=(1, 2, 3)),
                "thumb": health_thumbnail(translated),
            }
            pair = self.__dict__.get("_ema_pair")
            if pair is not None:
                # the live (not averaged) generator too: val/*_live is what the average buys
                out["translated_live"] = pol(getattr(self, pair[0])(batch["real"])).action
            if self._val_baseline is None:
                # the report's stages: raw = the real frame as recorded (not lens-corrected)
                out["raw"] = pol(batch.get("raw", batch["real"])).action
                out["sim"] = pol(batch["sim"]).action
                out["sim_thumb"] = health_thumbnail(batch["sim"])
        self._val_outputs.append({k: v.detach().float().cpu() for k, v in out.items()})

    def on_validation_epoch_end(self) -> None:
        """Log ``val/*`` by the report's definitions (:func:`translate.metrics.action_metrics`,
        :func:`translate.metrics.gap_closed`) over every validation frame; ``val/gap_closed`` is
        NaN (never selected) when there is no gap to close."""
        from translate.metrics import action_metrics, gap_closed

        if not self._val_outputs:
            return
        cat = {k: torch.cat([o[k] for o in self._val_outputs]).numpy() for k in self._val_outputs[0]}
        self._val_outputs.clear()
        ref = cat["ref"]
        if self._val_baseline is None and "raw" in cat:
            self._val_sim_actions = cat["sim"]
            self._val_sim_thumbs = cat["sim_thumb"]
            self._val_baseline = {
                "mae_raw": action_metrics(cat["raw"], ref, dead_zone=self.val_dead_zone)["action_mae"],
                "mae_sim": action_metrics(cat["sim"], ref, dead_zone=self.val_dead_zone)["action_mae"],
            }
        am = action_metrics(cat["translated"], ref, dead_zone=self.val_dead_zone)
        metrics = {"val/action_mae": am["action_mae"], "val/turn_agreement": am.get("turn_agreement", math.nan),
                   "val/frames": float(len(ref))}
        if self._val_baseline is not None:
            b = self._val_baseline
            value, _ = gap_closed(b["mae_raw"], am["action_mae"], b["mae_sim"])
            metrics["val/gap_closed"] = math.nan if value is None else value
            metrics["val/action_mae_raw"] = b["mae_raw"]
            metrics["val/action_mae_sim"] = b["mae_sim"]
        if "translated_live" in cat and self._val_baseline is not None:
            live = action_metrics(cat["translated_live"], ref, dead_zone=self.val_dead_zone)
            value, _ = gap_closed(self._val_baseline["mae_raw"], live["action_mae"], self._val_baseline["mae_sim"])
            metrics["val/gap_closed_live"] = math.nan if value is None else value
            metrics["val/turn_agreement_live"] = live.get("turn_agreement", math.nan)
        health = translator_health(cat["translated"], self._val_sim_actions, cat["moved"], cat["thumb"],
                                   self.val_dead_zone, sim_thumbs=self._val_sim_thumbs)
        metrics.update({f"val/{k}": v for k, v in health.items() if k != "warnings"})
        for msg in health["warnings"]:
            log.warning("step %d: %s", self.global_step, msg)
        trainer = getattr(self, "_trainer", None)
        if "val/gap_closed" in metrics and trainer is not None and not trainer.sanity_checking:
            self._val_gap_history.append(float(metrics["val/gap_closed"]))
            stall = translator_stall(self._val_gap_history, self._schedule_done(trainer))
            if self.stall_extension is not None and not self._stall_warned:
                # every rank validates its own shard: rank 0's verdict is the run's
                stall = trainer.strategy.broadcast(stall, src=0) if trainer.world_size > 1 else stall
            if stall is not None and not self._stall_warned:
                remedy = self.extend_schedule_on_stall(trainer) if self.stall_extension is not None else None
                if getattr(trainer, "is_global_zero", True):  # once per run, not once per rank
                    log.warning("step %d: %s", self.global_step, stall)
                    if remedy:
                        log.warning("step %d: %s", self.global_step, remedy)
                self._stall_warned = True
            nb = getattr(self, "_batches_per_epoch", 0)
            if self.stall_extension is not None and nb:  # TensorBoard shows when a run switched
                metrics["val/schedule_iterations"] = float((self.n_epochs + self.n_epochs_decay) * nb)
        for k, v in metrics.items():
            self.log(k, v, prog_bar=k in ("val/gap_closed", "val/turn_agreement"), sync_dist=True)

    # -- the iteration: phases, run by Lightning's eager loop or the fast executor ----------------
    def trainable_nets(self) -> list[nn.Module]:
        """The networks this module trains (their gradients are switched per phase)."""
        raise NotImplementedError

    def iteration_phases(self) -> list[Phase]:
        """The updates of one iteration, in order (see :class:`Phase`)."""
        raise NotImplementedError

    def prepare_iteration(self, ctx: dict[str, Any], live: bool = True) -> None:
        """Host-side draws before the phases (CUT: flip and PatchNCE positions); none by default.

        With ``live=False`` (a CUDA-graph capture) it changes no state and puts placeholders of
        the right shapes into ``ctx``.
        """

    def log_iteration(self, ctx: dict[str, Any]) -> None:
        """TensorBoard image strips of an iteration (every ``log_images_every_n_steps``)."""

    def enter_phase(self, phase: Phase) -> None:
        """Gradients on for every trained network except the phase's frozen ones."""
        self.set_requires_grad(self.trainable_nets(), True)
        self.set_requires_grad(phase.frozen, False)

    @staticmethod
    def step_optimizers(optimizers: Sequence[Any], phase: Phase) -> None:
        """Step the phase's optimisers; index 0 through Lightning (it counts the iteration)."""
        for i in phase.optimizers:
            opt = optimizers[i]
            if i == 0:
                opt.step()
            else:
                getattr(opt, "optimizer", opt).step()

    def lightning_optimizers(self) -> list[Any]:
        """``self.optimizers()`` as a list."""
        opts = self.optimizers()
        return list(opts) if isinstance(opts, (list, tuple)) else [opts]

    def eager_iteration(
        self,
        batch: dict[str, Any],
        *,
        body: Callable[[Phase, dict[str, Any]], dict[str, torch.Tensor]] | None = None,
        step: bool = True,
        live: bool = True,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """One iteration, every phase in order, op by op: the one phase loop of the project.

        Args:
            batch: the loader's batch (``real``, ``sim``, ...).
            body: ``(phase, ctx) -> named losses``: a phase's losses and backward. Default:
                Lightning's ``manual_backward`` (``step=eager``); the fast executor passes its
                autocast one.
            step: zero the phase's gradients before it and step its optimisers after it (off
                for a CUDA-graph warm-up or a FLOP count).
            live: draw the host-side randomness for real (off: placeholders, no state change).

        Returns:
            ``(losses, ctx)``: the named losses of every phase and the iteration context.
        """
        body = body or self._lightning_body
        opts = self.lightning_optimizers() if step else []
        ctx = dict(batch)
        self.prepare_iteration(ctx, live=live)
        losses: dict[str, torch.Tensor] = {}
        for phase in self.iteration_phases():
            if phase.before is not None:
                phase.before(ctx, live)
            if step:
                for i in phase.optimizers:
                    opts[i].zero_grad(set_to_none=True)
            losses.update(body(phase, ctx))
            if step:
                self.step_optimizers(opts, phase)
        return losses, ctx

    def _lightning_body(self, phase: Phase, ctx: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.enter_phase(phase)
        named, total = phase.losses(ctx)
        self.manual_backward(total)
        return named

    @property
    def executor(self) -> Any:
        """The fast executor of ``step=fast`` (:class:`models.fast_step.FastExecutor`), or None."""
        return self.__dict__.get("_executor")

    def set_executor(self, executor: Any) -> None:
        """Run training iterations through ``executor`` (None: Lightning's eager loop)."""
        self.__dict__["_executor"] = executor

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.sync_lr_schedule()
        step = self.global_step
        if self.executor is not None:
            losses, ctx = self.executor.run(self, batch)
        else:
            losses, ctx = self.eager_iteration(batch)
        self.check_finite(losses, step)
        self.update_ema(step)
        self.log_losses(losses, int(batch["real"].shape[0]))
        self.log_iteration(ctx)

    def on_train_start(self) -> None:
        if self.executor is not None:
            self.executor.setup(self)
        if not getattr(self.executor, "opt_in_graph", False):
            eager_optimizers(self.lightning_optimizers())
        self._match_optimizer_state_layout()
        self._start_schedule()

    def _match_optimizer_state_layout(self) -> None:
        # Adam's moments must have their parameter's strides: fused / multi-tensor kernels walk
        # the storage flat, so a contiguous moment next to a channels_last weight (a checkpoint of
        # a step=fast run resumed eagerly, or the reverse) would pair the wrong elements.
        for opt in self.lightning_optimizers():
            raw = getattr(opt, "optimizer", opt)
            for p, st in raw.state.items():
                for k, v in list(st.items()):
                    if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                        st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)

    # -- guards and logging -------------------------------------------------------------------
    def check_finite(self, losses: Mapping[str, torch.Tensor], step: int) -> None:
        """Raise :class:`NonFiniteLossError` naming the first non-finite loss and the step.

        Args:
            losses: named scalar losses of this iteration.
            step: the iteration's index (``global_step`` before its optimiser steps).

        Checked every ``check_finite_every_n_steps`` iterations (a check synchronises the GPU).
        """
        if step % self.check_finite_every_n_steps:
            return
        values = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
        if bool(torch.isfinite(values).all()):
            return
        for name, v in losses.items():
            val = float(v.detach().float().reshape(()))
            if not math.isfinite(val):
                raise NonFiniteLossError(
                    f"loss {name} became {val} at step {step} (epoch {self.schedule_epoch()}); "
                    "the run stopped"
                )

    def log_losses(self, losses: Mapping[str, torch.Tensor], batch_size: int) -> None:
        """Log every loss as ``train/<name>`` (progress bar shows the main ones).

        Only on the steps Lightning writes logs, and as CPU values read in one copy: Lightning
        turns the progress-bar values into numbers after every batch, and a value left on the GPU
        would make that a GPU sync every iteration (under the fast executor it also is a copy, as
        a CUDA graph overwrites its outputs on the next replay).
        """
        trainer = getattr(self, "_trainer", None)
        connector = getattr(trainer, "_logger_connector", None)
        if connector is not None and not connector.should_update_logs:
            return
        names = list(losses)
        if not names:
            return
        values = torch.stack([losses[n].detach().float().reshape(()) for n in names]).cpu()
        for name, v in zip(names, values, strict=True):
            self.log(f"train/{name}", v, on_step=True, on_epoch=False,
                     prog_bar=name in ("loss_G", "loss_D"), batch_size=batch_size)

    def log_image_strip(self, tag: str, images: list[torch.Tensor]) -> None:
        """Log a strip (columns = ``images``, rows = first 4 samples) to TensorBoard.

        Args:
            tag: TensorBoard tag, e.g. ``train/real|translated|cycle``.
            images: tensors (N, 3, H, W) in [-1, 1] of equal size.
        """
        every = self.log_images_every_n_steps
        if not every or self.global_step % every:
            return
        self.add_strip(tag, images, self.global_step)

    def log_paired_strip(self, ctx: Mapping[str, Any], generator: nn.Module) -> None:
        """At image-logging steps, the paired frames of the batch (``data.paired_dir`` or the
        random-camera pairs) as ``train/paired_real|translated|paired_sim``: one extra forward
        pass without gradients, nothing when the batch has no pairs or the paired terms are off.

        Args:
            ctx: the iteration context; ``paired_real`` / ``paired_sim``: (N, 3, H, W) or
                (N, k, 3, H, W) in [-1, 1].
            generator: the real→sim generator.
        """
        every = self.log_images_every_n_steps
        if not every or self.global_step % every or not self.paired_on(ctx):
            return
        real, sim = self.paired_frames(ctx)
        with torch.no_grad():
            fake = generator(real)
        self.add_strip("train/paired_real|translated|paired_sim", [real, fake, sim], self.global_step)

    def add_strip(self, tag: str, images: list[torch.Tensor], step: int) -> None:
        """Write one strip to TensorBoard now (no-op without a TensorBoard logger).

        Args:
            tag: TensorBoard tag.
            images: tensors (N, 3, H, W) in [-1, 1] of equal size; columns, first 4 samples as rows.
            step: the x-axis step.
        """
        exp = getattr(self.logger, "experiment", None)
        if exp is None or not hasattr(exp, "add_image"):
            return
        size = tuple(images[0].shape[-2:])
        cols = [img.detach().float() if tuple(img.shape[-2:]) == size
                else F.interpolate(img.detach().float(), size=size, mode="bilinear", align_corners=False)
                for img in images]
        rows = [torch.cat([img[i] for img in cols], dim=2) for i in range(min(4, cols[0].shape[0]))]
        grid = torch.cat(rows, dim=1).add(1).div(2).clamp(0, 1).cpu()
        exp.add_image(tag, grid, step)

    # -- checkpoint state ---------------------------------------------------------------------
    def rank_generators(self) -> list[torch.Generator]:
        """The module's own random generators (DiffAugment's here; pools, patch sampling in the
        models); override to extend, starting from ``super().rank_generators()``."""
        return [self.diffaug_gen]

    def extra_state(self) -> dict[str, Any]:
        """State beyond parameters and optimisers (DiffAugment's stream and the validation history
        here; image pools, samplers in the models); override to extend ``super().extra_state()``."""
        state = {"diffaug_gen": self.diffaug_gen.get_state(),
                 "val_gap_history": list(self._val_gap_history), "stall_warned": self._stall_warned}
        if self._stall_extended:
            state["stall_extended"] = [int(self.n_epochs), int(self.n_epochs_decay)]
        return state

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned (override to extend, calling super)."""
        if "diffaug_gen" in state:
            self.diffaug_gen.set_state(state["diffaug_gen"])
        self._val_gap_history = [float(v) for v in state.get("val_gap_history", [])]
        self._stall_warned = bool(state.get("stall_warned", False))
        if state.get("stall_extended"):
            self.n_epochs, self.n_epochs_decay = (int(v) for v in state["stall_extended"])
            self._stall_extended = True
            trainer = getattr(self, "_trainer", None)
            if trainer is not None:  # before the fit loop's first "done?" check of a resumed run
                trainer.fit_loop.max_epochs = self.n_epochs + self.n_epochs_decay

    def _schedule_done(self, trainer: Any) -> float:
        """The fraction of the run's iterations done (``global_step`` over Lightning's estimate of
        the total; by epochs of ``n_epochs + n_epochs_decay`` when it has none)."""
        try:
            total = float(trainer.estimated_stepping_batches)
        except Exception:  # noqa: BLE001 - no loader yet, or an infinite one
            total = math.inf
        if math.isfinite(total) and total > 0:
            return min(1.0, self.global_step / total)
        return min(1.0, (self.current_epoch + 1) / max(1, self.n_epochs + self.n_epochs_decay))

    def remember_generator(self, kwargs: Mapping[str, Any], prefix: str) -> None:
        """Record the real→sim generator's build kwargs and state_dict prefix for checkpoints.

        Saved as ``checkpoint["translator_generator"]``, so the generator can be rebuilt from a
        checkpoint with :func:`models.networks.build_generator` alone
        (:func:`models.checkpointing.load_lightning_generator`), without this module's class.
        """
        self.__dict__["_generator_record"] = {"kwargs": dict(kwargs), "prefix": prefix}

    def init_ema(self) -> None:
        """Build the exponential moving average of the real→sim generator (``model.ema_decay`` > 0).

        Call at the end of a subclass's ``__init__``, after :meth:`remember_generator` and the
        networks. The average is a frozen copy registered as ``<generator>_ema`` (so it is in
        every checkpoint and a resumed run continues it exactly); the remembered prefix moves to
        it, so validation, best-checkpoint selection and the export all use the averaged weights.
        GAN generators oscillate from one check to the next; their weight average does not
        (Yazıcı et al. 2019, "The unusual effectiveness of averaging in GAN training").
        """
        if self.ema_decay <= 0:
            return
        record = self.__dict__["_generator_record"]
        live_name = str(record["prefix"]).rstrip(".")
        if live_name.endswith("_ema"):
            return
        ema = copy.deepcopy(getattr(self, live_name)).requires_grad_(False)
        setattr(self, f"{live_name}_ema", ema)
        self.__dict__["_ema_pair"] = (live_name, f"{live_name}_ema")
        record["prefix"] = f"{live_name}_ema."

    def update_ema(self, step: int) -> None:
        """Move the averaged generator toward the live one after an iteration's optimiser steps.

        ``ema ← ema + (1 − d) · (live − ema)`` with ``d = min(ema_decay, (1 + t) / (10 + t))`` at
        iteration ``t = step`` (the usual warm-up: early weights are forgotten fast). No-op when
        off. Called at the end of ``training_step``, so a checkpoint taken after the iteration
        (the callbacks' ``on_train_batch_end``) holds the updated average.
        """
        pair = self.__dict__.get("_ema_pair")
        if pair is None:
            return
        live, ema = (getattr(self, n) for n in pair)
        t = int(step)
        decay = min(self.ema_decay, (1.0 + t) / (10.0 + t))
        with torch.no_grad():
            ema_p = [p for p in ema.parameters()]
            live_p = [p.detach() for p in live.parameters()]
            torch._foreach_lerp_(ema_p, live_p, 1.0 - decay)
            for b_ema, b in zip(ema.buffers(), live.buffers(), strict=True):
                b_ema.copy_(b)

    def deployable_generator(self) -> nn.Module:
        """The real→sim network alone, what ``forward(x)`` runs: what the export writes (not the
        discriminators, patch MLP or a frozen policy the module holds).

        Returns:
            The generator named by :meth:`remember_generator`'s prefix (``netG_A`` / ``netG``).

        Shape:
            - the generator maps :math:`(N, 3, H, W)` in [-1, 1] to the same shape.
        """
        record = self.__dict__.get("_generator_record")
        if record is None:
            raise RuntimeError(f"{type(self).__name__} did not call remember_generator()")
        net = getattr(self, str(record["prefix"]).rstrip("."))
        assert isinstance(net, nn.Module)
        return net

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record = self.__dict__.get("_generator_record")
        if record is not None:
            checkpoint["translator_generator"] = {"kwargs": dict(record["kwargs"]), "prefix": record["prefix"],
                                                  "name": str(getattr(self, "name", ""))}
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["translator_state"] = {"extra": self.extra_state(), "rng": rng}
        trainer = getattr(self, "_trainer", None)
        if trainer is not None:
            # the lens correction the run trained with (None: none), so an export keeps it
            correction = getattr(getattr(trainer, "datamodule", None), "correction", None)
            checkpoint["camera_correction"] = correction.to_dict() if correction is not None else None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("translator_state")
        if not state:
            return
        self.load_extra_state(state.get("extra", {}))
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        # the checkpoint holds rank 0's states: every other rank derives its own again
        self.offset_random_streams(self._global_rank())
