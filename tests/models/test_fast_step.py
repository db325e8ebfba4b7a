"""Tests for models.fast_step: step=fast runs the module's own phases and computes what step=eager computes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from models.base import TranslatorModule
from models.cut.module import CUTModule
from models.cyclegan.module import CycleGANModule
from models.fast_step import FastExecutor, StepConfig, build_executor

G = {"ngf": 8, "n_blocks": 2}
D = {"ndf": 8}


def _batches(n_batches: int, batch: int = 2, size: int = 32, device: str = "cpu") -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)

    def img() -> torch.Tensor:
        return (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device)

    return [{"real": img(), "sim": img(), "paired_real": img(), "paired_sim": img()}
            for _ in range(n_batches)]


def _loader(batches: list[dict[str, torch.Tensor]]) -> DataLoader:
    return DataLoader(batches, batch_size=None, shuffle=False)


def _fit(module: TranslatorModule, batches: list[dict[str, torch.Tensor]], step: str,
         accelerator: str = "cpu", precision: str = "32-true", warmup: int = 3,
         channels_last: bool = False) -> list[dict[str, float]]:
    """Train ``module`` on ``batches`` (one step each) with the given executor; the losses per step.

    (channels_last is off on the CPU: its other conv kernels round differently, which Adam's
    first, sign-like steps turn into lr-sized weight differences.)
    """
    module.set_executor(build_executor({"name": step, "warmup": warmup, "channels_last": channels_last}))
    seen: list[dict[str, float]] = []
    check = module.check_finite

    def record(losses: Any, s: int) -> None:
        seen.append({k: float(v.detach().float()) for k, v in losses.items()})
        check(losses, s)

    module.check_finite = record  # type: ignore[method-assign]
    trainer = L.Trainer(accelerator=accelerator, devices=1, precision=precision,  # type: ignore[arg-type]
                        max_steps=len(batches), logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=_loader(batches))
    assert trainer.global_step == len(batches)
    return seen


def _models(policy: dict[str, Any] | None, teacher: str | None,
            pixel: float = 2.0) -> dict[str, Callable[[], TranslatorModule]]:
    pol = {"policy": policy, "policy_losses": {"cycle": 1.0, "sim_identity": 1.0, "paired": 1.0,
                                               "features": 0.1, "paired_pixel": pixel}} if policy else {}
    cut_pol = dict(pol, policy_losses={"sim_identity": 1.0, "paired": 1.0, "paired_pixel": pixel}) if policy else {}
    dist = {"distill": {"teacher": teacher, "pixel": 3.0, "policy": 1.0 if policy else 0.0}} if teacher else {}
    noise = {"cycle_noise": 0.1} if policy else {}  # host-drawn noise, copied into the graphs
    # the real-domain student: a third phase, and a ramp set on the host between iterations
    cyc_pol = dict(pol, policy_losses={**pol["policy_losses"], "real_student": 1.0,
                                       "real_student_warmup": 1}) if policy else {}
    return {
        "cyclegan": lambda: CycleGANModule(generator=G, discriminator=D, **cyc_pol, **dist, **noise),
        "cut": lambda: CUTModule(generator=G, discriminator=D, num_patches=16, **cut_pol, **dist),
        "fastcut": lambda: CUTModule(generator=G, discriminator=D, num_patches=16, nce_idt=False,
                                     lambda_NCE=10.0, flip_equivariance=True, **cut_pol, **dist),
    }


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CycleGAN checkpoint (weights only) to distil from."""
    torch.manual_seed(5)
    m = CycleGANModule(generator=G, discriminator=D)
    path = tmp_path_factory.mktemp("teacher") / "teacher.ckpt"
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, path)
    return str(path)


def _policy(tiny_synth: Path) -> dict[str, Any]:
    return {"path": str(tiny_synth / "policy" / "policy.onnx"), "spec": None}


@pytest.mark.parametrize("terms", ["plain", "policy+distill"])
@pytest.mark.parametrize("model", ["cyclegan", "cut", "fastcut"])
def test_fast_executor_equals_eager_on_cpu(model: str, terms: str, tiny_synth: Path, teacher: str) -> None:
    """Every loss term and every weight after 4 iterations: step=fast (CPU, fp32) == step=eager."""
    extra = terms != "plain"
    make = _models(_policy(tiny_synth) if extra else None, teacher if extra else None)[model]
    batches = _batches(4)
    runs = []
    for step in ("eager", "fast"):
        torch.manual_seed(0)
        m = make()
        losses = _fit(m, batches, step)
        runs.append((m, losses))
    (a, la), (b, lb) = runs
    assert la[0].keys() == lb[0].keys()
    if extra:  # the fast path has the terms the efficacy work added, not a subset
        assert any(k.startswith("loss_policy") for k in la[0]) and "loss_distill" in la[0]
        assert "loss_paired_pixel" in la[0]
        assert model != "cyclegan" or {"loss_student", "loss_policy_real_student"} <= set(la[0])
    for s, (ea, eb) in enumerate(zip(la, lb, strict=True)):
        for k in ea:
            assert ea[k] == pytest.approx(eb[k], rel=1e-5, abs=1e-6), f"step {s} {k}"
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-5, msg=lambda msg, n=name: f"{n}: {msg}")


