"""Randomised-to-canonical pairs: sim frames seen through a random camera, paired with the sim frame itself (RCAN)."""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.sampling import item_substream
from datasets.unpaired import UnpairedImageDataset, to_tensor

__all__ = ["ObjectRecolor", "SurfaceRecolor", "SurfaceTexture", "WithRandomizedPairs",
           "build_camera_randomizer", "flat_colours"]


class SurfaceTexture(A.ImageOnlyTransform):  # type: ignore[misc]
    """A random multiplicative texture on part of the frame: value noise, stripes or a grid.

    The texture field ``t`` (zero mean, unit peak) multiplies the frame as ``x · (1 + a · m · t)``
    where ``a`` is drawn from ``amplitude`` and ``m`` is a soft mask: the whole frame, or the pixels
    brighter (or darker) than a random luminance threshold — surfaces of the sim render's flat
    colours get a texture of their own, the rest keeps its look.

    Args:
        amplitude: range of ``a``.
        p: probability of applying it.

    Shape:
        Image: (H, W, 3) uint8 → (H, W, 3) uint8.
    """

    def __init__(self, amplitude: tuple[float, float] = (0.05, 0.35), p: float = 0.5) -> None:
        super().__init__(p=p)
        self.amplitude = (float(amplitude[0]), float(amplitude[1]))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Draw the field for this frame's size from the transform's own generator."""
        h, w = params["shape"][:2]
        rng: np.random.Generator = self.random_generator
        kind = int(rng.integers(3))
        if kind == 0:  # value noise, 2-3 octaves
            field = np.zeros((h, w), np.float32)
            cell = float(rng.uniform(3.0, 24.0)) * w / 128.0
            for octave in range(int(rng.integers(2, 4))):
                gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
                grid = rng.standard_normal((gh, gw)).astype(np.float32)
                field += cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC) / (2.0 ** octave)
                cell /= 2.0
        else:  # stripes (planks, banding) or a grid (tiles)
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            theta = float(rng.uniform(0, np.pi))
            period = float(rng.uniform(4.0, 28.0)) * w / 128.0
            phase = float(rng.uniform(0, 2 * np.pi))
            u = (xx * np.cos(theta) + yy * np.sin(theta)) * (2 * np.pi / period) + phase
            sharp = float(rng.uniform(1.0, 8.0))
            field = np.abs(np.sin(u)) ** (1.0 / sharp)
            if kind == 2:
                v = (-xx * np.sin(theta) + yy * np.cos(theta)) * (2 * np.pi / period)
                field = np.minimum(field, np.abs(np.sin(v)) ** (1.0 / sharp))
        field -= field.mean()
        field /= max(float(np.abs(field).max()), 1e-6)
        mode = int(rng.integers(3))
        if mode == 0:
            mask = np.ones((h, w), np.float32)
        else:
            lum = data["image"].astype(np.float32).mean(axis=2) / 255.0
            thr = float(rng.uniform(0.2, 0.8))
            mask = 1.0 / (1.0 + np.exp(-(lum - thr) * 20.0 * (1 if mode == 1 else -1)))
        a = float(rng.uniform(*self.amplitude))
        return {"gain": (1.0 + a * mask * field).astype(np.float32)}

    def apply(self, img: np.ndarray, gain: np.ndarray, **params: Any) -> np.ndarray:
        """Multiply the frame by the drawn gain field."""
        out = img.astype(np.float32) * gain[..., None]
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("amplitude",)


def flat_colours(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct RGB values of a frame: a sim render's flat colours.

    Args:
        img: (H, W, 3) uint8.

    Returns:
        ``(colours, inverse, counts)``: (K, 3) int32 RGB values, (H·W,) the index of each pixel's
        colour, (K,) the pixels of each colour.
    """
    flat = img.reshape(-1, 3).astype(np.int32)
    packed, inverse, counts = np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2],
                                        return_inverse=True, return_counts=True)
    colours = np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], axis=1)
    return colours, inverse.reshape(-1), counts


