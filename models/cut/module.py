"""CUT / FastCUT LightningModule with the official defaults and update order, under manual optimisation."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from models.base import Phase, TranslatorModule
from models.losses import GANLoss, PatchNCELoss, shift_consistency_loss
from models.networks import (
    DISCRIMINATOR_DEFAULTS,
    GENERATOR_DEFAULTS,
    PatchSampleF,
    build_discriminator,
    build_generator,
    build_network,
    init_weights,
    network_spec,
    sample_positions,
)

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
        generator, discriminator: kwargs of :func:`models.networks.build_generator` /
            :func:`models.networks.build_discriminator`.
        gan_mode: ``lsgan`` | ``vanilla`` | ``nonsaturating``.
        lambda_GAN, lambda_NCE: loss weights.
        nce_idt: also apply PatchNCE between sim frames and G(sim) (identity).
        nce_layers: positions in the generator's ``model`` Sequential whose outputs are matched.
        nce_T: temperature.
        num_patches: patches sampled per layer and image.
        netF_nc: MLP width of F.
        nce_includes_all_negatives_from_minibatch: draw negatives across the batch.
        flip_equivariance: FastCUT's random horizontal flip of the input, undone on the features.
        lambda_temporal: weight of :func:`models.losses.shift_consistency_loss` on G (0 = off:
            the plain CUT loss).
        temporal_shift: its shift in pixels.
        **base: see :class:`models.base.TranslatorModule`.

    Shape:
        forward: (N, 3, H, W) in [-1, 1] → (N, 3, H, W) in [-1, 1], H and W multiples of 4.
    """

    optimizer_names = ("G", "D", "F")

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
        lambda_temporal: float = 0.0,
        temporal_shift: int = 3,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.save_hyperparameters(ignore=["frozen_policy", "teacher_generator"])
        self.name = name
        g = network_spec(generator, GENERATOR_DEFAULTS["cut"], build_generator)
        d = network_spec(discriminator, DISCRIMINATOR_DEFAULTS["cut"], build_discriminator)
        g = self.real_generator_spec(g)
        self.remember_generator(g, "netG.")
        self.netG = build_network(g, build_generator, "model.generator")
        self.netD = build_network(d, build_discriminator, "model.discriminator")
        self.init_ema()
        self.nce_layers = [int(i) for i in nce_layers]
        feature_channels: Any = getattr(self.netG, "feature_channels", None)
        if not callable(feature_channels):
            raise ValueError(f"model.generator: CUT needs a generator with feature_channels() and "
                             f"forward_with_features() (models.networks.ResnetGenerator); "
                             f"{type(self.netG).__name__} has none")
        self.netF = PatchSampleF(feature_channels(self.nce_layers), nc=netF_nc, use_mlp=True)
        init_weights(self.netF, init_type=str(g.get("init_type", "xavier")), init_gain=float(g.get("init_gain", 0.02)))
        self.criterionGAN = GANLoss(gan_mode)
        self.lambda_GAN, self.lambda_NCE = lambda_GAN, lambda_NCE
        self.nce_idt = nce_idt
        self.nce_T = nce_T
        self.num_patches = num_patches
        self.nce_all_negatives = nce_includes_all_negatives_from_minibatch
        self.flip_equivariance = flip_equivariance
        self.lambda_temporal, self.temporal_shift = float(lambda_temporal), int(temporal_shift)
        self.patch_gen = torch.Generator().manual_seed(3)
        self._nce_sizes: dict[tuple[int, int], list[int]] = {}
        if self.policy_weights.cycle > 0:
            # a recipe may set it for every model; CUT has no cycle to apply it to
            warnings.warn("model.policy_losses.cycle has no effect on CUT/FastCUT (they have no "
                          "cycle); sim_identity and paired apply", stacklevel=2)
        if self.policy_weights.real_student > 0:
            raise ValueError("model.policy_losses.real_student needs CycleGAN's sim→real generator "
                             "(model=cyclegan); CUT/FastCUT have none: set it to 0")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate real frames to the sim look with the deployable generator (netG, or its weight
        average when ``ema_decay`` > 0). (N, 3, H, W) in [-1, 1] → same shape."""
        return self.deployable_generator()(x)

    def configure_optimizers(self) -> Any:
        opt_G = self.make_optimizer(self.netG.parameters())
        opt_D = self.make_optimizer(self.netD.parameters())
        opt_F = self.make_optimizer(self.netF.parameters())
        return [opt_G, opt_D, opt_F], self._schedulers([opt_G, opt_D, opt_F])

    # -- pieces of an iteration -----------------------------------------------------------------
    @staticmethod
    def flip_if(x: torch.Tensor, flip: torch.Tensor | bool | None) -> torch.Tensor:
        """``x`` flipped along its width when ``flip`` says so (FastCUT's flip-equivariance).

        Args:
            x: (N, C, H, W).
            flip: None / False (unchanged), True, or a 0-d bool tensor on ``x``'s device (chosen
                per element by ``torch.where``, so one CUDA graph serves both outcomes).

        Returns:
            (N, C, H, W).
        """
        if flip is None or flip is False:
            return x
        if flip is True:
            return torch.flip(x, [3])
        return torch.where(flip, torch.flip(x, [3]), x)

    def draw_flip(self, device: torch.device | str) -> torch.Tensor:
        """FastCUT's coin for this iteration, from the patch generator: a 0-d bool tensor."""
        coin = torch.rand((), generator=self.patch_gen) < 0.5
        return coin.to(device, non_blocking=True)  # no host sync (a blocking copy waits for the GPU)

    def nce_feature_sizes(self, height: int, width: int) -> list[int]:
        """Positions (H_l × W_l) of each PatchNCE layer's feature map for (height, width) inputs."""
        key = (int(height), int(width))
        sizes = self._nce_sizes.get(key)
        if sizes is None:
            p = next(self.netG.parameters())
            with torch.no_grad():
                feats = self.netG(torch.zeros(1, 3, *key, device=p.device, dtype=p.dtype),
                                  layers=self.nce_layers, encode_only=True)
            sizes = [int(f.shape[2] * f.shape[3]) for f in feats]
            self._nce_sizes[key] = sizes
        return sizes

    def draw_patch_ids(self, height: int, width: int, device: torch.device | str,
                       live: bool = True) -> list[torch.Tensor]:
        """One PatchNCE call's positions per layer: :func:`models.networks.sample_positions` on the
        CPU from the patch generator (``live``), or a fixed placeholder of the same shapes (a graph
        capture). Copied to ``device`` without a host sync.

        Returns:
            One (min(num_patches, H_l·W_l),) LongTensor per layer, on ``device``.
        """
        out = []
        for n in self.nce_feature_sizes(height, width):
            k = min(self.num_patches, n)
            ids = sample_positions(n, k, self.patch_gen) if live else torch.arange(k)
            out.append(ids.to(device, non_blocking=True))
        return out

    def generator_forward(
        self, real_A: torch.Tensor, real_B: torch.Tensor, flip: torch.Tensor | bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | bool | None]:
        """G on real (and sim, for NCE-identity) in one batched call.

        Args:
            real_A, real_B: (N, 3, H, W) real and sim frames in [-1, 1].
            flip: FastCUT's coin (see :meth:`flip_if`); None draws it when flip-equivariance is on.

        Returns:
            ``(fake_B, idt_B or None, flip)``; with flip-equivariance the input was flipped
            horizontally when ``flip`` is true, and so are the outputs.
        """
        fake_B, idt_B, flip, _ = self.generator_pass(real_A, real_B, flip)
        return fake_B, idt_B, flip

    def generator_pass(
        self, real_A: torch.Tensor, real_B: torch.Tensor, flip: torch.Tensor | bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | bool | None, list[torch.Tensor] | None]:
        """:meth:`generator_forward`, plus G's activations at ``nce_layers`` on its input when they
        are PatchNCE's keys: ``(fake_B, idt_B, flip, keys)``.

        The keys of PatchNCE are G's encodings of its unflipped inputs (real, then sim), detached
        after F; the forward pass computes exactly these activations on the way, so they are
        kept instead of encoding the inputs again. ``keys`` is None when they are not the keys:
        with flip-equivariance (the pass saw the flipped frame), outside training, or without
        PatchNCE. Each key map is (N or 2N, C_l, H_l, W_l), rows in the order real, sim.
        """
        n = real_A.shape[0]
        real = torch.cat([real_A, real_B]) if self.nce_idt and self.training else real_A
        if self.flip_equivariance and self.training:
            if flip is None:
                flip = self.draw_flip(real.device)
            real = self.flip_if(real, flip)
        else:
            flip = None
        keys: list[torch.Tensor] | None = None
        if self.training and self.lambda_NCE > 0 and not self.flip_equivariance:
            fake, keys = self.netG(real, layers=self.nce_layers)
        else:
            fake = self.netG(real)
        fake_B = fake[:n]
        idt_B = fake[n:] if self.nce_idt and self.training else None
        return fake_B, idt_B, flip, keys

    def nce_loss(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        flipped: torch.Tensor | bool | None = False,
        patch_ids: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """PatchNCE between G's encodings of ``src`` (keys) and of its translation ``tgt`` (queries).

        One call of :meth:`nce_losses`.

        Args:
            src: (N, 3, H, W) G's unflipped inputs.
            tgt: (N, 3, H, W) G's outputs for them (for the flipped inputs if ``flipped``).
            flipped: undo the flip on the query features (FastCUT flip-equivariance; see
                :meth:`flip_if`).
            patch_ids: positions to sample per layer (e.g. from :meth:`draw_patch_ids`, or static
                buffers of a CUDA graph); None draws them from the module's patch generator.

        Returns:
            Scalar: mean over layers of λ_NCE × mean patch loss.
        """
        return self.nce_losses([src], [tgt], flipped, [patch_ids])[0]

    def nce_losses(
        self,
        srcs: Sequence[torch.Tensor],
        tgts: Sequence[torch.Tensor],
        flipped: torch.Tensor | bool | None = False,
        patch_ids: Sequence[list[torch.Tensor] | None] | None = None,
        keys: Sequence[torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """Several PatchNCE calls (CUT's real→fake and sim→identity) with one encoding pass of all
        queries (and of all keys, unless given).

        Each call is :meth:`nce_loss`'s: queries G's encodings of ``tgts[i]`` (flipped back when
        ``flipped``), keys G's encodings of ``srcs[i]``, sampled at the same positions by F, with
        negatives from the same image. G's encoder treats every image alone (instance norm), so
        one batched pass gives each call's features.

        Args:
            srcs, tgts: one (N_i, 3, H, W) pair per call.
            flipped: as :meth:`nce_loss` (one coin for every call of the iteration).
            patch_ids: per call, the positions per layer, or None to draw them from the patch
                generator (in call order).
            keys: G's activations at ``nce_layers`` on ``torch.cat(srcs)`` (e.g. from
                :meth:`generator_pass`), one (ΣN_i, C_l, H_l, W_l) map per layer; None encodes
                them here.

        Returns:
            One scalar per call: mean over layers of λ_NCE × mean patch loss.
        """
        sizes = [int(s.shape[0]) for s in srcs]
        ids = list(patch_ids) if patch_ids is not None else [None] * len(sizes)
        feat_q = self.netG(torch.cat(list(tgts)) if len(tgts) > 1 else tgts[0],
                           layers=self.nce_layers, encode_only=True)
        feat_q = [self.flip_if(fq, flipped) for fq in feat_q]
        if keys is None:
            keys = self.netG(torch.cat(list(srcs)) if len(srcs) > 1 else srcs[0],
                             layers=self.nce_layers, encode_only=True)
        elif len(keys) != len(self.nce_layers) or int(keys[0].shape[0]) != sum(sizes):
            raise ValueError(f"keys must hold {len(self.nce_layers)} maps of {sum(sizes)} images "
                             f"(torch.cat(srcs)), got {len(keys)} of {int(keys[0].shape[0]) if keys else 0}")
        out: list[torch.Tensor] = []
        start = 0
        for n, call_ids in zip(sizes, ids, strict=True):
            rows = slice(start, start + n)
            start += n
            feat_k_pool, sample_ids = self.netF([f[rows] for f in keys], self.num_patches, call_ids,
                                                generator=self.patch_gen)
            feat_q_pool, _ = self.netF([f[rows] for f in feat_q], self.num_patches, sample_ids)
            crit = PatchNCELoss(nce_T=self.nce_T, batch_size=n,
                                include_all_negatives_from_minibatch=self.nce_all_negatives)
            total = torch.zeros((), device=srcs[0].device)
            for f_q, f_k in zip(feat_q_pool, feat_k_pool, strict=True):
                total = total + crit(f_q, f_k).mean() * self.lambda_NCE
            out.append(total / len(self.nce_layers))
        return out

    def discriminator_losses(self, real_B: torch.Tensor, fake_B: torch.Tensor,
                             aug: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """LSGAN discriminator loss on a detached fake; ``loss_D`` = mean of real and fake terms.
        ``aug``: ``ctx["diffaug"]`` (DiffAugment on the discriminator's inputs), or None."""
        loss_D_fake = self.criterionGAN(self.netD(self.d_input(fake_B.detach(), aug, 2)), False).mean()
        out_real, r1 = self.discriminate_real(self.netD, self.d_input(real_B, aug, 1))
        loss_D_real = self.criterionGAN(out_real, True).mean()
        losses = {"loss_D_real": loss_D_real, "loss_D_fake": loss_D_fake,
                  "loss_D": (loss_D_fake + loss_D_real) * 0.5}
        if r1 is not None:  # model.r1_gamma > 0
            losses["loss_D_r1"] = r1
            losses["loss_D"] = losses["loss_D"] + 0.5 * self.r1_gamma * r1
        return losses

    def generator_losses(
        self,
        real_A: torch.Tensor,
        real_B: torch.Tensor,
        fake_B: torch.Tensor,
        idt_B: torch.Tensor | None,
        flipped: torch.Tensor | bool | None,
        patch_ids: list[list[torch.Tensor]] | None = None,
        aug: torch.Tensor | None = None,
        keys: Sequence[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """GAN + PatchNCE (+ NCE-identity) losses of G; ``loss_G`` is the total.

        ``patch_ids``: the positions of the real→fake and sim→identity PatchNCE calls (None: drawn
        from the patch generator in that order). ``aug``: ``ctx["diffaug"]`` (DiffAugment on the
        discriminator's input), or None. ``keys``: PatchNCE's key activations from
        :meth:`generator_pass` (None: encoded here; the values are the same).
        """
        losses: dict[str, torch.Tensor] = {}
        if self.lambda_GAN > 0:
            d_fake = self.netD(self.d_input(fake_B, aug, 0))
            losses["loss_G_GAN"] = self.criterionGAN(d_fake, True).mean() * self.lambda_GAN
        else:
            losses["loss_G_GAN"] = torch.zeros((), device=real_A.device)
        # as the official code: keys from the unflipped input, queries from G's output on the
        # (possibly flipped) input, whose features nce_losses flips back
        if self.lambda_NCE > 0:
            srcs, tgts = [real_A], [fake_B]
            if self.nce_idt and idt_B is not None:
                srcs.append(real_B)
                tgts.append(idt_B)
            ids = list(patch_ids)[: len(srcs)] if patch_ids is not None else None
            nce = self.nce_losses(srcs, tgts, flipped, ids, keys)
            losses["loss_NCE"] = nce_both = nce[0]
            if len(nce) > 1:
                losses["loss_NCE_Y"] = nce[1]
                nce_both = (nce[0] + nce[1]) * 0.5
        else:
            losses["loss_NCE"] = nce_both = torch.zeros((), device=real_A.device)
        losses["loss_G"] = losses["loss_G_GAN"] + nce_both
        return losses

    # -- the iteration as phases (every executor runs these; see models.base.Phase) ------------
    def trainable_nets(self) -> list[nn.Module]:
        return [self.netG, self.netD, self.netF]

    def iteration_phases(self) -> list[Phase]:
        """Official CUT order: the discriminator (on G's fresh output), then G and F together."""
        return [
            Phase("D", self.discriminator_step, (1,)),
            Phase("G", self.generator_step, (0, 2), frozen=(self.netD,)),
        ]

    def discriminator_calls(self) -> int:
        """Three inputs: the G phase's D(fake_B); the D phase's real and fake."""
        return 3

    def prepare_iteration(self, ctx: dict[str, Any], live: bool = True) -> None:
        """Host-side draws, in the official order from the patch generator: FastCUT's flip
        (``ctx["flip"]``), then the PatchNCE positions of each call (``ctx["patch_ids"]``); and
        DiffAugment's parameters (``ctx["diffaug"]``, its own stream) when on."""
        self.draw_diffaug(ctx, live)
        real = ctx["real"]
        if self.flip_equivariance:
            ctx["flip"] = (self.draw_flip(real.device) if live
                           else torch.zeros((), dtype=torch.bool, device=real.device))
        if self.lambda_NCE > 0 and self.num_patches > 0:
            calls = 2 if self.nce_idt else 1
            h, w = int(real.shape[-2]), int(real.shape[-1])
            ctx["patch_ids"] = [self.draw_patch_ids(h, w, real.device, live) for _ in range(calls)]

    def discriminator_step(self, ctx: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """G's forward of the iteration (kept in the context for the G phase), then D's loss.

        Args:
            ctx: ``real`` and ``sim`` (N, 3, H, W) in [-1, 1] (+ ``flip``); adds ``fake_B``,
                ``idt_B`` (N, 3, H, W, or None) and ``nce_keys`` (see :meth:`generator_pass`).

        Returns:
            ``(named losses, loss_D)``.
        """
        fake_B, idt_B, _, keys = self.generator_pass(ctx["real"], ctx["sim"], ctx.get("flip"))
        ctx["fake_B"], ctx["idt_B"], ctx["nce_keys"] = fake_B, idt_B, keys
        d = self.discriminator_losses(ctx["sim"], fake_B, ctx.get("diffaug"))
        return d, d["loss_D"]

    def generator_step(self, ctx: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """G's losses of one iteration: GAN, PatchNCE (+ identity), policy, distillation.

        Returns:
            ``(named losses, total)``: ``loss_G`` (the model's own total), each
            ``loss_policy_*`` / ``loss_distill`` term, and the scalar the backward pass takes.
        """
        real_A, real_B = ctx["real"], ctx["sim"]
        fake_B, idt_B, flip = ctx["fake_B"], ctx["idt_B"], ctx.get("flip")
        losses = self.generator_losses(real_A, real_B, fake_B, idt_B, flip, ctx.get("patch_ids"),
                                       ctx.get("diffaug"), ctx.get("nce_keys"))
        losses.update(self.policy_losses(ctx, idt_B, flip))
        # fake_B is G's output for the flipped frame when flipped: the teacher sees the same input
        losses.update(self.distill_losses(self.flip_if(real_A, flip), fake_B))
        total = losses["loss_G"] + self.extra_generator_loss(losses, real_A)
        if self.lambda_temporal > 0:
            losses["loss_temporal"] = self.lambda_temporal * shift_consistency_loss(
                self.netG, self.flip_if(real_A, flip), fake_B, shift=self.temporal_shift)
            total = total + losses["loss_temporal"]
        return losses, total

    def log_iteration(self, ctx: dict[str, Any]) -> None:
        flip, idt_B = ctx.get("flip"), ctx.get("idt_B")
        shown = [self.flip_if(ctx["fake_B"], flip)]
        if idt_B is not None:
            shown.append(self.flip_if(idt_B, flip))
        strip = [ctx["real"], shown[0]] + ([ctx["sim"], shown[1]] if idt_B is not None else [])
        self.log_image_strip("train/real|translated|sim|identity", strip)
        self.log_paired_strip(ctx, self.netG)

    def policy_losses(
        self, batch: dict[str, Any], idt_B: torch.Tensor | None, flipped: torch.Tensor | bool | None
    ) -> dict[str, torch.Tensor]:
        """Policy-consistency terms (``model.policy_losses``), each ``loss_policy_<name>``.

        - ``sim_identity``: π(y_sim) ≈ π(G(y_sim)), on the NCE-identity pass (computed if off).
        - ``paired`` / ``paired_pixel``: on paired frames (:meth:`paired_losses`).
        """
        w = self.policy_weights
        losses = self.paired_losses(batch, self.netG)
        if not w.any():
            return losses
        real_B = batch["sim"]
        if w.sim_identity > 0:
            # with flip-equivariance the identity pass saw the flipped frame
            idt = self.netG(real_B) if idt_B is None else self.flip_if(idt_B, flipped)
            losses.update(self.policy_consistency(real_B, idt, "sim_identity", w.sim_identity))
        return losses

    def rank_generators(self) -> list[torch.Generator]:
        return [*super().rank_generators(), self.patch_gen]

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "patch_gen": self.patch_gen.get_state()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        super().load_extra_state(state)
        if "patch_gen" in state:
            self.patch_gen.set_state(state["patch_gen"])
