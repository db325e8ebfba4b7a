"""CUT / FastCUT LightningModule with the official defaults and update order, under manual optimisation."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from models.base import TranslatorModule, build_discriminator, build_generator
from models.losses import GANLoss, PatchNCELoss
from models.networks import PatchSampleF, init_weights

__all__ = ["CUTModule"]


class CUTModule(TranslatorModule):
    """Contrastive Unpaired Translation: G real→sim, D judges sim, F samples patches for PatchNCE.

    Official CUT defaults (taesungp/contrastive-unpaired-translation): antialiased ResNet-9 ngf 64,
    antialiased PatchGAN, xavier init gain 0.02, LSGAN with λ_GAN 1, PatchNCE λ_NCE 1 on generator
    layers 0, 4, 8, 12, 16 with a 2-layer 256-unit MLP, 256 patches, τ 0.07, negatives from the same
    image, NCE-identity on, 200 + 200 epochs, no image pool. FastCUT: λ_NCE 10, no NCE-identity,
    flip-equivariance, 150 + 50 epochs (``configs/model/fastcut.yaml``). Update order: D, then G
    and F together.

    F is built in ``__init__`` from the channel counts of the chosen generator layers (the official
    code builds it lazily on the first forward), so optimisers and checkpoints see every parameter
    from the start.

    Args:
        generator, discriminator: kwargs of :func:`models.base.build_generator` /
            :func:`models.base.build_discriminator`.
        gan_mode: ``lsgan`` | ``vanilla`` | ``nonsaturating``.
        lambda_GAN, lambda_NCE: loss weights.
        nce_idt: also apply PatchNCE between sim frames and G(sim) (identity).
        nce_layers: positions in the generator's ``model`` Sequential whose outputs are matched.
        nce_T: temperature.
        num_patches: patches sampled per layer and image.
        netF_nc: MLP width of F.
        nce_includes_all_negatives_from_minibatch: draw negatives across the batch.
        flip_equivariance: FastCUT's random horizontal flip of the input, undone on the features.
        **base: see :class:`models.base.TranslatorModule`.

    Shape:
        forward: (N, 3, H, W) in [-1, 1] → (N, 3, H, W) in [-1, 1], H and W multiples of 4.
    """

    def __init__(
        self,
        *,
        name: str = "cut",
        generator: dict[str, Any] | None = None,
        discriminator: dict[str, Any] | None = None,
        gan_mode: str = "lsgan",
        lambda_GAN: float = 1.0,
        lambda_NCE: float = 1.0,
        nce_idt: bool = True,
        nce_layers: Sequence[int] = (0, 4, 8, 12, 16),
        nce_T: float = 0.07,
        num_patches: int = 256,
        netF_nc: int = 256,
        nce_includes_all_negatives_from_minibatch: bool = False,
        flip_equivariance: bool = False,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.save_hyperparameters()
        self.name = name
        g = {"init_type": "xavier", "antialias": True, "antialias_up": True, **(generator or {})}
        d = {"init_type": "xavier", "antialias": True, **(discriminator or {})}
        self.netG = build_generator(**g)
        self.netD = build_discriminator(**d)
        self.nce_layers = [int(i) for i in nce_layers]
        self.netF = PatchSampleF(self.netG.feature_channels(self.nce_layers), nc=netF_nc, use_mlp=True)
        init_weights(self.netF, init_type=g["init_type"], init_gain=float(g.get("init_gain", 0.02)))
        self.criterionGAN = GANLoss(gan_mode)
        self.lambda_GAN, self.lambda_NCE = lambda_GAN, lambda_NCE
        self.nce_idt = nce_idt
        self.nce_T = nce_T
        self.num_patches = num_patches
        self.nce_all_negatives = nce_includes_all_negatives_from_minibatch
        self.flip_equivariance = flip_equivariance
        self.patch_gen = torch.Generator().manual_seed(3)
        if self.policy_weights.cycle > 0:
            # a recipe may set it for every model; CUT has no cycle to apply it to
            warnings.warn("model.policy_losses.cycle has no effect on CUT/FastCUT (they have no "
                          "cycle); sim_identity and paired apply", stacklevel=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate real frames to the sim look. (N, 3, H, W) in [-1, 1] → same shape."""
        return self.netG(x)

    def configure_optimizers(self) -> Any:
        opt_G = self._adam(self.netG.parameters())
        opt_D = self._adam(self.netD.parameters())
        opt_F = self._adam(self.netF.parameters())
        return [opt_G, opt_D, opt_F], self._schedulers([opt_G, opt_D, opt_F])

    # -- pieces of an iteration -----------------------------------------------------------------
    def generator_forward(
        self, real_A: torch.Tensor, real_B: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """G on real (and sim, for NCE-identity) in one batched call.

        Returns:
            ``(fake_B, idt_B or None, flipped)``; with flip-equivariance the input was flipped
            horizontally and so are the outputs.
        """
        n = real_A.shape[0]
        real = torch.cat([real_A, real_B]) if self.nce_idt and self.training else real_A
        flipped = False
        if self.flip_equivariance and self.training:
            flipped = bool(torch.rand((), generator=self.patch_gen) < 0.5)
            if flipped:
                real = torch.flip(real, [3])
        fake = self.netG(real)
        fake_B = fake[:n]
        idt_B = fake[n:] if self.nce_idt and self.training else None
        return fake_B, idt_B, flipped

    def nce_loss(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        flipped: bool = False,
        patch_ids: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """PatchNCE between G's encodings of ``src`` (keys) and of its translation ``tgt`` (queries).

        Args:
            src: (N, 3, H, W) G's unflipped inputs.
            tgt: (N, 3, H, W) G's outputs for them (for the flipped inputs if ``flipped``).
            flipped: undo the flip on the query features (FastCUT flip-equivariance).
            patch_ids: positions to sample per layer (device tensors, e.g. static buffers of a
                CUDA graph); None draws them from the module's patch generator.

        Returns:
            Scalar: mean over layers of λ_NCE × mean patch loss.
        """
        feat_q = self.netG(tgt, layers=self.nce_layers, encode_only=True)
        if flipped:
            feat_q = [torch.flip(fq, [3]) for fq in feat_q]
        feat_k = self.netG(src, layers=self.nce_layers, encode_only=True)
        feat_k_pool, sample_ids = self.netF(feat_k, self.num_patches, patch_ids, generator=self.patch_gen)
        feat_q_pool, _ = self.netF(feat_q, self.num_patches, sample_ids)
        crit = PatchNCELoss(
            nce_T=self.nce_T, batch_size=src.shape[0],
            include_all_negatives_from_minibatch=self.nce_all_negatives,
        )
        total = torch.zeros((), device=src.device)
        for f_q, f_k in zip(feat_q_pool, feat_k_pool, strict=True):
            total = total + crit(f_q, f_k).mean() * self.lambda_NCE
        return total / len(self.nce_layers)

    def discriminator_losses(self, real_B: torch.Tensor, fake_B: torch.Tensor) -> dict[str, torch.Tensor]:
        """LSGAN discriminator loss on a detached fake; ``loss_D`` = mean of real and fake terms."""
        loss_D_fake = self.criterionGAN(self.netD(fake_B.detach()), False).mean()
        loss_D_real = self.criterionGAN(self.netD(real_B), True).mean()
        return {"loss_D_real": loss_D_real, "loss_D_fake": loss_D_fake,
                "loss_D": (loss_D_fake + loss_D_real) * 0.5}

    def generator_losses(
        self,
        real_A: torch.Tensor,
        real_B: torch.Tensor,
        fake_B: torch.Tensor,
        idt_B: torch.Tensor | None,
        flipped: bool,
    ) -> dict[str, torch.Tensor]:
        """GAN + PatchNCE (+ NCE-identity) losses of G; ``loss_G`` is the total."""
        losses: dict[str, torch.Tensor] = {}
        if self.lambda_GAN > 0:
            losses["loss_G_GAN"] = self.criterionGAN(self.netD(fake_B), True).mean() * self.lambda_GAN
        else:
            losses["loss_G_GAN"] = torch.zeros((), device=real_A.device)
        # as the official code: keys from the unflipped input, queries from G's output on the
        # (possibly flipped) input, whose features nce_loss flips back
        if self.lambda_NCE > 0:
            losses["loss_NCE"] = self.nce_loss(real_A, fake_B, flipped)
        else:
            losses["loss_NCE"] = torch.zeros((), device=real_A.device)
        nce_both = losses["loss_NCE"]
        if self.nce_idt and self.lambda_NCE > 0 and idt_B is not None:
            losses["loss_NCE_Y"] = self.nce_loss(real_B, idt_B, flipped)
            nce_both = (losses["loss_NCE"] + losses["loss_NCE_Y"]) * 0.5
        losses["loss_G"] = losses["loss_G_GAN"] + nce_both
        return losses

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        real_A, real_B = batch["real"], batch["sim"]
        self.sync_lr_schedule()
        step = self.global_step
        opt_G, opt_D, opt_F = self.optimizers()  # type: ignore[misc,attr-defined]
        fake_B, idt_B, flipped = self.generator_forward(real_A, real_B)
        # discriminator first (official CUT order)
        self.set_requires_grad([self.netD], True)
        d_losses = self.discriminator_losses(real_B, fake_B)
        opt_D.zero_grad(set_to_none=True)
        self.manual_backward(d_losses["loss_D"])
        opt_D.optimizer.step()  # not counted as an iteration (see TranslatorModule)
        # generator and patch MLP
        self.set_requires_grad([self.netD], False)
        g_losses = self.generator_losses(real_A, real_B, fake_B, idt_B, flipped)
        g_losses.update(self.policy_losses(batch, idt_B, flipped))
        # fake_B is G's output for the flipped frame when flipped: the teacher sees the same input
        g_losses.update(self.distill_losses(torch.flip(real_A, [3]) if flipped else real_A, fake_B))
        loss_total = g_losses["loss_G"] + self.extra_generator_loss(g_losses, real_A)
        opt_G.zero_grad(set_to_none=True)
        opt_F.zero_grad(set_to_none=True)
        self.manual_backward(loss_total)
        opt_G.step()
        opt_F.optimizer.step()
        losses = {**g_losses, **d_losses}
        self.check_finite(losses, step)
        self.log_losses(losses, real_A.shape[0])
        shown = [fake_B] + ([idt_B] if idt_B is not None else [])
        if flipped:
            shown = [torch.flip(t, [3]) for t in shown]
        strip = [real_A, shown[0]] + ([real_B, shown[1]] if idt_B is not None else [])
        self.log_image_strip("train/real|translated|sim|identity", strip)

    def policy_losses(
        self, batch: dict[str, torch.Tensor], idt_B: torch.Tensor | None, flipped: bool
    ) -> dict[str, torch.Tensor]:
        """Policy-consistency terms (``model.policy_losses``), each ``loss_policy_<name>``.

        - ``sim_identity``: π(y_sim) ≈ π(G(y_sim)), on the NCE-identity pass (computed if off).
        - ``paired``: π(G(x_real)) ≈ π(y_sim), when the batch holds ``paired_real``/``paired_sim``.
        """
        w = self.policy_weights
        if not w.any():
            return {}
        real_B = batch["sim"]
        losses: dict[str, torch.Tensor] = {}
        if w.sim_identity > 0:
            if idt_B is None:
                idt = self.netG(real_B)
            else:  # with flip-equivariance the identity pass saw the flipped frame
                idt = torch.flip(idt_B, [3]) if flipped else idt_B
            losses.update(self.policy_consistency(real_B, idt, "sim_identity", w.sim_identity))
        if w.paired > 0 and "paired_real" in batch:
            fake = self.netG(batch["paired_real"])
            losses.update(self.policy_consistency(batch["paired_sim"], fake, "paired", w.paired))
        return losses

    def rank_generators(self) -> list[torch.Generator]:
        return [self.patch_gen]

    def extra_state(self) -> dict[str, Any]:
        return {"patch_gen": self.patch_gen.get_state()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if "patch_gen" in state:
            self.patch_gen.set_state(state["patch_gen"])