def _eager_and_fast_agree(make: Callable[[], TranslatorModule], n_batches: int) -> tuple[TranslatorModule, list]:
    """Fit ``make()`` on the same batches with step=eager and step=fast (CPU, fp32): every logged
    loss of every step and every weight afterwards agree; returns the eager module and its logs."""
    batches = _batches(n_batches)
    runs = []
    for step in ("eager", "fast"):
        torch.manual_seed(0)
        m = make()
        runs.append((m, _fit(m, batches, step)))
    (a, la), (b, lb) = runs
    for s, (ea, eb) in enumerate(zip(la, lb, strict=True)):
        for k in ea:
            assert ea[k] == pytest.approx(eb[k], rel=1e-5, abs=1e-6), f"step {s} {k}"
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-5, msg=lambda msg, n=name: f"{n}: {msg}")
    return a, la


@pytest.mark.parametrize("model", ["cyclegan", "cut"])
def test_fast_executor_equals_eager_with_diffaugment_and_spectral_norm_on_cpu(model: str) -> None:
    """DiffAugment's host-drawn parameters reach the fast executor's phases as the eager loop's;
    spectral-norm discriminators (power iterations in every forward) train the same too."""
    sn = {**D, "spectral_norm": True}
    make = {"cyclegan": lambda: CycleGANModule(generator=G, discriminator=sn, diffaug="color,translation,cutout"),
            "cut": lambda: CUTModule(generator=G, discriminator=sn, num_patches=16,
                                     diffaug="color,translation,cutout")}[model]
    a, _ = _eager_and_fast_agree(make, 4)
    assert any("parametrizations" in name for name, _ in a.named_parameters())


@pytest.mark.parametrize("model", ["cyclegan", "cut"])
def test_fast_executor_equals_eager_with_r1_on_cpu(model: str) -> None:
    """The R1 penalty's double backward runs the same on the fast executor as in the eager loop."""
    make = {"cyclegan": lambda: CycleGANModule(generator=G, discriminator=D, r1_gamma=2.0),
            "cut": lambda: CUTModule(generator=G, discriminator=D, num_patches=16, r1_gamma=2.0)}[model]
    _, logs = _eager_and_fast_agree(make, 3)
    assert all(any(k.endswith("_r1") for k in step) for step in logs), "no R1 term logged"


def test_step_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"step\.graphs is not a step setting; valid keys: name, cuda_graph"):
        StepConfig.from_mapping({"name": "fast", "graphs": True})
    with pytest.raises(ValueError, match=r"step\.name='turbo': choose one of eager, fast"):
        StepConfig.from_mapping({"name": "turbo"})
    assert build_executor({"name": "eager"}) is None
    assert isinstance(build_executor({"name": "fast"}), FastExecutor)
    compiled = build_executor({"name": "fast", "compile": True})
    assert compiled is not None
    with pytest.raises(ValueError, match=r"step\.compile=true cannot train with model\.r1_gamma > 0"):
        compiled.setup(CycleGANModule(generator=G, discriminator=D, r1_gamma=1.0))


