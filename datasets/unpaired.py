"""Unpaired real/sim image dataset for translator training, with lens correction and augmentation."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.sampling import item_generator
from translate.camera import CameraCorrection
from translate.imageio import ImageDecodeError, list_images, read_image, read_images

__all__ = ["MIN_FRAME_SIZE", "UnpairedImageDataset", "build_transform", "to_tensor"]

log = logging.getLogger(__name__)


def build_transform(
    *, load_size: int | None, crop_size: int | None, flip: bool, train: bool
) -> A.Compose:
    """The official CycleGAN/CUT ``resize_and_crop`` + flip pipeline, in albumentations.

    Args:
        load_size: resize to this square size first (None keeps the size).
        crop_size: random crop (train) or centre crop (eval) of this size (None = no crop).
        flip: random horizontal flips (train only). Style is left-right symmetric, so flips are
            safe for a translator (not for a steering policy).
        train: random crop/flip when True, deterministic otherwise.

    Returns:
        An albumentations pipeline on RGB uint8 (H, W, 3) arrays.
    """
    ops: list[Any] = []
    if load_size:
        ops.append(A.Resize(load_size, load_size, interpolation=1))  # bicubic would ring on noise
    if crop_size and (not load_size or crop_size < load_size):
        ops.append(A.RandomCrop(crop_size, crop_size) if train else A.CenterCrop(crop_size, crop_size))
    if flip and train:
        ops.append(A.HorizontalFlip(p=0.5))
    return A.Compose(ops)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) → float32 (3, H, W) in [-1, 1] (the translators' convention)."""
    if not image.flags.writeable or not image.flags.c_contiguous:
        image = np.array(image, copy=True, order="C")
    t = torch.from_numpy(image).permute(2, 0, 1).float()
    return t.div_(127.5).sub_(1.0)


#: Frames smaller than this (either side) are skipped like undecodable ones: upscaling a 1×1
#: image to the crop size would train on noise.
MIN_FRAME_SIZE = 16


