"""DiffAugment (Zhao et al. 2020): the same random, differentiable augmentations on every image a discriminator sees."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["DIFFAUG_OPS", "N_PARAMS", "diff_augment", "draw_diffaug_params", "parse_diffaug"]

#: the augmentations, in the order they are applied (the official DiffAugment's policy names)
DIFFAUG_OPS = ("color", "translation", "cutout")
#: per image: brightness, saturation, contrast, shift y, shift x, cutout centre y, cutout centre x
N_PARAMS = 7
TRANSLATION_RATIO = 0.125  # the official defaults
CUTOUT_RATIO = 0.5


def parse_diffaug(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``model.diffaug`` → the ops to apply, in :data:`DIFFAUG_OPS` order.

    Args:
        spec: ``"color,translation,cutout"`` (any subset, comma-separated or a list); empty or
            None = off.

    Returns:
        The ops, e.g. ``("color", "cutout")``; ``()`` when off.

    Raises:
        ValueError: an unknown op, naming it and the valid ones.
    """
    if not spec:
        return ()
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [n for n in names if n not in DIFFAUG_OPS]
    if bad:
        raise ValueError(f"model.diffaug: unknown augmentation {bad[0]!r}; choose from "
                         f"{', '.join(DIFFAUG_OPS)} (comma-separated), or '' for none")
    return tuple(op for op in DIFFAUG_OPS if op in names)


def draw_diffaug_params(calls: int, n: int, height: int, width: int, generator: torch.Generator,
                        live: bool = True) -> torch.Tensor:
    """Random augmentation parameters for ``calls`` discriminator inputs of ``n`` images each.

    Drawn on the host (CPU generator), so a CUDA-graph replay reads them as inputs. Each call
    gets its own draw (the real and the fake batch of a loss are augmented independently, as in
    the official code).

    Args:
        calls: how many discriminator inputs the iteration has.
        n, height, width: batch size and image size.
        generator: the CPU generator (saved with the module's other generators).
        live: False under a graph capture: the identity parameters, and no draw.

    Returns:
        (calls, n, 7) float: brightness in [-0.5, 0.5), saturation factor in [0, 2), contrast
        factor in [0.5, 1.5), integer shifts in ±ratio·size, integer cutout centres.
    """
    if not live:
        p = torch.zeros(calls, n, N_PARAMS)
        p[..., 1] = 1.0
        p[..., 2] = 1.0
        p[..., 5] = -height  # the cutout box lies outside the frame
        p[..., 6] = -width
        return p
    u = torch.rand(calls, n, 3, generator=generator)
    sy, sx = int(height * TRANSLATION_RATIO + 0.5), int(width * TRANSLATION_RATIO + 0.5)
    shift_y = torch.randint(-sy, sy + 1, (calls, n, 1), generator=generator)
    shift_x = torch.randint(-sx, sx + 1, (calls, n, 1), generator=generator)
    ch, cw = int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)
    cut_y = torch.randint(0, height + (1 - ch % 2), (calls, n, 1), generator=generator)
    cut_x = torch.randint(0, width + (1 - cw % 2), (calls, n, 1), generator=generator)
    return torch.cat([u[..., :1] - 0.5, u[..., 1:2] * 2, u[..., 2:3] + 0.5,
                      shift_y.float(), shift_x.float(), cut_y.float(), cut_x.float()], dim=-1)


def diff_augment(x: torch.Tensor, params: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
    """The official DiffAugment ops with the given parameters; differentiable in ``x``.

    Args:
        x: (N, C, H, W) images in [-1, 1].
        params: (N, 7) from :func:`draw_diffaug_params` (one call's slice), on ``x``'s device.
        ops: from :func:`parse_diffaug`; empty = ``x`` unchanged.

    Returns:
        (N, C, H, W): colour (brightness, saturation, contrast), then translation with zero fill,
        then a zeroed square of half the size.
    """
    if not ops:
        return x
    p = params.to(device=x.device, dtype=x.dtype)
    n, _, h, w = x.shape
    col = p[:, :, None, None]  # (N, 7, 1, 1)
    if "color" in ops:
        x = x + col[:, 0:1]
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * col[:, 1:2] + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * col[:, 2:3] + mean
    if "translation" in ops:
        ys = torch.arange(h, device=x.device)[None, :] - p[:, 3:4].long()  # (N, H) source rows
        xs = torch.arange(w, device=x.device)[None, :] - p[:, 4:5].long()
        padded = F.pad(x, [1, 1, 1, 1])  # out-of-frame sources read the zero border
        ys = (ys + 1).clamp(0, h + 1)
        xs = (xs + 1).clamp(0, w + 1)
        b = torch.arange(n, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[b, ys[:, :, None], xs[:, None, :]].permute(0, 3, 1, 2)
    if "cutout" in ops:
        ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
        y = torch.arange(h, device=x.device)[None, :]
        xx = torch.arange(w, device=x.device)[None, :]
        y0 = p[:, 5:6].long() - ch // 2
        x0 = p[:, 6:7].long() - cw // 2
        in_y = (y >= y0) & (y < y0 + ch)  # (N, H)
        in_x = (xx >= x0) & (xx < x0 + cw)
        keep = ~(in_y[:, :, None] & in_x[:, None, :])  # (N, H, W)
        x = x * keep[:, None].to(x.dtype)
    return x