def test_train_config_step_fast_trains_through_train(compose_cfg: Any, tiny_unpaired: Path, tmp_path: Path) -> None:
    """``python train_translate.py step=fast`` on a CPU: same checkpoint as step=eager."""
    from conftest import tiny_train_overrides

    from models.checkpointing import load_checkpoint
    from workflows.training import train

    states = []
    for step in ("eager", "fast"):
        ov = tiny_train_overrides("cut", tiny_unpaired, tmp_path / step, steps=3)
        out = train(compose_cfg("train", [*ov, "export.enabled=false", f"step={step}",
                                          *(["step.channels_last=false"] if step == "fast" else [])]))
        assert out["global_step"] == 3
        states.append(load_checkpoint(Path(out["run_dir"]) / "checkpoints" / "last.ckpt")["state_dict"])
    for k in states[0]:
        torch.testing.assert_close(states[0][k].contiguous(), states[1][k].contiguous(), atol=1e-6,
                                   rtol=1e-5, msg=lambda msg, k=k: f"{k}: {msg}")


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["cyclegan", "cut", "fastcut"])
def test_cuda_graphs_match_eager_within_bf16(model: str, tiny_synth: Path, teacher: str) -> None:
    """On a GPU, bf16: the graph-replayed iterations' losses match the eager loop's.

    (Without the paired pixel term: its large gradients on random frames make two bf16 runs
    drift apart faster than this tolerance within 6 steps; the CPU test holds it exactly.)"""
    make = _models(_policy(tiny_synth), teacher, pixel=0.0)[model]
    batches = _batches(6, batch=2, size=64, device="cpu")
    runs = []
    for step in ("eager", "fast"):
        torch.manual_seed(0)
        m = make()
        runs.append((m, _fit(m, batches, step, accelerator="gpu", precision="bf16-mixed", warmup=2,
                             channels_last=True)))
    (a, la), (b, lb) = runs
    ex = b.executor
    # one graph per phase: G and D, and CycleGAN's real-domain student P
    assert ex is not None and ex.use_graphs and len(ex._graphs) == len(b.iteration_phases())
    assert len(ex._graphs) == (3 if model == "cyclegan" else 2)
    for k in la[2]:  # the replayed iterations 2..5: each loss's mean over them (one bf16 step of a
        # GAN loss on random frames jitters by ~10 %, measured on an H200; the mean does not)
        ma, mb = (sum(run[s][k] for s in range(2, 6)) / 4 for run in (la, lb))
        assert mb == pytest.approx(ma, rel=0.1, abs=0.05), f"{k}: {mb} vs {ma} (mean of steps 2-5)"
    for k, v in la[2].items():  # and the first replay itself, per step
        assert lb[2][k] == pytest.approx(v, rel=0.1, abs=0.05), f"step 2 {k}: {lb[2][k]} vs {v}"
    # Adam's step t moves a weight by at most lr * sqrt(sum_i w_i^2 / u_i) (Cauchy-Schwarz on its
    # bias-corrected moments, w and u their weights). A weight with no true gradient (a conv bias
    # before an InstanceNorm) gets rounding noise of random sign, which Adam scales up to full
    # steps: two runs can then walk apart by twice the sum of the bounds, and no further.
    b1, b2 = a.betas
    bound = 0.0
    for t in range(1, 7):
        w = [(1 - b1) * b1 ** (t - i) / (1 - b1 ** t) for i in range(1, t + 1)]
        u = [(1 - b2) * b2 ** (t - i) / (1 - b2 ** t) for i in range(1, t + 1)]
        bound += sum(wi * wi / ui for wi, ui in zip(w, u, strict=True)) ** 0.5
    lr = a.lr
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert float((pa - pb).abs().max()) <= 2 * bound * lr, name
    # and the replays did train: 3 fast steps (2 eager + the capture's first replay) are further
    # from the 6-step eager weights than the 6 fast steps are
    torch.manual_seed(0)
    c = make()
    _fit(c, batches[:3], "fast", accelerator="gpu", precision="bf16-mixed", warmup=2, channels_last=True)

    def dist(x: TranslatorModule) -> float:
        return sum(float((pa - px).abs().sum()) for pa, px in zip(a.parameters(), x.parameters(), strict=True))

    assert dist(b) < dist(c)


@pytest.mark.gpu
def test_cuda_graphs_keep_training_after_a_validation() -> None:
    """Lightning zeroes the gradients (set_to_none) before every validation; the replays that
    follow must still step every parameter (they once silently stopped training there)."""
    batches = _batches(9, batch=1, size=64)
    torch.manual_seed(0)
    m = CycleGANModule(generator=G, discriminator=D)
    m.set_executor(build_executor({"name": "fast", "warmup": 2}))
    snaps: list[list[torch.Tensor]] = []

    class Snap(L.Callback):
        def on_train_batch_end(self, trainer: Any, module: Any, *args: Any) -> None:
            snaps.append([p.detach().clone() for p in (*module.netG_A.parameters(), *module.netD_A.parameters())])

    trainer = L.Trainer(accelerator="gpu", devices=1, precision="bf16-mixed", max_steps=9,
                        val_check_interval=4, num_sanity_val_steps=0, limit_val_batches=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Snap()])
    trainer.fit(m, train_dataloaders=_loader(batches), val_dataloaders=_loader(batches[:1]))
    assert trainer.global_step == 9 and m.executor is not None and m.executor.use_graphs

    def moved(s: int) -> list[bool]:
        return [bool((a != b).any()) for a, b in zip(snaps[s - 1], snaps[s], strict=True)]

    before = moved(3)  # a replay before the validation (after step 4)
    assert sum(before) > len(before) // 2
    for s in range(5, 9):  # every parameter that moved before it moves after it too
        after = moved(s)
        assert all(a for a, b in zip(after, before, strict=True) if b), \
            f"step {s + 1}: {sum(before) - sum(after)} parameters stopped moving after the validation"


