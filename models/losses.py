"""GAN objectives (LSGAN, vanilla, non-saturating), the R1 penalty, CUT's PatchNCE loss and a shift-consistency (temporal) loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GAN_MODES", "GANLoss", "PatchNCELoss", "discriminate_with_r1", "shift_consistency_loss"]

GAN_MODES = ("lsgan", "vanilla", "nonsaturating")


class GANLoss(nn.Module):
    """GAN objective on raw discriminator outputs (no sigmoid in D), as the official ``GANLoss``.

    - ``lsgan``: mean squared error to the label (1.0 for real, 0.0 for fake).
    - ``vanilla``: binary cross-entropy with logits to the label.
    - ``nonsaturating`` (CUT's code): ``softplus(-D)`` for real, ``softplus(D)`` for fake.
      CUT returns one value per image and its callers take ``.mean()``; the mean over the batch
      of per-image means is returned here directly (the same number, since every image has the
      same number of patch logits).

    Args:
        mode: ``"lsgan"``, ``"vanilla"`` or ``"nonsaturating"``.
        target_real_label: label of real images (lsgan / vanilla).
        target_fake_label: label of fake images (lsgan / vanilla).

    Shape:
        - prediction: (B, ...) any shape, e.g. PatchGAN's (B, 1, H', W').
        - Output: scalar.

    Example:
        >>> GANLoss("lsgan")(torch.full((1, 1, 2, 2), 0.5), True)
        tensor(0.2500)
    """

    real_label: Tensor
    fake_label: Tensor

    def __init__(
        self, mode: str = "lsgan", target_real_label: float = 1.0, target_fake_label: float = 0.0
    ) -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"mode must be one of {GAN_MODES}, got {mode!r}")
        self.mode = mode
        # not persistent: the labels are configuration, not state to carry in checkpoints
        self.register_buffer("real_label", torch.tensor(target_real_label), persistent=False)
        self.register_buffer("fake_label", torch.tensor(target_fake_label), persistent=False)

    def forward(self, prediction: Tensor, target_is_real: bool) -> Tensor:
        """Loss of ``prediction`` (raw D outputs) against real (True) or fake (False) labels.

        Args:
            prediction: discriminator output (B, ...).
            target_is_real: whether the target label is "real".

        Returns:
            Scalar loss.
        """
        if prediction.ndim < 1 or prediction.numel() == 0:
            raise ValueError(
                f"prediction must be a non-empty (B, ...) tensor, got {tuple(prediction.shape)}"
            )
        if self.mode == "nonsaturating":
            sign = -1.0 if target_is_real else 1.0
            per_image = F.softplus(sign * prediction).reshape(prediction.shape[0], -1).mean(dim=1)
            return per_image.mean()
        label = self.real_label if target_is_real else self.fake_label
        target = label.to(prediction.dtype).expand_as(prediction)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


class PatchNCELoss(nn.Module):
    """CUT's PatchNCE loss: InfoNCE over patches, one loss value per query patch.

    For query q_i and key k_i (the same position in the source image; keys are detached), the
    logits are ``[q_i . k_i, q_i . k_j (j != i)] / nce_T`` with the negatives k_j taken from the
    same image (``include_all_negatives_from_minibatch=False``) or from the whole minibatch.
    As in the official code the "self" entry of the negative matrix (which duplicates the
    positive) is filled with -10 before dividing by ``nce_T`` (not -inf), and the loss is the
    cross-entropy against index 0 without reduction.

    Args:
        nce_T: temperature tau.
        batch_size: images per minibatch (rows of the features are image-major: B x P).
        include_all_negatives_from_minibatch: take negatives from every image in the minibatch
            (CUT's single-image setting) instead of from the same image only.

    Shape:
        - feat_q, feat_k: (B * P, D), rows L2-normalised (as :class:`PatchSampleF` returns them).
        - Output: (B * P,).
    """

    def __init__(
        self,
        nce_T: float = 0.07,
        batch_size: int = 1,
        include_all_negatives_from_minibatch: bool = False,
    ) -> None:
        super().__init__()
        if nce_T <= 0 or batch_size < 1:
            raise ValueError(f"need nce_T > 0 and batch_size >= 1, got {nce_T}, {batch_size}")
        self.nce_T = nce_T
        self.batch_size = batch_size
        self.include_all_negatives_from_minibatch = include_all_negatives_from_minibatch

    def forward(self, feat_q: Tensor, feat_k: Tensor, batch_size: int | None = None) -> Tensor:
        """Per-patch PatchNCE loss.

        Args:
            feat_q: query features (B * P, D) from the translated image.
            feat_k: key features (B * P, D) from the source image (detached here).
            batch_size: B for this call (e.g. a last, smaller batch); default ``self.batch_size``.

        Returns:
            Loss per query patch, (B * P,).
        """
        if feat_q.ndim != 2 or feat_q.shape != feat_k.shape:
            raise ValueError(
                "feat_q and feat_k must both have shape (B * P, D), got "
                f"{tuple(feat_q.shape)} and {tuple(feat_k.shape)}"
            )
        n, dim = feat_q.shape
        b = self.batch_size if batch_size is None else batch_size
        if self.include_all_negatives_from_minibatch:
            b = 1
        if b < 1 or n % b:
            raise ValueError(f"the {n} feature rows do not split into batch_size={b} images")
        feat_k = feat_k.detach()
        l_pos = (feat_q * feat_k).sum(dim=1, keepdim=True)  # (N, 1)
        q = feat_q.reshape(b, -1, dim)
        k = feat_k.reshape(b, -1, dim)
        p = q.shape[1]
        l_neg = torch.bmm(q, k.transpose(1, 2))  # (b, P, P)
        self_pairs = torch.eye(p, device=q.device, dtype=torch.bool)[None]
        l_neg = l_neg.masked_fill(self_pairs, -10.0).reshape(-1, p)  # (N, P)
        logits = torch.cat([l_pos, l_neg], dim=1) / self.nce_T
        target = torch.zeros(n, dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, target, reduction="none")


def discriminate_with_r1(disc: nn.Module, real: Tensor) -> tuple[Tensor, Tensor]:
    """A discriminator's output on real images and the R1 penalty (Mescheder et al. 2018):
    the squared norm of the gradient of D's per-image score with respect to its input, averaged
    over the batch. A PatchGAN's score of an image is the mean of its patch outputs (as the GAN
    losses average them), so the penalty does not grow with the number of patches. The gradient
    is taken with ``create_graph``, so the penalty trains D.

    One D pass serves both: its output goes into the usual real-image loss and its input gradient
    into the penalty, so a model's discriminator loss adds ``gamma / 2 * penalty``.

    Args:
        disc: the discriminator.
        real: (N, 3, H, W) real images of D's domain (the input is detached first).

    Returns:
        ``(D(real), penalty)``: D's output (N, ...) and the scalar penalty (float32).
    """
    x = real.detach().requires_grad_(True)
    out = disc(x)
    (grad,) = torch.autograd.grad(out.float().flatten(1).mean(1).sum(), x, create_graph=True)
    return out, grad.float().pow(2).flatten(1).sum(1).mean()


def shift_consistency_loss(
    generator: nn.Module, x: Tensor, y: Tensor, *, shift: int = 3, crop: int = 4, margin: int = 8
) -> Tensor:
    """Temporal-consistency proxy: translating a shifted frame = shifting the translated frame.

    ``L1(G(S(x)), S(y))`` with ``y = G(x)`` already computed and ``S`` a crop offset by ``shift``
    pixels in both directions (a camera pan by a few pixels, as between consecutive frames; cf.
    VR-Goggles' shift loss). The crop is ``crop`` pixels smaller than the frame, so a multiple of
    4 stays one; ``margin`` pixels at the crop's border (where G's padding differs) are left out.
    Gradients reach G through both terms; nothing else is involved.

    Args:
        generator: the translator G (real → sim).
        x: real frames.
        y: ``G(x)`` (keep its graph: both sides are trained).
        shift: offset in pixels, ``0 < shift <= crop``.
        crop: how much smaller the shifted crop is (a multiple of the generator's stride).
        margin: border pixels excluded from the comparison.

    Returns:
        Scalar loss.

    Shape:
        - x, y: :math:`(N, 3, H, W)` in [-1, 1], ``H, W > crop + 2 * margin``.
    """
    if not 0 < shift <= crop:
        raise ValueError(f"shift must be in (0, crop={crop}]; got {shift}")
    h, w = x.shape[-2] - crop, x.shape[-1] - crop
    if min(h, w) <= 2 * margin:
        raise ValueError(f"frames of {tuple(x.shape[-2:])} are too small for crop {crop} and "
                         f"margin {margin}")
    g = generator(x[..., shift : shift + h, shift : shift + w])
    ref = y[..., shift : shift + h, shift : shift + w]
    m = margin
    return F.l1_loss(g[..., m : h - m, m : w - m], ref[..., m : h - m, m : w - m])