class _PerColourGain(A.ImageOnlyTransform):  # type: ignore[misc]
    """Shared by the recolour ops: a new colour per flat colour of the frame, as a per-pixel gain."""

    @staticmethod
    def _gain_field(img: np.ndarray, new_colour: Callable[[np.ndarray, int], np.ndarray | None]) -> np.ndarray:
        """The (H, W, 3) float32 gain that takes each flat colour of ``img`` to ``new_colour(old,
        pixels)`` (old and new RGB in [0, 1], visited in colour order; None keeps the colour)."""
        h, w = img.shape[:2]
        colours, inverse, counts = flat_colours(img)
        gain = np.ones((len(colours), 3), np.float32)
        for c in range(len(colours)):
            old = colours[c].astype(np.float32) / 255.0
            new = new_colour(old, int(counts[c]))
            if new is not None:
                gain[c] = new / np.maximum(old, 1e-3)
        return gain[inverse].reshape(h, w, 3)

    def apply(self, img: np.ndarray, gain: np.ndarray, **params: Any) -> np.ndarray:
        """Multiply each pixel by its colour's per-channel gain."""
        return np.clip(img.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8)


class SurfaceRecolor(_PerColourGain):
    """A random colour for each large flat surface of a sim render (floor, walls): materials.

    A sim render is made of flat colours, so each distinct RGB value covering at least
    ``min_area`` of the frame is one large surface. Each such surface gets its own colour: a random
    hue, a saturation from ``saturation`` and its own brightness times a factor from ``value``,
    mixed with the old colour by a weight from ``mix``; its pixels are multiplied by the
    per-channel ratio of new to old colour. Smaller regions (the Kong,
    the distractors, shadows, edges) keep their colours: the objects the policy looks at stay
    what they are, the room around them changes (domain randomisation of materials, Tobin et
    al. 2017, done on the image). On a frame with no flat surface it does nothing.

    Args:
        min_area: the share of the frame a colour must cover to count as a surface.
        saturation: range of the new colour's HSV saturation.
        value: range of the factor on the surface's HSV value (brightness).
        mix: range of the weight of the new colour against the old one.
        p: probability of applying it.

    Shape:
        Image: (H, W, 3) uint8 → (H, W, 3) uint8.
    """

    def __init__(self, min_area: float = 0.12, saturation: tuple[float, float] = (0.0, 0.6),
                 value: tuple[float, float] = (0.5, 1.4), mix: tuple[float, float] = (0.5, 1.0),
                 p: float = 0.5) -> None:
        super().__init__(p=p)
        self.min_area = float(min_area)
        self.saturation = (float(saturation[0]), float(saturation[1]))
        self.value = (float(value[0]), float(value[1]))
        self.mix = (float(mix[0]), float(mix[1]))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Find the frame's large surfaces and draw each one's colour from the transform's generator."""
        img = data["image"]
        rng: np.random.Generator = self.random_generator
        surface = self.min_area * img.shape[0] * img.shape[1]

        def new_colour(old: np.ndarray, pixels: int) -> np.ndarray | None:
            if pixels < surface:
                return None
            v0 = max(float(old.max()), 1e-3)
            hue, sat = float(rng.uniform(0.0, 1.0)), float(rng.uniform(*self.saturation))
            val = min(1.0, v0 * float(rng.uniform(*self.value)))
            a = float(rng.uniform(*self.mix))
            return (1.0 - a) * old + a * np.asarray(colorsys.hsv_to_rgb(hue, sat, val), np.float32)

        return {"gain": self._gain_field(img, new_colour)}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_area", "saturation", "value", "mix")