def _temporal_models() -> dict[str, Callable[[], TranslatorModule]]:
    return {
        "cyclegan": lambda: CycleGANModule(generator=G, discriminator=D, lambda_temporal=1.0),
        "fastcut": lambda: CUTModule(generator=G, discriminator=D, num_patches=16, nce_idt=False,
                                     lambda_NCE=10.0, flip_equivariance=True, lambda_temporal=1.0),
    }


@pytest.mark.parametrize("model", ["cyclegan", "fastcut"])
def test_fast_executor_equals_eager_with_the_temporal_loss(model: str) -> None:
    """model.lambda_temporal > 0: the term is in both executors' losses and they agree."""
    batches = _batches(3)
    runs = []
    for step in ("eager", "fast"):
        torch.manual_seed(0)
        runs.append(_fit(_temporal_models()[model](), batches, step))
    la, lb = runs
    assert "loss_temporal" in la[0] and la[0].keys() == lb[0].keys()
    for ea, eb in zip(la, lb, strict=True):
        for k in ea:
            assert ea[k] == pytest.approx(eb[k], rel=1e-5, abs=1e-6), k


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["cyclegan", "fastcut"])
def test_cuda_graphs_with_the_temporal_loss(model: str) -> None:
    """On a GPU, bf16 + CUDA graphs: the temporal term is captured and replayed like the rest."""
    batches = _batches(6, batch=2, size=64)
    runs = []
    for step in ("eager", "fast"):
        torch.manual_seed(0)
        m = _temporal_models()[model]()
        runs.append((m, _fit(m, batches, step, accelerator="gpu", precision="bf16-mixed",
                             warmup=2, channels_last=True)))
    (_, la), (b, lb) = runs
    assert b.executor is not None and b.executor.use_graphs
    for s in range(2, 6):
        v = la[s]["loss_temporal"]
        assert lb[s]["loss_temporal"] == pytest.approx(v, rel=0.1, abs=0.05), f"step {s}"


def test_gradient_sync_averages_in_place_and_keeps_the_layout(tmp_path: Path) -> None:
    """The executor's DDP all-reduce on a 1-process gloo group told world_size 2: every gradient
    of the phase's optimisers comes back divided by 2, in place (channels_last ones too), and the
    other optimisers' gradients are untouched."""
    import torch.distributed as dist

    torch.manual_seed(0)
    m = CycleGANModule(generator=G, discriminator=D, fused_adam=False)
    opts = m.configure_optimizers()[0]
    m.lightning_optimizers = lambda: opts  # type: ignore[method-assign]
    m.netG_A.to(memory_format=torch.channels_last)
    for p in m.parameters():
        p.grad = torch.randn_like(p)
    before = {n: p.grad.clone() for n, p in m.named_parameters()}
    ids = {n: id(p.grad) for n, p in m.named_parameters()}
    ex = FastExecutor(StepConfig(name="fast"))
    ex.world_size = 2
    phase_g = next(ph for ph in m.iteration_phases() if ph.name == "G")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ex.sync_gradients(m, phase_g)
    finally:
        dist.destroy_process_group()
    for n, p in m.named_parameters():
        assert id(p.grad) == ids[n]
        want = before[n] / 2 if n.startswith(("netG_A.", "netG_B.")) else before[n]
        torch.testing.assert_close(p.grad, want)
    assert m.netG_A.model[1].weight.grad.is_contiguous(memory_format=torch.channels_last)


