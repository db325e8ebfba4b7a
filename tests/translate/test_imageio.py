"""Tests for translate.imageio: mode conversion, EXIF orientation, corrupt files, folder errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from translate.imageio import (
    DataFolderError,
    ImageDecodeError,
    decode_image,
    list_images,
    read_image,
    read_images,
    write_image,
)


def _save(img: Image.Image, path: Path, **kw: object) -> Path:
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "RGB", "CMYK"])
def test_modes_become_rgb_uint8(tmp_path: Path, mode: str) -> None:
    base = Image.new("RGB", (10, 6), (200, 100, 50)).convert(mode)
    p = _save(base, tmp_path / f"x_{mode}.{'jpg' if mode == 'CMYK' else 'png'}")
    arr = read_image(p)
    assert arr.shape == (6, 10, 3) and arr.dtype == np.uint8


def test_grey_replicated_and_alpha_composited_on_black(tmp_path: Path) -> None:
    grey = read_image(_save(Image.new("L", (4, 4), 77), tmp_path / "g.png"))
    assert (grey == 77).all()
    rgba = Image.new("RGBA", (4, 4), (200, 100, 50, 0))
    assert (read_image(_save(rgba, tmp_path / "a.png")) == 0).all()
    half = Image.new("RGBA", (4, 4), (200, 100, 50, 255))
    assert tuple(read_image(_save(half, tmp_path / "b.png"))[0, 0]) == (200, 100, 50)


def test_16bit_scaled_by_bit_depth(tmp_path: Path) -> None:
    arr16 = np.full((5, 7), 40000, dtype=np.uint16)
    p = _save(Image.fromarray(arr16), tmp_path / "d.png")
    out = read_image(p)
    assert out.shape == (5, 7, 3)
    assert int(out[0, 0, 0]) == 40000 >> 8


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([255, 0, 0] + [0, 255, 0] * 255)
    img.info["transparency"] = 1
    out = read_image(_save(img, tmp_path / "p.png", transparency=1))
    assert tuple(out[0, 0]) == (255, 0, 0)


def test_exif_orientation_honoured(tmp_path: Path) -> None:
    arr = np.zeros((4, 8, 3), dtype=np.uint8)
    arr[:, :4] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    p = tmp_path / "r.jpg"
    img.save(p, exif=exif, quality=100)
    out = read_image(p)
    assert out.shape == (8, 4, 3)
    assert out[:4].mean() > 200 and out[4:].mean() < 50  # left half ended on top


def test_truncated_and_corrupt_files_name_their_path(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good, quality=90)
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good.read_bytes()[:200])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for bad in (trunc, junk, empty):
        with pytest.raises(ImageDecodeError, match=bad.name) as ei:
            read_image(bad)
        assert ei.value.path == bad
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nope.png")


def test_read_images_skip_or_raise(tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    bad = tmp_path / "b.png"
    bad.write_bytes(b"garbage")
    c = write_image(tmp_path / "c.png", np.full((4, 4, 3), 9, np.uint8))
    imgs, kept, errs = read_images([a, bad, c], on_error="skip")
    assert kept == [a, c] and len(imgs) == 2 and len(errs) == 1 and errs[0].path == bad
    with pytest.raises(ImageDecodeError, match="b.png"):
        read_images([a, bad, c], on_error="raise")


def test_list_images_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DataFolderError, match="real image folder .*missing.* does not exist"):
        list_images(tmp_path / "missing", what="real image folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFolderError, match="holds no images"):
        list_images(tmp_path / "empty")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DataFolderError, match="not a folder"):
        list_images(f)


def test_list_images_sorted_skips_hidden_and_tmp(tmp_path: Path) -> None:
    for n in ("b.png", "a.JPG", ".hidden.png", "x.png.tmp", "notes.txt"):
        (tmp_path / n).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]


def test_write_image_roundtrip_png_and_jpg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (16, 12, 3), dtype=np.uint8)
    assert (read_image(write_image(tmp_path / "a.png", arr)) == arr).all()
    jpg = read_image(write_image(tmp_path / "a.jpg", arr, quality=95))
    assert jpg.shape == arr.shape
    assert not list(tmp_path.glob(".*tmp"))


def test_decode_bytes() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (3, 2), (9, 8, 7)).save(buf, format="PNG")
    assert decode_image(buf.getvalue()).shape == (2, 3, 3)


def test_a_link_out_of_an_image_folder_is_refused_a_linked_folder_is_fine(tmp_path: Path) -> None:
    import numpy as np

    from translate.imageio import DataFolderError, list_images, write_image

    outside = tmp_path / "secret.png"
    write_image(outside, np.zeros((4, 4, 3), np.uint8))
    real = tmp_path / "data" / "real"
    write_image(real / "000.png", np.zeros((4, 4, 3), np.uint8))
    (real / "001.png").symlink_to(outside)
    with pytest.raises(DataFolderError, match=r"001\.png is a link to .*secret\.png, outside the folder"):
        list_images(real)
    (real / "001.png").unlink()
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    assert [p.name for p in list_images(tmp_path / "linked")] == ["000.png"]


def test_a_decompression_bomb_is_an_undecodable_image_naming_it(tmp_path: Path) -> None:
    from translate.imageio import ImageDecodeError, read_image

    big = tmp_path / "bomb.png"
    Image.new("L", (20000, 20000)).save(big, optimize=True)  # 400 M pixels: over PIL's bomb limit
    with pytest.raises(ImageDecodeError, match=r"bomb\.png: too many pixels"):
        read_image(big)
