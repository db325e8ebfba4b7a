"""The ``step=fast`` executor: a translator's own iteration phases as few, large GPU launches (bf16, channels_last, CUDA graphs, torch.compile)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from models.base import Phase, TranslatorModule, capturable_optimizers

__all__ = ["FastExecutor", "StepConfig", "build_executor"]

log = logging.getLogger(__name__)

STEP_NAMES = ("eager", "fast")


@dataclass(frozen=True)
class StepConfig:
    """How training iterations run (config group ``step``); never what they compute.

    Attributes:
        name: ``eager`` (Lightning's loop, one kernel launch per op) or ``fast``
            (:class:`FastExecutor`).
        cuda_graph: capture each phase's forward + backward once and replay it (removes the
            per-kernel launch cost that binds a batch-1 GAN step). CUDA only; on a CPU the fast
            executor runs the same phases eagerly.
        channels_last: NHWC memory format for the trained networks and the batch (cuDNN's fast
            layout for convolutions).
        compile: ``torch.compile`` the trained networks in place (Inductor fuses norms,
            activations and padding); compiled during the warm-up, before the capture.
        cudnn_benchmark: let cuDNN time and pick its algorithms for the fixed shapes.
        warmup: eager iterations before the capture (autotuning, optimiser state, compilation).
        optimizer_in_graph: put each phase's optimiser steps inside its CUDA graph too
            (capturable Adam, the LR a device tensor that the LR schedule fills in place), so an
            iteration is one replay per phase and nothing else on the host. One process only:
            under DDP the gradients are averaged between replay and step, which stay eager; an
            optimiser without a capturable mode (e.g. SGD) also steps eagerly.

    bf16 follows the trainer: ``trainer.precision=bf16-mixed`` autocasts every phase.
    """

    name: str = "eager"
    cuda_graph: bool = True
    channels_last: bool = True
    compile: bool = False
    cudnn_benchmark: bool = True
    warmup: int = 3
    optimizer_in_graph: bool = False

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> StepConfig:
        """Build from the ``step`` config group; a wrong key or name is an error naming it.

        Raises:
            ValueError: ``step.<key>`` is unknown (the message lists the valid keys) or
                ``step.name`` is not ``eager`` / ``fast``.
        """
        data = dict(cfg or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"step.{unknown[0]} is not a step setting; valid keys: {', '.join(valid)}")
        out = cls(**data)
        if out.name not in STEP_NAMES:
            raise ValueError(f"step.name={out.name!r}: choose one of {', '.join(STEP_NAMES)}")
        if int(out.warmup) < 1:
            raise ValueError(f"step.warmup={out.warmup}: needs at least 1 eager iteration before a capture")
        return out


def build_executor(cfg: Mapping[str, Any] | StepConfig | None) -> FastExecutor | None:
    """The executor for a ``step`` config: None for ``eager`` (Lightning's loop), else a
    :class:`FastExecutor`."""
    step = cfg if isinstance(cfg, StepConfig) else StepConfig.from_mapping(cfg)
    return FastExecutor(step) if step.name == "fast" else None


def _copy_host_values(static: dict[str, Any], new: Mapping[str, Any]) -> None:
    """Copy the host-side values of ``new`` into the captured static tensors of ``static``."""
    for key, value in new.items():
        if key not in static:
            raise RuntimeError(f"step=fast: context entry {key!r} appeared after the CUDA-graph capture")
        _copy_into(static[key], value, key)


def _copy_into(dst: Any, src: Any, key: str) -> None:
    if dst is src:
        return
    if isinstance(dst, Tensor):
        if not isinstance(src, Tensor) or src.shape != dst.shape:
            got = tuple(src.shape) if isinstance(src, Tensor) else type(src).__name__
            raise RuntimeError(f"step=fast: {key!r} changed from {tuple(dst.shape)} to {got} after "
                               "the CUDA-graph capture (graphs need fixed shapes)")
        dst.copy_(src, non_blocking=True)
    elif isinstance(dst, (list, tuple)):
        if not isinstance(src, (list, tuple)) or len(src) != len(dst):
            raise RuntimeError(f"step=fast: {key!r} changed its structure after the capture")
        for i, (d, s) in enumerate(zip(dst, src, strict=True)):
            _copy_into(d, s, f"{key}[{i}]")


def _count_step(optimizer: Any) -> None:
    """Count an optimiser step that ran inside a graph for Lightning (its global step): the two
    hooks Lightning's manual loop sets on the optimiser it wraps; a raw optimiser has none."""
    for hook in ("_on_before_step", "_on_after_step"):
        fn = getattr(optimizer, hook, None)
        if fn is not None:
            fn()


class FastExecutor:
    """Runs a :class:`~models.base.TranslatorModule`'s iteration phases fast (``step=fast``).

    The module's phases (its one definition of every loss) run unchanged; this class changes only
    how: channels_last networks and inputs, bf16 autocast when the trainer is ``bf16-mixed``
    (without the autocast weight cache, which a CUDA graph cannot hold), cuDNN benchmark,
    optional ``torch.compile``, and on CUDA one graph per phase — its forward and backward —
    captured after ``warmup`` eager iterations and replayed from then on. The phases' host work
    (CUT's flip and patch positions, CycleGAN's image pools) runs between replays and is copied
    into the graphs' static inputs. The graphs share one memory pool and replay in capture order,
    so a later phase may backpropagate through an earlier one's forward (CUT's G phase through
    the generator pass of its D phase).

    The optimisers are the module's own (Lightning's, fused Adam on CUDA). With
    ``optimizer_in_graph`` (one process) each phase's graph ends with its optimisers'
    steps (:func:`capturable_optimizers`) and the executor counts the iteration for Lightning
    after the replays; otherwise they step eagerly after each replay. Either way LR schedules,
    checkpoints, resume, validation, the NaN guard and best-checkpoint export work as with
    ``step=eager``; Lightning's ``on_before_optimizer_step`` hooks run only with eager steps. The
    parameters' ``.grad`` tensors are the graphs' static outputs: nothing may set them to None
    after capture.

    Under DDP (``trainer=ddp``) the phases' backward does not go through DDP's reducer (a graph
    replay fires no autograd hooks); after each phase's backward or replay, before its
    optimisers step, the executor averages that phase's gradients over the ranks itself: one
    flat all-reduce of every gradient the phase's optimisers hold, divided by the world size
    first, as DDP's own hook does.

    Not deterministic on CUDA (cuDNN autotuning and atomics); on a CPU (no graphs, fp32) it
    computes what Lightning's eager loop computes (``tests/models/test_fast_step.py``).

    Args:
        config: the ``step`` settings.
    """

    def __init__(self, config: StepConfig) -> None:
        self.cfg = config
        self._ready = False
        self._eager_runs = 0
        self._graphs: list[torch.cuda.CUDAGraph] = []
        self._outs: list[dict[str, Tensor]] = []
        self._phases: list[Phase] = []
        self._ctx: dict[str, Any] = {}
        self._grads: list[tuple[torch.nn.Parameter, Tensor]] = []
        self._batch_keys: list[str] = []
        self.use_graphs = False
        self.opt_in_graph = False
        self.bf16 = False
        self.world_size = 1

    # -- set-up -------------------------------------------------------------------------------------
    def setup(self, module: TranslatorModule) -> None:
        """Prepare ``module`` for fast iterations (called from its ``on_train_start``).

        Raises:
            ValueError: under DDP without an initialised ``torch.distributed`` process group, or
                with ``step.compile`` and ``model.r1_gamma`` > 0 (the R1 penalty's double backward).
        """
        if self.cfg.compile and module.r1_gamma > 0:
            raise ValueError("step.compile=true cannot train with model.r1_gamma > 0: torch.compile does "
                             "not support the double backward of the R1 penalty; set step.compile=false "
                             "or model.r1_gamma=0")
        trainer = module.trainer
        self.world_size = int(getattr(trainer, "world_size", 1) or 1)
        if self.world_size > 1 and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ValueError(f"step=fast with world_size {self.world_size} needs torch.distributed "
                             "initialised (trainer=ddp does that)")
        device = module.device
        self.use_graphs = bool(self.cfg.cuda_graph) and device.type == "cuda"
        self.bf16 = str(getattr(trainer, "precision", "32")).startswith("bf16")
        if device.type == "cuda" and self.cfg.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        if self.cfg.channels_last:
            for net in module.trainable_nets():
                net.to(memory_format=torch.channels_last)
        if self.cfg.compile:
            for net in module.trainable_nets():
                net.compile(dynamic=False)  # in place: parameter names and state_dict unchanged
        if self.cfg.cuda_graph and device.type != "cuda":
            log.info("step=fast on %s: CUDA graphs need CUDA, running the phases eagerly", device.type)
        self.opt_in_graph = self.use_graphs and bool(self.cfg.optimizer_in_graph) and self.world_size == 1
        if self.opt_in_graph:
            why = capturable_optimizers(module.lightning_optimizers(), device)
            if why is not None:
                log.info("step=fast: %s, the optimisers step eagerly between the replays", why)
                self.opt_in_graph = False
        self._ready = True

    # -- the iteration ----------------------------------------------------------------------------
    def run(self, module: TranslatorModule, batch: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """One training iteration of ``module`` on ``batch``.

        Args:
            module: the module being trained (its Lightning optimisers step).
            batch: ``real``, ``sim`` (N, 3, H, W) in [-1, 1] and any extra entries of the loader.

        Returns:
            ``(losses, ctx)`` as :meth:`TranslatorModule.eager_iteration`; under CUDA graphs the
            tensors are the graphs' static outputs, overwritten by the next iteration.
        """
        if not self._ready:
            self.setup(module)
        if not self.use_graphs or (not self._graphs and self._eager_runs < self.cfg.warmup):
            self._eager_runs += 1
            return self._eager(module, batch)
        if not self._graphs:
            self._capture(module, batch)
        return self._replay(module, batch)

    def _layout(self, x: Any) -> Any:
        if self.cfg.channels_last and isinstance(x, Tensor) and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _autocast(self, device: torch.device) -> Any:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False)

    def body(self, module: TranslatorModule, phase: Phase, ctx: dict[str, Any],
             sync: bool = False) -> dict[str, Tensor]:
        """A phase's losses and backward, autocast when bf16 (no optimiser step): what a CUDA
        graph holds.

        Args:
            sync: average the phase's gradients over the DDP ranks after the backward (never
                inside a capture: the replay syncs after it).

        Returns:
            The phase's named losses.
        """
        module.enter_phase(phase)
        with self._autocast(module.device):
            named, total = phase.losses(ctx)
        total.float().backward()
        if sync:
            self.sync_gradients(module, phase)
        return named

    def sync_gradients(self, module: TranslatorModule, phase: Phase) -> None:
        """Average the gradients of ``phase``'s optimisers over the DDP ranks (no-op on one).

        One flat buffer per call: every ``.grad`` of the phase's optimisers' parameters,
        divided by the world size, all-reduced (sum) and copied back in place (channels_last
        gradients keep their layout; under CUDA graphs they stay the graphs' static outputs).
        """
        if self.world_size <= 1:
            return
        opts = module.lightning_optimizers()
        grads = [p.grad for i in phase.optimizers
                 for group in getattr(opts[i], "optimizer", opts[i]).param_groups
                 for p in group["params"] if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads]).div_(self.world_size)
        torch.distributed.all_reduce(flat)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view(g.shape))
            offset += n

    def _eager(self, module: TranslatorModule, batch: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return module.eager_iteration({k: self._layout(v) for k, v in batch.items()},
                                      body=lambda phase, ctx: self.body(module, phase, ctx, sync=True))

    def _trained_params(self, module: TranslatorModule) -> list[torch.nn.Parameter]:
        return [p for net in module.trainable_nets() for p in net.parameters()]

    def _capture(self, module: TranslatorModule, batch: dict[str, Any]) -> None:
        self._batch_keys = [k for k, v in batch.items() if isinstance(v, Tensor)]
        static = {k: (self._layout(v).clone() if k in self._batch_keys else v) for k, v in batch.items()}
        base = dict(static)
        module.prepare_iteration(base, live=False)
        phases = module.iteration_phases()
        params = self._trained_params(module)
        opts = module.lightning_optimizers()
        # one eager pass of the bodies on a side stream, as the CUDA-graph recipe asks
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for p in params:
                p.grad = None
            module.eager_iteration(base, body=lambda phase, ctx: self.body(module, phase, ctx),
                                   step=False, live=False)
        torch.cuda.current_stream().wait_stream(side)
        for p in params:
            p.grad = None  # the captured backward allocates every .grad inside the graphs' pool
        ctx = dict(base)
        pool = None
        for phase in phases:
            if phase.before is not None:
                phase.before(ctx, False)  # placeholders become the static inputs of this phase
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._outs.append(self.body(module, phase, ctx))
                if self.opt_in_graph:  # captured, not run: the first replay takes the step
                    for i in phase.optimizers:
                        getattr(opts[i], "optimizer", opts[i]).step()
            pool = graph.pool() if pool is None else pool
            self._graphs.append(graph)
        self._phases, self._ctx = phases, ctx
        # the graphs write each gradient into the tensor allocated at capture: keep them, since
        # anyone's zero_grad(set_to_none=True) (Lightning's on_validation_model_zero_grad, before
        # every validation) would detach them and the optimisers would skip every parameter
        self._grads = [(p, p.grad) for p in params if p.grad is not None]
        log.info("step=fast: captured %d CUDA graphs (%s%s) after %d eager iterations",
                 len(phases), "+".join(p.name for p in phases),
                 ", optimiser steps inside" if self.opt_in_graph else "", self._eager_runs)

    def _replay(self, module: TranslatorModule, batch: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
        ctx = self._ctx
        for k in self._batch_keys:
            _copy_into(ctx[k], batch[k], k)
        live = dict(ctx)
        module.prepare_iteration(live, live=True)
        _copy_host_values(ctx, live)
        opts = module.lightning_optimizers()
        for p, g in self._grads:
            if p.grad is not g:
                p.grad = g
        losses: dict[str, Tensor] = {}
        for phase, graph, out in zip(self._phases, self._graphs, self._outs, strict=True):
            if phase.before is not None:
                live = dict(ctx)
                phase.before(live, True)
                _copy_host_values(ctx, live)
            graph.replay()
            if not self.opt_in_graph:
                self.sync_gradients(module, phase)
                module.step_optimizers(opts, phase)
            elif 0 in phase.optimizers:
                _count_step(opts[0])
            losses.update(out)
        return losses, ctx
