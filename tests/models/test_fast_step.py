"""Tests for models.fast_step: the fast iteration computes exactly what the Lightning step computes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.cut.module import CUTModule
from models.cyclegan.module import CycleGANModule
from models.fast_step import FastStepConfig, TrainStep

G = {"ngf": 8, "n_blocks": 2}
D = {"ndf": 8}


def _optimizers(m: CycleGANModule | CUTModule) -> list[torch.optim.Adam]:
    if isinstance(m, CycleGANModule):
        return [torch.optim.Adam(list(m.netG_A.parameters()) + list(m.netG_B.parameters()), lr=m.lr, betas=m.betas),
                torch.optim.Adam(list(m.netD_A.parameters()) + list(m.netD_B.parameters()), lr=m.lr, betas=m.betas)]
    return [torch.optim.Adam(n.parameters(), lr=m.lr, betas=m.betas) for n in (m.netG, m.netD, m.netF)]


def _reference_iteration(
    m: CycleGANModule | CUTModule, opts: list[torch.optim.Adam], real_A: torch.Tensor, real_B: torch.Tensor
) -> None:
    """The LightningModule's training_step maths, with plain Adam, outside Lightning."""
    for o in opts:
        o.zero_grad(set_to_none=True)
    if isinstance(m, CycleGANModule):
        opt_G, opt_D = opts
        m.set_requires_grad([m.netD_A, m.netD_B], False)
        out = m.generator_forward(real_A, real_B)
        m.generator_losses(real_A, real_B, out)["loss_G"].backward()
        opt_G.step()
        m.set_requires_grad([m.netD_A, m.netD_B], True)
        fb, fa = m.fake_B_pool.query(out.fake_B.detach()), m.fake_A_pool.query(out.fake_A.detach())
        m.discriminator_losses(real_A, real_B, fa, fb)["loss_D"].backward()
        opt_D.step()
        return
    fake_B, idt_B, flipped = m.generator_forward(real_A, real_B)
    m.set_requires_grad([m.netD], True)
    m.discriminator_losses(real_B, fake_B)["loss_D"].backward()
    opts[1].step()
    m.set_requires_grad([m.netD], False)
    m.generator_losses(real_A, real_B, fake_B, idt_B, flipped)["loss_G"].backward()
    opts[0].step()
    opts[2].step()


@pytest.mark.parametrize("make", [
    lambda: CycleGANModule(generator=G, discriminator=D, batched_generators=False),
    lambda: CUTModule(generator=G, discriminator=D, num_patches=16),
    lambda: CUTModule(generator=G, discriminator=D, num_patches=16, nce_idt=False, lambda_NCE=10.0,
                      flip_equivariance=True),
], ids=["cyclegan", "cut", "fastcut"])
def test_plain_fast_step_equals_module_step(make: object) -> None:
    torch.manual_seed(0)
    a = make()  # type: ignore[operator]
    torch.manual_seed(0)
    b = make()  # type: ignore[operator]
    g = torch.Generator().manual_seed(1)
    real_A = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    real_B = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    step = TrainStep(a, batch_size=2, image_size=32, config=FastStepConfig.plain(), device="cpu", warmup=0)
    opts = _optimizers(b)
    for _ in range(3):
        step(real_A, real_B)
        _reference_iteration(b, opts, real_A, real_B)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def _make(model: str) -> CycleGANModule | CUTModule:
    torch.manual_seed(0)
    if model == "cyclegan":
        return CycleGANModule(generator=G, discriminator=D, batched_generators=False)
    return CUTModule(generator=G, discriminator=D, num_patches=16)


def _batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1)
            for _ in range(steps)]


class _RecordingStep(TrainStep):
    """TrainStep that keeps a copy of the gradients right after its first gradient sync."""

    first_grads: dict[str, torch.Tensor] | None = None

    def _sync_grads(self, *opt_indices: int) -> None:
        super()._sync_grads(*opt_indices)
        if self.first_grads is None:
            self.first_grads = {n: p.grad.detach().clone() for n, p in self.m.named_parameters()
                                if p.grad is not None}