class ObjectRecolor(_PerColourGain):
    """One random hue turn for the coloured objects of a sim render (the Kong, the distractors).

    The counterpart of :class:`SurfaceRecolor` for what it leaves alone: every flat colour that
    covers less than ``min_area`` of the frame and is coloured (HSV saturation at least
    ``min_saturation``, value at least 0.1) is an object's; all of them turn their hue by one drawn
    amount (any turn of the colour circle), their saturation and brightness scaled by factors
    from ``saturation`` and ``value``. Grey pixels (shadows, grey edges) and the large surfaces
    keep theirs. Translated back to the sim frame, such a pair says that an object is what its
    shape and place say, not its colour under this camera: a translator that learns it keeps a
    dull or colour-shifted Kong a Kong and does not paint the Kong's red onto a yellow post.
    On the CPU demo it lowered the val split's gap closed (README, session 8): no recipe uses it.

    Args:
        min_area: a colour covering at least this share of the frame is a surface, left alone.
        min_saturation: a colour below this HSV saturation is grey, left alone.
        saturation: range of the factor on the objects' saturation.
        value: range of the factor on the objects' brightness.
        p: probability of applying it.

    Shape:
        Image: (H, W, 3) uint8 → (H, W, 3) uint8.
    """

    def __init__(self, min_area: float = 0.12, min_saturation: float = 0.25,
                 saturation: tuple[float, float] = (0.4, 1.1), value: tuple[float, float] = (0.6, 1.2),
                 p: float = 0.5) -> None:
        super().__init__(p=p)
        self.min_area = float(min_area)
        self.min_saturation = float(min_saturation)
        self.saturation = (float(saturation[0]), float(saturation[1]))
        self.value = (float(value[0]), float(value[1]))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Find the frame's coloured object pixels and draw the hue turn from the transform's generator."""
        img = data["image"]
        rng: np.random.Generator = self.random_generator
        turn = float(rng.uniform(0.0, 1.0))
        ks, kv = float(rng.uniform(*self.saturation)), float(rng.uniform(*self.value))
        surface = self.min_area * img.shape[0] * img.shape[1]

        def new_colour(old: np.ndarray, pixels: int) -> np.ndarray | None:
            hue, sat, val = colorsys.rgb_to_hsv(*(float(x) for x in old))
            if pixels >= surface or sat < self.min_saturation or val < 0.1:
                return None
            return np.asarray(colorsys.hsv_to_rgb((hue + turn) % 1.0, min(1.0, sat * ks), min(1.0, val * kv)),
                              np.float32)

        return {"gain": self._gain_field(img, new_colour)}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_area", "min_saturation", "saturation", "value")


def build_camera_randomizer(surfaces: float = 0.0, objects: float = 0.0, lens: float = 0.0) -> A.Compose:
    """A random camera for sim frames: colour cast, tone, lighting, texture, optics, noise, JPEG.

    Each op is drawn independently with its own probability, in camera order (scene surfaces and
    light → lens → sensor → codec). The ranges are generic (albumentations' camera effects,
    :class:`SurfaceRecolor` and :class:`SurfaceTexture`) and were set on jetbot_synth's val split
    only; none copies a held-out look of :mod:`datasets.jetbot_synth.looks`.

    Args:
        surfaces: probability of :class:`SurfaceRecolor` (each large flat surface its own random
            colour) before everything else; 0 leaves the pipeline and its draws as they were.
        objects: probability of :class:`ObjectRecolor` (one hue turn for the coloured objects),
            right after it; 0 likewise leaves the pipeline as it was.
        lens: probability of a radial lens distortion (albumentations' ``OpticalDistortion``,
            k in [-0.2, 0.2]: mild barrel to mild pincushion), and half of it of a zoom-in crop
            (scale 1.0–1.15, a narrower field of view), at the start of the lens ops; the
            translator then also learns to take another lens's geometry back to the sim
            camera's. 0 leaves the pipeline and its draws as they were.

    Returns:
        An albumentations pipeline on RGB uint8 (H, W, 3) arrays (seed it per item with
        ``set_random_seed``).
    """
    ops: list[Any] = [SurfaceRecolor(p=surfaces)] if surfaces > 0 else []
    if objects > 0:
        ops.append(ObjectRecolor(p=objects))
    geometry: list[Any] = [] if lens <= 0 else [
        A.OpticalDistortion(distort_limit=(-0.2, 0.2), mode="camera", border_mode=cv2.BORDER_REFLECT_101, p=lens),
        A.Affine(scale=(1.0, 1.15), border_mode=cv2.BORDER_REFLECT_101, p=0.5 * lens),
    ]
    return A.Compose([
        # the scene: surfaces and light
        *ops,
        SurfaceTexture(amplitude=(0.05, 0.4), p=0.6),
        A.PlasmaBrightnessContrast(brightness_range=(-0.2, 0.2), contrast_range=(-0.2, 0.2),
                                   plasma_size=128, roughness=3.0, p=0.3),
        A.Illumination(mode="linear", intensity_range=(0.05, 0.2), p=0.3),
        A.Illumination(mode="gaussian", intensity_range=(0.05, 0.2), effect_type="darken",
                       center_range=(0.3, 0.7), sigma_range=(0.4, 1.0), p=0.4),  # vignette-like
        A.PlasmaShadow(shadow_intensity_range=(0.1, 0.4), plasma_size=128, p=0.2),
        # white balance and tone
        A.PlanckianJitter(mode="blackbody", temperature_limit=(3500, 12000), p=0.5),
        A.MultiplicativeNoise(multiplier=(0.7, 1.3), per_channel=True, elementwise=False, p=0.7),
        A.RGBShift(r_shift_limit=(-20, 20), g_shift_limit=(-20, 20), b_shift_limit=(-20, 20), p=0.3),
        A.ColorJitter(brightness=(0.6, 1.3), contrast=(0.5, 1.3), saturation=(0.3, 1.4),
                      hue=(-0.04, 0.04), p=0.8),
        A.RandomGamma(gamma_limit=(60, 160), p=0.4),
        A.RandomToneCurve(scale=0.2, per_channel=True, p=0.3),
        # the lens
        *geometry,
        A.OneOf([
            A.GaussianBlur(sigma_limit=(0.3, 1.8), p=1.0),
            A.Defocus(radius=(1, 3), alias_blur=(0.05, 0.3), p=1.0),
            A.MotionBlur(blur_limit=(3, 7), p=1.0),
        ], p=0.7),
        A.ChromaticAberration(primary_distortion_limit=(-0.03, 0.03),
                              secondary_distortion_limit=(-0.05, 0.05), mode="random", p=0.3),
        A.UnsharpMask(blur_limit=(3, 7), alpha=(0.2, 0.6), p=0.2),
        A.Downscale(scale_range=(0.5, 0.9), p=0.2),
        # the sensor and the codec
        A.OneOf([
            A.GaussNoise(std_range=(0.005, 0.03), p=1.0),
            A.ISONoise(color_shift=(0.01, 0.03), intensity=(0.05, 0.2), p=1.0),
            A.ShotNoise(scale_range=(0.005, 0.05), p=1.0),
        ], p=0.8),
        A.SaltAndPepper(amount=(0.001, 0.01), p=0.1),
        A.ImageCompression(quality_range=(20, 95), p=0.5),
    ])


class WithRandomizedPairs(Dataset[dict[str, torch.Tensor]]):
    """Adds a randomised-to-canonical pair to each unpaired item: a random sim training frame
    (full frame, uncropped) through :func:`build_camera_randomizer` as ``paired_real``, the frame
    itself as ``paired_sim``.

    The paired terms (``model.policy_losses.paired_pixel`` / ``paired``) then supervise the
    translator per frame with no real pairs: it learns to take any camera's look back to the sim
    render (RCAN, James et al. 2019), while the unpaired terms fit it to the real frames. Both
    frames of a pair are flipped together (when ``flip``). Draws are keyed by the item's key, so a
    resumed run sees the same pairs. With ``per_item`` = k > 1 each item carries k pairs (k sim
    frames, k cameras); the paired terms flatten them into one batch of N·k frames. ``surfaces``,
    ``objects`` and ``lens`` are the random camera's :class:`SurfaceRecolor`, :class:`ObjectRecolor`
    and lens-geometry probabilities (:func:`build_camera_randomizer`).

    Shape:
        Items: the unpaired item plus ``paired_real``, ``paired_sim``: (3, H, W) in [-1, 1]
        (k = 1), or (k, 3, H, W).
    """

    def __init__(self, base: UnpairedImageDataset, *, flip: bool = True, per_item: int = 1,
                 surfaces: float = 0.0, objects: float = 0.0, lens: float = 0.0) -> None:
        self.base = base
        self.flip = flip
        self.per_item = per_item
        self.randomizer = build_camera_randomizer(surfaces=surfaces, objects=objects, lens=lens)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        item = dict(self.base[key])
        g = item_substream(key, 0x2545F491)
        reals, sims = [], []
        for _ in range(self.per_item):
            j = int(torch.randint(len(self.base.sim_paths), (1,), generator=g).item())
            sim = self.base._get("sim", j)
            if self.flip and bool(torch.rand((), generator=g) < 0.5):
                sim = np.ascontiguousarray(sim[:, ::-1])
            self.randomizer.set_random_seed(int(torch.randint(2**31 - 1, (1,), generator=g).item()))
            reals.append(to_tensor(self.randomizer(image=sim)["image"]))
            sims.append(to_tensor(sim))
        if self.per_item == 1:
            item["paired_real"], item["paired_sim"] = reals[0], sims[0]
        else:
            item["paired_real"], item["paired_sim"] = torch.stack(reals), torch.stack(sims)
        return item