def test_capturable_optimizers_keep_the_schedule_and_undo_for_eager_runs() -> None:
    """step.optimizer_in_graph's conversion: every group capturable with a 0-d float32 LR tensor,
    which the LR schedule fills in place (the graph reads that memory); SGD has no capturable mode
    and is left alone; :func:`eager_optimizers` turns a converted optimiser (as a checkpoint of
    such a run holds it) back into a plain one, which then steps as before it was converted."""
    from models.base import capturable_optimizers, eager_optimizers, linear_decay_lambda

    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=2e-4, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=linear_decay_lambda(1, 3))
    assert capturable_optimizers([opt], torch.device("cpu")) is None
    lr = opt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.dtype == torch.float32 and lr.ndim == 0
    assert opt.param_groups[0]["capturable"] is True
    sched.step()  # epoch 1 of a 1 + 3 schedule: 3/4 of the LR, written into the same tensor
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(1.5e-4)
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    assert capturable_optimizers([sgd], torch.device("cpu")) == "SGD has no capturable mode"
    assert sgd.param_groups[0]["lr"] == 0.1
    eager_optimizers([opt])
    assert opt.param_groups[0]["lr"] == pytest.approx(1.5e-4) and not opt.param_groups[0]["capturable"]
    p.grad = torch.full((3,), 0.5)
    opt.step()  # an eager CPU step (capturable=True would refuse CPU parameters)
    assert torch.allclose(p.detach(), torch.full((3,), 1 - 1.5e-4), atol=1e-7)


def _adam_bound(betas: tuple[float, float], steps: int) -> float:
    """How far (in units of lr) Adam can move one weight in ``steps`` steps, whatever its gradients:
    step t moves it by at most sqrt(sum_i w_i^2 / u_i) (Cauchy-Schwarz on the bias-corrected
    moments, w and u their weights)."""
    b1, b2 = betas
    bound = 0.0
    for t in range(1, steps + 1):
        w = [(1 - b1) * b1 ** (t - i) / (1 - b1 ** t) for i in range(1, t + 1)]
        u = [(1 - b2) * b2 ** (t - i) / (1 - b2 ** t) for i in range(1, t + 1)]
        bound += sum(wi * wi / ui for wi, ui in zip(w, u, strict=True)) ** 0.5
    return bound


class _ZeroLRAt(L.Callback):
    """Snapshots the weights after steps 2 and ``at``, and sets every LR to 0 there (in place when
    it is a tensor, as the LR schedule writes it)."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.snaps: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_end(self, trainer: Any, module: Any, *args: Any) -> None:
        step = trainer.global_step
        if step in (2, self.at):
            self.snaps[step] = {n: p.detach().cpu().clone() for n, p in module.named_parameters()}
        if step == self.at:
            for o in module.lightning_optimizers():
                for g in o.optimizer.param_groups:
                    if isinstance(g["lr"], torch.Tensor):
                        g["lr"].fill_(0.0)
                    else:
                        g["lr"] = 0.0


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["cyclegan", "cut"])
def test_optimizer_steps_inside_the_graphs_train_like_eager_steps(model: str, tiny_synth: Path) -> None:
    """On a GPU: graphs that end with their optimiser steps (the default) step every optimiser
    once per iteration (Adam's step counters), count every iteration for Lightning, train in the
    replays, read the LR written between replays (an LR of 0 from step 5 on freezes every weight
    exactly), and end within Adam's per-weight bound of graphs whose optimisers step eagerly after
    each replay (a GAN on random frames amplifies rounding: equal weights are not to be had)."""
    make = _models(_policy(tiny_synth), None, pixel=0.0)[model]
    batches = _batches(8, batch=1, size=64)
    runs = []
    for in_graph in (False, True):
        torch.manual_seed(0)
        m = make()
        m.set_executor(build_executor({"name": "fast", "warmup": 2, "optimizer_in_graph": in_graph}))
        cb = _ZeroLRAt(5)
        trainer = L.Trainer(accelerator="gpu", devices=1, precision="32-true", max_steps=len(batches),
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[cb])
        trainer.fit(m, train_dataloaders=_loader(batches))
        assert trainer.global_step == len(batches)
        assert m.executor is not None and m.executor.use_graphs and m.executor.opt_in_graph is in_graph
        for n, p in m.named_parameters():  # (Lightning hands the module back on the CPU)
            assert torch.equal(p.detach().cpu(), cb.snaps[5][n]), f"{n} moved with an LR of 0"
        runs.append((m, cb))
    (a, _), (b, cb) = runs
    for o in b.lightning_optimizers():
        steps = {float(st["step"].cpu()) for st in o.optimizer.state.values()}
        assert steps == {float(len(batches))}, steps  # 2 eager + 6 replays, one step each
    moved = [bool((cb.snaps[2][n] != cb.snaps[5][n]).any()) for n, _ in b.named_parameters()]
    assert sum(moved) > len(moved) // 2  # the replays trained
    bound = 2 * _adam_bound(a.betas, 5) * a.lr
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert float((pa - pb).detach().abs().max()) <= bound, name
