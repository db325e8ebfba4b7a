"""Robust image decoding to RGB uint8, folder listing with clear errors, and atomic image writes."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from translate.fsutil import atomic_write_bytes

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataFolderError",
    "ImageDecodeError",
    "OnError",
    "decode_image",
    "encode_image",
    "list_images",
    "read_image",
    "read_images",
    "to_rgb_uint8",
    "write_image",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
)

OnError = Literal["skip", "raise"]


class ImageDecodeError(ValueError):
    """An image file could not be decoded. ``path`` names the file."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot decode image {self.path}: {reason}")


class DataFolderError(FileNotFoundError):
    """A data folder is missing, is not a folder, or holds no images. The message names it."""


def to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert a PIL image of any common mode to an RGB uint8 array.

    Handles L, LA, P (with or without transparency), RGBA, CMYK, I;16 / I (16/32-bit grey) and
    F (float grey). Alpha is composited onto black: the robot camera has no alpha, and black keeps
    transparent regions from inventing a colour. 16-bit images are scaled by their bit depth
    (``>> 8``), not by their own maximum, so a dark frame stays dark.

    Args:
        img: a PIL image.

    Returns:
        Array of shape (H, W, 3), dtype uint8, RGB order.
    """
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr16 = np.asarray(img, dtype=np.uint16)
        grey = (arr16 >> 8).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "I":
        arr32 = np.asarray(img, dtype=np.int64)
        # PNG 16-bit greys decode as mode "I" in some Pillow versions: values up to 65535.
        shift = 8 if arr32.max(initial=0) > 255 else 0
        grey = np.clip(arr32 >> shift, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        arrf = np.asarray(img, dtype=np.float32)
        scale = 255.0 if arrf.max(initial=0.0) <= 1.0 else 1.0
        grey = np.clip(arrf * scale + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("LA", "RGBA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        arr = np.asarray(rgba, dtype=np.float32)
        alpha = arr[..., 3:4] / 255.0
        return np.clip(arr[..., :3] * alpha + 0.5, 0, 255).astype(np.uint8)
    if mode != "RGB":
        img = img.convert("RGB")
    arr_rgb = np.asarray(img, dtype=np.uint8)
    if arr_rgb.ndim != 3 or arr_rgb.shape[2] != 3:  # pragma: no cover - PIL guarantees this
        raise ValueError(f"unexpected decoded shape {arr_rgb.shape}")
    return np.ascontiguousarray(arr_rgb)


def decode_image(data: bytes, *, path: str | os.PathLike[str] = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 (H, W, 3), honouring EXIF orientation.

    Raises:
        ImageDecodeError: the bytes are not a complete image (truncated, corrupt, unknown format).
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # forces a full decode: a truncated file fails here, not later
            oriented: Image.Image = ImageOps.exif_transpose(img) or img
            return to_rgb_uint8(oriented)
    except Image.DecompressionBombError as exc:  # an absurd pixel count: refuse, do not allocate
        raise ImageDecodeError(path, f"too many pixels to decode safely ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(path, str(exc) or type(exc).__name__) from exc


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as RGB uint8.

    Args:
        path: the image file.

    Returns:
        Array of shape (H, W, 3), dtype uint8, RGB.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageDecodeError: the file exists but cannot be decoded; ``err.path`` names it.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError as exc:
        raise ImageDecodeError(p, "is a directory") from exc
    if not data:
        raise ImageDecodeError(p, "file is empty")
    return decode_image(data, path=p)


def read_images(
    paths: Sequence[str | os.PathLike[str]],
    *,
    on_error: OnError = "skip",
    num_workers: int = 2,
) -> tuple[list[np.ndarray], list[Path], list[ImageDecodeError]]:
    """Decode many images in worker threads (PIL releases the GIL while decoding).

    Args:
        paths: image files.
        on_error: ``"skip"`` logs and drops undecodable files; ``"raise"`` stops at the first one.
        num_workers: decoding threads (1 = in the calling thread).

    Returns:
        ``(images, kept_paths, errors)``: the decoded (H, W, 3) uint8 arrays in input order (minus
        skipped ones), their paths, and the errors of the skipped files.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")

    def _one(p: str | os.PathLike[str]) -> np.ndarray | ImageDecodeError:
        try:
            return read_image(p)
        except ImageDecodeError as exc:
            return exc

    if num_workers > 1 and len(paths) > 1:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            results = list(pool.map(_one, paths))
    else:
        results = [_one(p) for p in paths]
    images: list[np.ndarray] = []
    kept: list[Path] = []
    errors: list[ImageDecodeError] = []
    for p, r in zip(paths, results, strict=True):
        if isinstance(r, ImageDecodeError):
            if on_error == "raise":
                raise r
            log.warning("skipping %s", r)
            errors.append(r)
        else:
            images.append(r)
            kept.append(Path(p))
    return images, kept, errors


def list_images(
    folder: str | os.PathLike[str],
    *,
    recursive: bool = False,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    what: str = "image folder",
) -> list[Path]:
    """List the image files of a folder, sorted by name.

    Args:
        folder: the folder.
        recursive: also look in sub-folders.
        extensions: accepted suffixes (case-insensitive).
        what: a word for error messages, e.g. ``"real training folder"``.

    Returns:
        Sorted list of paths (hidden files and temporary ``*.tmp`` files excluded).

    Raises:
        DataFolderError: the folder is missing, is a file, holds no images, or holds a link to a
            file outside it (a linked folder is fine: its files are inside it).
    """
    root = Path(folder)
    if not root.exists():
        raise DataFolderError(f"{what} {root} does not exist")
    if not root.is_dir():
        raise DataFolderError(f"{what} {root} is not a folder")
    exts = {e.lower() for e in extensions}
    it = root.rglob("*") if recursive else root.iterdir()
    files = sorted(
        p for p in it
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
    )
    if not files:
        raise DataFolderError(
            f"{what} {root} holds no images (looked for {', '.join(sorted(exts))})"
        )
    real_root = root.resolve()
    for f in files:  # the containment rule of manifests, for listed folders too
        target = f.resolve()
        if real_root not in target.parents:
            raise DataFolderError(
                f"{what} {root}: {f.name} is a link to {target}, outside the folder; copy the "
                "file in, or link the whole folder instead"
            )
    return files


def encode_image(image: np.ndarray, *, fmt: str = "png", quality: int = 95) -> bytes:
    """Encode an RGB uint8 (H, W, 3) or grey (H, W) array to PNG or JPEG bytes.

    Args:
        image: the array.
        fmt: ``"png"`` or ``"jpg"``/``"jpeg"``.
        quality: JPEG quality 1-100 (ignored for PNG).
    """
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    fmt = fmt.lower().lstrip(".")
    buf = io.BytesIO()
    pil = Image.fromarray(image)
    if fmt in ("jpg", "jpeg"):
        pil.convert("RGB").save(buf, format="JPEG", quality=int(quality))
    elif fmt == "png":
        pil.save(buf, format="PNG", compress_level=1)
    else:
        raise ValueError(f"unsupported image format {fmt!r}; use 'png' or 'jpg'")
    return buf.getvalue()


def write_image(
    path: str | os.PathLike[str], image: np.ndarray, *, quality: int = 95
) -> Path:
    """Write an RGB uint8 image atomically; the format follows the suffix (.png, .jpg, .jpeg).

    Returns:
        The path written.
    """
    p = Path(path)
    return atomic_write_bytes(p, encode_image(image, fmt=p.suffix or "png", quality=quality))
