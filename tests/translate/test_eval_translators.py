"""Tests for translate.eval_translators: the baseline translators, the output contract and resizing."""

from __future__ import annotations

import numpy as np
import pytest

from translate.eval_translators import (
    FunctionTranslator,
    IdentityTranslator,
    Translator,
    TranslatorOutputError,
    check_output,
    resize_frames,
)


def _frames(n: int, h: int = 8, w: int = 10) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("n", [1, 4])
def test_identity_returns_a_copy(n: int) -> None:
    x = _frames(n)
    t = IdentityTranslator()
    y = t(x)
    assert isinstance(t, Translator) and t.name == "identity"
    assert np.array_equal(y, x) and y is not x and not np.shares_memory(x, y)


def test_function_translator_wraps_the_function() -> None:
    t = FunctionTranslator(lambda f: 255 - f, "invert")
    x = _frames(2)
    assert isinstance(t, Translator) and t.name == "invert" and t.info == {"kind": "function"}
    assert np.array_equal(t(x), 255 - x)


def test_check_output_accepts_nhwc_uint8_of_any_size() -> None:
    x = _frames(3)
    y = _frames(3, 16, 16)
    assert check_output("t", x, y) is y


@pytest.mark.parametrize(("out", "match"), [
    ([1, 2, 3], "returned list"),
    (np.zeros((3, 3, 8, 10), np.uint8), "looks NCHW"),
    (np.zeros((2, 8, 10, 3), np.uint8), r"expected \(3, H, W, 3\)"),
    (np.zeros((3, 8, 10), np.uint8), "expected"),
    (np.full((3, 8, 10, 3), 0.5, np.float32), r"float32 values in \[0.5, 0.5\]"),
])
def test_check_output_names_what_is_wrong(out: object, match: str) -> None:
    with pytest.raises(TranslatorOutputError, match=match):
        check_output("bad", _frames(3), out)


@pytest.mark.parametrize("n", [1, 3])
def test_resize_frames(n: int) -> None:
    x = _frames(n)
    assert resize_frames(x, (8, 10)) is x
    y = resize_frames(x, (4, 6))
    assert y.shape == (n, 4, 6, 3) and y.dtype == np.uint8
    flat = np.full((n, 8, 10, 3), 77, np.uint8)
    assert (resize_frames(flat, (16, 20)) == 77).all()
