"""CycleGAN LightningModule with the official defaults and update order, under manual optimisation."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import Phase, TranslatorModule
from models.losses import GANLoss, shift_consistency_loss
from models.networks import (
    DISCRIMINATOR_DEFAULTS,
    GENERATOR_DEFAULTS,
    build_discriminator,
    build_generator,
    build_network,
    network_spec,
)
from models.pool import ImagePool

__all__ = ["CycleGANModule", "CycleGANOutputs"]


@dataclass
class CycleGANOutputs:
    """Generator-step tensors (A = real domain, B = sim domain), all (N, 3, H, W) in [-1, 1]."""

    fake_B: torch.Tensor
    rec_A: torch.Tensor
    fake_A: torch.Tensor
    rec_B: torch.Tensor
    idt_A: torch.Tensor | None
    idt_B: torch.Tensor | None


class CycleGANModule(TranslatorModule):
    """CycleGAN: G_A real→sim, G_B sim→real, D_A judges sim, D_B judges real.

    Official defaults (pytorch-CycleGAN-and-pix2pix): ResNet-9 ngf 64, PatchGAN ndf 64 with 3
    layers, normal init gain 0.02, LSGAN, λ_A = λ_B = 10, identity 0.5, Adam 2e-4 β (0.5, 0.999),
    100 + 100 epochs with linear decay, image pool 50. Update order per iteration: generators first
    (discriminators frozen), then both discriminators on pooled fakes.

    ``forward(x)`` is G_A alone: the translator that is exported and run on the robot.

    Args:
        generator: kwargs of :func:`models.networks.build_generator` (shared by G_A and G_B).
        discriminator: kwargs of :func:`models.networks.build_discriminator`.
        gan_mode: ``lsgan`` | ``vanilla`` | ``nonsaturating``.
        lambda_A, lambda_B: cycle weights (real→sim→real, sim→real→sim).
        lambda_identity: identity weight relative to λ (0 disables the identity forward passes).
        pool_size: image pool size for the discriminator updates (0 = off).
        cycle_noise: σ of Gaussian noise added to each fake before the return generator of its
            cycle (both cycles; 0 = off). CycleGAN can hide the source image in a faint
            high-frequency signal of its fake and decode it back (Chu et al. 2017, "a master of
            steganography"); the policy cycle term would then be met without G_A reading
            real-looking frames. Noise drowns that signal, so the cycles must pass through
            visible content. Drawn on the host from the model's own generator (saved in
            checkpoints: a resumed run draws what the uninterrupted one would).
        lambda_temporal: weight of :func:`models.losses.shift_consistency_loss` on G_A (0 = off:
            the plain CycleGAN loss).
        temporal_shift: its shift in pixels.
        batched_generators: run the G passes that do not depend on each other as one batched call
            (same maths — instance norm is per sample — fewer, larger kernel launches).
        **base: see :class:`models.base.TranslatorModule` (lr, betas, n_epochs, ...).

    Shape:
        forward: (N, 3, H, W) in [-1, 1] → (N, 3, H, W) in [-1, 1], H and W multiples of 4.
    """

    def __init__(
        self,
        *,
        name: str = "cyclegan",
        generator: dict[str, Any] | None = None,
        discriminator: dict[str, Any] | None = None,
        gan_mode: str = "lsgan",
        lambda_A: float = 10.0,
        lambda_B: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        cycle_noise: float = 0.0,
        batched_generators: bool = True,
        lambda_temporal: float = 0.0,
        temporal_shift: int = 3,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.save_hyperparameters(ignore=["frozen_policy", "teacher_generator"])
        self.name = name
        g = network_spec(generator, GENERATOR_DEFAULTS["cyclegan"], build_generator)
        d = network_spec(discriminator, DISCRIMINATOR_DEFAULTS["cyclegan"], build_discriminator)
        g_a = self.real_generator_spec(g)
        self.remember_generator(g_a, "netG_A.")
        self.netG_A = build_network(g_a, build_generator, "model.generator")
        self.netG_B = build_network(g, build_generator, "model.generator")
        self.netD_A = build_network(d, build_discriminator, "model.discriminator")
        self.netD_B = build_network(d, build_discriminator, "model.discriminator")
        self.init_ema()
        if self.policy_weights.real_student > 0:
            teacher_policy = self.frozen_policy
            assert teacher_policy is not None  # the base refused the weight without a policy
            self.netP_real = teacher_policy.trainable_copy()  # registered: trained, checkpointed
            self.optimizer_names = ("G", "D", "P")
            # the ramp's factor, set on the host before each iteration (a CUDA graph reads it)
            self.register_buffer("student_scale", torch.zeros(()), persistent=False)
        self.criterionGAN = GANLoss(gan_mode)
        self.lambda_A, self.lambda_B = lambda_A, lambda_B
        self.lambda_identity = lambda_identity
        self.batched_generators = batched_generators
        if cycle_noise < 0:
            raise ValueError(f"model.cycle_noise must be >= 0 (a standard deviation), got {cycle_noise}")
        self.cycle_noise = float(cycle_noise)
        self.noise_gen = torch.Generator().manual_seed(torch.initial_seed() + 3)  # per run seed
        self.lambda_temporal, self.temporal_shift = float(lambda_temporal), int(temporal_shift)
        # each pool owns its generator; both are saved in checkpoints (see extra_state)
        self.fake_A_pool = ImagePool(pool_size, generator=torch.Generator().manual_seed(1))
        self.fake_B_pool = ImagePool(pool_size, generator=torch.Generator().manual_seed(2))

    def validation_directions(self) -> list[tuple[str, Any, str, str]]:
        """Real→sim (G_A) and sim→real (G_B) strips at each validation."""
        return [*super().validation_directions(), ("val/sim|translated_back|real", self.netG_B, "sim", "real")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate real frames to the sim look with the deployable generator (netG_A, or its weight
        average when ``ema_decay`` > 0). (N, 3, H, W) in [-1, 1] → same shape."""
        return self.deployable_generator()(x)

    @property
    def real_student(self) -> nn.Module | None:
        """π_real, the real-domain student policy (``policy_losses.real_student`` > 0), or None."""
        return self._modules.get("netP_real")

    def configure_optimizers(self) -> Any:
        opt_G = self.make_optimizer(itertools.chain(self.netG_A.parameters(), self.netG_B.parameters()))
        opt_D = self.make_optimizer(itertools.chain(self.netD_A.parameters(), self.netD_B.parameters()))
        opts = [opt_G, opt_D]
        if self.real_student is not None:
            opts.append(self.make_optimizer(self.real_student.parameters()))
        return opts, self._schedulers(opts)

    # -- the two halves of an iteration, usable outside Lightning (benchmarks) ------------------
    def generator_forward(
        self, real_A: torch.Tensor, real_B: torch.Tensor, noise: torch.Tensor | None = None
    ) -> CycleGANOutputs:
        """All generator passes of one iteration (official order of dependencies).

        Args:
            real_A, real_B: (N, 3, H, W) real and sim frames in [-1, 1].
            noise: (2N, 3, H, W) added to fake_B (first N) and fake_A (last N) before the return
                generators, or None (see ``cycle_noise``).
        """
        n = real_A.shape[0]
        use_idt = self.lambda_identity > 0
        if self.batched_generators:
            # wave 1: G_A(real_A) ‖ G_A(real_B) and G_B(real_B) ‖ G_B(real_A); wave 2: the cycles
            a_in = torch.cat([real_A, real_B]) if use_idt else real_A
            b_in = torch.cat([real_B, real_A]) if use_idt else real_B
            a_out, b_out = self.netG_A(a_in), self.netG_B(b_in)
            fake_B, fake_A = a_out[:n], b_out[:n]
            idt_A = a_out[n:] if use_idt else None
            idt_B = b_out[n:] if use_idt else None
            back_B, back_A = self._noisy(fake_B, fake_A, noise)
            rec_A, rec_B = self.netG_B(back_B), self.netG_A(back_A)
        else:
            fake_B = self.netG_A(real_A)
            fake_A = self.netG_B(real_B)
            back_B, back_A = self._noisy(fake_B, fake_A, noise)
            rec_A = self.netG_B(back_B)
            rec_B = self.netG_A(back_A)
            idt_A = self.netG_A(real_B) if use_idt else None
            idt_B = self.netG_B(real_A) if use_idt else None
        return CycleGANOutputs(fake_B, rec_A, fake_A, rec_B, idt_A, idt_B)

    @staticmethod
    def _noisy(
        fake_B: torch.Tensor, fake_A: torch.Tensor, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if noise is None:
            return fake_B, fake_A
        n = fake_B.shape[0]
        return fake_B + noise[:n].to(fake_B.dtype), fake_A + noise[n:].to(fake_A.dtype)

    def discriminator_calls(self) -> int:
        """Six inputs: the G phase's D_A(fake_B), D_B(fake_A); the D phase's real and pooled fake
        of each discriminator."""
        return 6

    def prepare_iteration(self, ctx: dict[str, Any], live: bool = True) -> None:
        """Host-side draws: DiffAugment's parameters (``ctx["diffaug"]``) when on, then the cycle
        noise (``ctx["cycle_noise"]``, (2N, 3, H, W)) when on; placeholders of those shapes under a
        graph capture."""
        self.draw_diffaug(ctx, live)
        if live and self.real_student is not None:
            self.get_buffer("student_scale").fill_(self.policy_weights.student_ramp(self.global_step))
        if self.cycle_noise <= 0:
            return
        real = ctx["real"]
        shape = (2 * real.shape[0], *real.shape[1:])
        noise = (torch.randn(shape, generator=self.noise_gen) * self.cycle_noise if live
                 else torch.zeros(shape))
        ctx["cycle_noise"] = noise.to(real.device, non_blocking=True)

    def generator_losses(
        self, real_A: torch.Tensor, real_B: torch.Tensor, out: CycleGANOutputs,
        aug: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """GAN + cycle + identity losses of the generators; ``loss_G`` is their sum. ``aug``:
        ``ctx["diffaug"]`` (DiffAugment on the discriminators' inputs), or None."""
        losses: dict[str, torch.Tensor] = {}
        losses["loss_G_A"] = self.criterionGAN(self.netD_A(self.d_input(out.fake_B, aug, 0)), True)
        losses["loss_G_B"] = self.criterionGAN(self.netD_B(self.d_input(out.fake_A, aug, 1)), True)
        losses["loss_cycle_A"] = F.l1_loss(out.rec_A, real_A) * self.lambda_A
        losses["loss_cycle_B"] = F.l1_loss(out.rec_B, real_B) * self.lambda_B
        if out.idt_A is not None and out.idt_B is not None:
            losses["loss_idt_A"] = F.l1_loss(out.idt_A, real_B) * self.lambda_B * self.lambda_identity
            losses["loss_idt_B"] = F.l1_loss(out.idt_B, real_A) * self.lambda_A * self.lambda_identity
        losses["loss_G"] = torch.stack(list(losses.values())).sum()
        return losses

    def discriminator_losses(
        self,
        real_A: torch.Tensor,
        real_B: torch.Tensor,
        fake_A: torch.Tensor,
        fake_B: torch.Tensor,
        aug: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """LSGAN discriminator losses on (pooled, detached) fakes; ``loss_D`` is their sum.
        ``aug``: ``ctx["diffaug"]`` (DiffAugment on the discriminators' inputs), or None."""
        d = self.d_input
        losses: dict[str, torch.Tensor] = {}
        for name, disc, real, fake, calls in (("A", self.netD_A, real_B, fake_B, (2, 3)),
                                              ("B", self.netD_B, real_A, fake_A, (4, 5))):
            out_real, r1 = self.discriminate_real(disc, d(real, aug, calls[0]))
            loss = 0.5 * (self.criterionGAN(out_real, True)
                          + self.criterionGAN(disc(d(fake.detach(), aug, calls[1])), False))
            if r1 is not None:  # model.r1_gamma > 0
                losses[f"loss_D_{name}_r1"] = r1
                loss = loss + 0.5 * self.r1_gamma * r1
            losses[f"loss_D_{name}"] = loss
        losses["loss_D"] = losses["loss_D_A"] + losses["loss_D_B"]
        return losses

    # -- the iteration as phases (every executor runs these; see models.base.Phase) ------------
    def trainable_nets(self) -> list[nn.Module]:
        nets: list[nn.Module] = [self.netG_A, self.netG_B, self.netD_A, self.netD_B]
        return nets + ([self.real_student] if self.real_student is not None else [])

    def iteration_phases(self) -> list[Phase]:
        """Official order: both generators (discriminators frozen), then both discriminators on
        fakes from the history pools; with ``real_student``, then π_real on the sim→real fakes."""
        student = self.real_student
        phases = [
            Phase("G", self.generator_step, (0,),
                  frozen=(self.netD_A, self.netD_B, *([student] if student is not None else []))),
            Phase("D", self.discriminator_step, (1,), before=self.query_pools,
                  frozen=tuple([student] if student is not None else [])),
        ]
        if student is not None:
            phases.append(Phase("P", self.student_step, (2,),
                                frozen=(self.netG_A, self.netG_B, self.netD_A, self.netD_B)))
        return phases

    def student_step(self, ctx: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """π_real learns to act on G_B(x_sim) as the frozen π acts on x_sim.

        Args:
            ctx: the iteration context after the G phase: ``sim`` and ``fake_A`` = G_B(sim),
                (N, 3, H, W) in [-1, 1].

        Returns:
            ``({"loss_student": L1 of the clamped actions}, the same scalar)``.
        """
        student, pol = self.real_student, self.frozen_policy
        assert student is not None and pol is not None
        with torch.no_grad():
            target = pol(ctx["sim"].float()).action
        loss = F.l1_loss(student(ctx["fake_A"].detach().float()).action, target)
        return {"loss_student": loss}, loss

    def generator_step(self, ctx: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The generators' losses of one iteration: GAN, cycle, identity, policy, distillation.

        Args:
            ctx: the iteration context: ``real`` (N, 3, H, W) and ``sim`` (N, 3, H, W) in [-1, 1]
                (+ ``paired_real`` / ``paired_sim`` for the paired policy loss). The step adds
                ``fake_A``, ``fake_B``, ``rec_A`` (same shape) for the D phase and the logs.

        Returns:
            ``(named losses, total)``: ``loss_G`` (the model's own sum), each ``loss_policy_*`` /
            ``loss_distill`` term, and the scalar the backward pass takes (their sum).
        """
        real_A, real_B = ctx["real"], ctx["sim"]
        out = self.generator_forward(real_A, real_B, ctx.get("cycle_noise"))
        losses = self.generator_losses(real_A, real_B, out, ctx.get("diffaug"))
        losses.update(self.policy_losses(ctx, out))
        losses.update(self.distill_losses(real_A, out.fake_B))
        ctx.update(fake_A=out.fake_A, fake_B=out.fake_B, rec_A=out.rec_A)
        total = losses["loss_G"] + self.extra_generator_loss(losses, real_A)
        if self.lambda_temporal > 0:
            losses["loss_temporal"] = self.lambda_temporal * shift_consistency_loss(
                self.netG_A, real_A, out.fake_B, shift=self.temporal_shift)
            total = total + losses["loss_temporal"]
        return losses, total

    def query_pools(self, ctx: dict[str, Any], live: bool = True) -> None:
        """Host side of the D phase: ``pool_A`` / ``pool_B`` from the history pools (``live``)
        or plain copies of the fakes (a graph capture: no pool state changes)."""
        fake_A, fake_B = ctx["fake_A"].detach(), ctx["fake_B"].detach()
        if live:
            ctx["pool_A"], ctx["pool_B"] = self.fake_A_pool.query(fake_A), self.fake_B_pool.query(fake_B)
        else:
            ctx["pool_A"], ctx["pool_B"] = fake_A.clone(), fake_B.clone()

    def discriminator_step(self, ctx: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Both discriminators' LSGAN losses on the pooled fakes; ``(named losses, loss_D)``."""
        d = self.discriminator_losses(ctx["real"], ctx["sim"], ctx["pool_A"], ctx["pool_B"], ctx.get("diffaug"))
        return d, d["loss_D"]

    def log_iteration(self, ctx: dict[str, Any]) -> None:
        self.log_image_strip("train/real|translated|cycle", [ctx["real"], ctx["fake_B"], ctx["rec_A"]])
        self.log_paired_strip(ctx, self.netG_A)

    def policy_losses(self, batch: dict[str, Any], out: CycleGANOutputs) -> dict[str, torch.Tensor]:
        """Policy-consistency terms (``model.policy_losses``), each ``loss_policy_<name>``.

        - ``cycle``: π(x_sim) ≈ π(G_A(G_B(x_sim))), on the cycle already computed.
        - ``sim_identity``: π(x_sim) ≈ π(G_A(x_sim)), on the identity pass (computed if off).
        - ``paired`` / ``paired_pixel``: on paired frames (:meth:`paired_losses`).
        """
        w = self.policy_weights
        losses = self.paired_losses(batch, self.netG_A)
        if not w.any():
            return losses
        real_B = batch["sim"]
        losses.update(self.policy_consistency(real_B, out.rec_B, "cycle", w.cycle))
        if w.sim_identity > 0:
            idt = out.idt_A if out.idt_A is not None else self.netG_A(real_B)
            losses.update(self.policy_consistency(real_B, idt, "sim_identity", w.sim_identity))
        student, pol = self.real_student, self.frozen_policy
        if student is not None and pol is not None:
            # the student's action on the real frame is the target of the policy on its translation
            with torch.no_grad():
                target = student(batch["real"].float()).action
            term = F.l1_loss(pol(out.fake_B.float()).action, target)
            losses["loss_policy_real_student"] = w.real_student * self.get_buffer("student_scale") * term
        return losses

    def rank_generators(self) -> list[torch.Generator]:
        return [*super().rank_generators(), self.fake_A_pool.generator, self.fake_B_pool.generator,
                self.noise_gen]

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "fake_A_pool": self.fake_A_pool.state_dict(),
                "fake_B_pool": self.fake_B_pool.state_dict(), "noise_gen": self.noise_gen.get_state()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        super().load_extra_state(state)
        if "fake_A_pool" in state:
            self.fake_A_pool.load_state_dict(state["fake_A_pool"])
            self.fake_B_pool.load_state_dict(state["fake_B_pool"])
        if "noise_gen" in state:
            self.noise_gen.set_state(state["noise_gen"])
