"""History buffer of generated images for the discriminator (CycleGAN's ImagePool), resumable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["ImagePool"]


class ImagePool:
    """Buffer of past generated images, with the official semantics and a resumable state.

    With ``pool_size == 0`` :meth:`query` returns its input unchanged. Otherwise, per image of
    the batch: while the pool is not full the image is stored and returned; once full, with
    probability 1/2 a uniformly chosen stored image is returned and replaced by the new one, else
    the new image is returned. Returned and stored images are detached.

    All randomness comes from one ``torch.Generator``; :meth:`state_dict` holds the stored images
    and the generator state, so a run resumed with :meth:`load_state_dict` draws exactly what the
    uninterrupted run would have.

    Args:
        pool_size: capacity (CycleGAN: 50; CUT: 0).
        generator: source of randomness (its device is where draws happen). Default: a new CPU
            generator seeded from torch's global generator, so ``seed_everything`` fixes it.

    Example:
        >>> pool = ImagePool(50, torch.Generator().manual_seed(0))
        >>> fake_for_d = pool.query(torch.zeros(1, 3, 8, 8))
    """

    def __init__(self, pool_size: int, generator: torch.Generator | None = None) -> None:
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size = pool_size
        self.images: list[Tensor] = []
        if generator is None:
            generator = torch.Generator()
            if pool_size > 0:
                generator.manual_seed(int(torch.randint(0, 2**62, ()).item()))
        self.generator = generator

    def __len__(self) -> int:
        """Number of images stored."""
        return len(self.images)

    def query(self, images: Tensor) -> Tensor:
        """Return the images to show the discriminator, updating the pool.

        Args:
            images: the latest generated images (B, C, H, W).

        Returns:
            (B, C, H, W) on the device and dtype of ``images``; ``images`` itself when
            ``pool_size == 0``.
        """
        if self.pool_size == 0:
            return images
        if images.ndim != 4:
            raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
        out: list[Tensor] = []
        g = self.generator
        for i in range(images.shape[0]):
            image = images[i : i + 1].detach().clone()  # (1, C, H, W)
            if len(self.images) < self.pool_size:
                self.images.append(image)
                out.append(image)
            elif torch.rand((), generator=g, device=g.device).item() > 0.5:
                j = int(torch.randint(self.pool_size, (), generator=g, device=g.device).item())
                out.append(self.images[j].to(images.device, images.dtype))
                self.images[j] = image
            else:
                out.append(image)
        return torch.cat(out, dim=0)

    __call__ = query

    def state_dict(self) -> dict[str, Any]:
        """Return ``{"pool_size", "images" (list of (1, C, H, W)), "generator_state"}``.

        The tensors are references, not copies; ``torch.save`` them (they load with
        ``weights_only=True``).
        """
        return {
            "pool_size": self.pool_size,
            "images": list(self.images),
            "generator_state": self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the stored images and the generator state saved by :meth:`state_dict`.

        Args:
            state: a dict from :meth:`state_dict`.

        Raises:
            ValueError: ``state`` is missing keys or was saved by a pool of another size.
        """
        missing = {"pool_size", "images", "generator_state"} - set(state)
        if missing:
            raise ValueError(f"ImagePool state is missing {sorted(missing)}")
        if int(state["pool_size"]) != self.pool_size:
            raise ValueError(
                f"ImagePool state was saved with pool_size={state['pool_size']}, "
                f"this pool has pool_size={self.pool_size}"
            )
        images = list(state["images"])
        if len(images) > self.pool_size:
            raise ValueError(f"ImagePool state holds {len(images)} > {self.pool_size} images")
        self.images = images
        self.generator.set_state(state["generator_state"].cpu())