def _ddp_worker(rank: int, world: int, port: int, model: str, steps: int, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False  # see the test's docstring
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        m = _make(model)
        if rank == 1:  # different initial weights: the step must broadcast rank 0's
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(1.0)
        cfg = dataclasses.replace(FastStepConfig.plain(), ddp=True)
        step = _RecordingStep(m, batch_size=1, image_size=32, config=cfg, device="cpu", warmup=0)
        for real_A, real_B in _batches(steps):  # each rank its half of the global batch
            step(real_A[rank:rank + 1], real_B[rank:rank + 1])
        torch.save({"grads": step.first_grads,
                    "weights": {k: v.detach().clone() for k, v in m.state_dict().items()}},
                   f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("model", ["cyclegan", "cut"])
def test_data_parallel_step_averages_gradients_like_the_global_batch(model: str, tmp_path: object) -> None:
    """2 gloo ranks × batch 1: the averaged gradients equal 1 process × batch 2's; replicas agree.

    (Weights after several Adam steps are not compared with the single process: Adam's first
    steps are lr·sign(g), which turns float rounding in near-zero gradients into lr-sized jumps.
    oneDNN is off on both sides: its float32 weight gradient of CycleGAN's 7×7 input conv at
    batch 1 was 2 % off the float64 value on the CI CPU, while the native kernels agree to 1e-5.)
    """
    import socket

    import torch.multiprocessing as tmp_mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path) + "/weights"
    tmp_mp.spawn(_ddp_worker, args=(2, port, model, 3, out), nprocs=2, join=True)
    single = _make(model)
    with torch.backends.mkldnn.flags(enabled=False):
        step = _RecordingStep(single, batch_size=2, image_size=32, config=FastStepConfig.plain(),
                              device="cpu", warmup=0)
        for real_A, real_B in _batches(3):
            step(real_A, real_B)
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    assert step.first_grads and ranks[0]["grads"].keys() == step.first_grads.keys()
    # float32 rounding differs between one batch of 2 and two batches of 1: tolerances relative to
    # the largest gradient (conv biases before InstanceNorm have zero true gradient: pure rounding)
    scale = max(float(g.abs().max()) for g in step.first_grads.values())
    for name, ref in step.first_grads.items():
        for r in range(2):
            torch.testing.assert_close(ranks[r]["grads"][name], ref, atol=1e-4 * scale, rtol=1e-3,
                                       msg=lambda m, n=name, r=r: f"rank {r} grad {n}: {m}")
    for name, w in ranks[0]["weights"].items():  # every rank took the same steps
        assert torch.equal(w, ranks[1]["weights"][name]), name


def test_batched_generators_same_maths() -> None:
    torch.manual_seed(0)
    m = CycleGANModule(generator=G, discriminator=D)
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    m.batched_generators = True
    o1 = m.generator_forward(x, y)
    m.batched_generators = False
    o2 = m.generator_forward(x, y)
    for f in ("fake_B", "rec_A", "fake_A", "rec_B", "idt_A", "idt_B"):
        torch.testing.assert_close(getattr(o1, f), getattr(o2, f), atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["cyclegan", "cut", "fastcut"])
def test_cuda_graph_step_runs_and_learns(model: str) -> None:
    torch.manual_seed(0)
    if model == "cyclegan":
        m = CycleGANModule(generator=G, discriminator=D)
    else:
        m = CUTModule(generator=G, discriminator=D, num_patches=16, nce_idt=model == "cut",
                      flip_equivariance=model == "fastcut")
    step = TrainStep(m, batch_size=2, image_size=32, config=FastStepConfig(), device="cuda")
    x = torch.rand(2, 3, 32, 32, device="cuda") * 2 - 1
    before = [p.detach().clone() for p in m.parameters()]
    for _ in range(3):
        out = step(x, x)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert any(not torch.equal(p0, p) for p0, p in zip(before, m.parameters(), strict=True))