class UnpairedImageDataset(Dataset[dict[str, torch.Tensor]]):
    """Real and sim frames drawn independently (the official ``unaligned`` dataset).

    Item ``i`` is real frame ``i % n_real`` and a random sim frame, so an epoch is
    ``max(n_real, n_sim)`` items, as in the official code. Real frames are lens-corrected to the
    sim camera's view first when a :class:`~translate.camera.CameraCorrection` is given (the
    translator should learn style, not optics).

    Args:
        real_dir, sim_dir: image folders.
        correction: lens correction applied to real frames, or None.
        transform: albumentations pipeline (see :func:`build_transform`).
        cache: decode every frame once into memory (fast for small datasets; decoding errors are
            reported up front).
        on_error: undecodable files: ``"skip"`` reports and drops them, ``"raise"`` stops.
        num_workers: decoding threads for the cache.

    Shape:
        Items: ``{"real": (3, H, W), "sim": (3, H, W)}`` float32 in [-1, 1].
    """

    def __init__(
        self,
        real_dir: str | os.PathLike[str],
        sim_dir: str | os.PathLike[str],
        *,
        correction: CameraCorrection | None = None,
        transform: A.Compose | None = None,
        cache: bool = True,
        on_error: Literal["skip", "raise"] = "skip",
        num_workers: int = 2,
        max_items: int | None = None,
    ) -> None:
        self.real_paths = list_images(real_dir, what="real image folder")
        self.sim_paths = list_images(sim_dir, what="sim image folder")
        if max_items:
            self.real_paths = self.real_paths[:max_items]
            self.sim_paths = self.sim_paths[:max_items]
        self.correction = correction
        self.transform = transform
        self.on_error = on_error
        self.skipped: list[ImageDecodeError] = []
        self._real: list[np.ndarray] | None = None
        self._sim: list[np.ndarray] | None = None
        if cache:
            self._real, self.real_paths = self._load_all(self.real_paths, num_workers, correct=True)
            self._sim, self.sim_paths = self._load_all(self.sim_paths, num_workers, correct=False)

    def _load_all(
        self, paths: Sequence[Path], num_workers: int, *, correct: bool
    ) -> tuple[list[np.ndarray], list[Path]]:
        images, kept, errors = read_images(paths, on_error=self.on_error, num_workers=num_workers)
        self.skipped.extend(errors)
        small = [i for i, im in enumerate(images) if min(im.shape[:2]) < MIN_FRAME_SIZE]
        if small:
            for i in small:
                err = ImageDecodeError(kept[i], f"{images[i].shape[1]}x{images[i].shape[0]} is below "
                                                f"the {MIN_FRAME_SIZE} px minimum frame size")
                if self.on_error == "raise":
                    raise err
                log.warning("skipping %s", err)
                self.skipped.append(err)
            drop = set(small)
            images = [im for i, im in enumerate(images) if i not in drop]
            kept = [p for i, p in enumerate(kept) if i not in drop]
        if not images:
            raise ImageDecodeError(paths[0].parent, "no decodable images in the folder")
        if correct and self.correction is not None:
            images = self._correct(images)
        return images, kept

    def _correct(self, images: list[np.ndarray]) -> list[np.ndarray]:
        assert self.correction is not None
        out: list[np.ndarray] = []
        for i in range(0, len(images), 256):
            out.extend(self.correction.apply(np.stack(images[i : i + 256])))
        return out

    def __len__(self) -> int:
        return max(len(self.real_paths), len(self.sim_paths))

    def _get(self, domain: str, index: int) -> np.ndarray:
        cache = self._real if domain == "real" else self._sim
        paths = self.real_paths if domain == "real" else self.sim_paths
        if cache is not None:
            return cache[index % len(cache)]
        for attempt in range(len(paths)):
            path = paths[(index + attempt) % len(paths)]
            try:
                img = read_image(path)
                if min(img.shape[:2]) < MIN_FRAME_SIZE:
                    raise ImageDecodeError(path, f"{img.shape[1]}x{img.shape[0]} is below the "
                                                 f"{MIN_FRAME_SIZE} px minimum frame size")
            except ImageDecodeError as exc:
                if self.on_error == "raise":
                    raise
                log.warning("skipping %s", exc)
                continue
            if domain == "real" and self.correction is not None:
                img = self.correction.apply(img)
            return img
        raise ImageDecodeError(paths[0].parent, f"no decodable {domain} images")

    def channel_means(self, domain: Literal["real", "sim"], max_frames: int = 256) -> torch.Tensor:
        """Per-channel mean of one domain's frames as the translator sees them before
        augmentation (decoded, lens-corrected for real, in [-1, 1]).

        Deterministic: up to ``max_frames`` frames evenly spaced over the folder, every pixel.

        Args:
            domain: ``"real"`` or ``"sim"``.
            max_frames: the most frames read.

        Returns:
            (3,) float64 tensor.
        """
        paths = self.real_paths if domain == "real" else self.sim_paths
        n = min(len(paths), max(1, int(max_frames)))
        total = np.zeros(3, np.float64)
        count = 0
        for index in np.linspace(0, len(paths) - 1, n).round().astype(int):
            x = self._get(domain, int(index)).reshape(-1, 3).astype(np.float64)
            total += x.sum(axis=0)
            count += x.shape[0]
        return torch.from_numpy(total / count / 127.5 - 1.0)

    def _augment(self, image: np.ndarray, domain: str, index: int) -> np.ndarray:
        """The transform on one frame; a crop larger than the frame names the file and the keys."""
        assert self.transform is not None
        try:
            return self.transform(image=image)["image"]
        except Exception as exc:
            if type(exc).__name__ != "CropSizeError":
                raise
            paths = self.real_paths if domain == "real" else self.sim_paths
            h, w = image.shape[:2]
            raise ValueError(
                f"data.crop_size is larger than {domain} frame {paths[index % len(paths)]} ({w}x{h}): "
                "set data.load_size (resize first) at least as large as data.crop_size, or a smaller "
                "data.crop_size") from exc

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Real frame ``index`` and a random sim frame, augmented.

        ``key`` is an index (draws from torch's global RNG) or ``(index, draw_seed)`` from
        :class:`datasets.sampling.KeyedRandomSampler` (draws from that seed alone: resumable).
        """
        index, g = item_generator(key)
        real = self._get("real", index % len(self.real_paths))
        j = int(torch.randint(len(self.sim_paths), (1,), generator=g).item())
        sim = self._get("sim", j)
        if self.transform is not None:
            # albumentations keeps its own RNG, which seed_everything does not reach: seed it per
            # item from the item's generator (or torch's RNG, seeded per worker by the DataLoader)
            self.transform.set_random_seed(int(torch.randint(2**31 - 1, (1,), generator=g).item()))
            real = self._augment(real, "real", index % len(self.real_paths))
            sim = self._augment(sim, "sim", j)
        return {"real": to_tensor(real), "sim": to_tensor(sim)}
