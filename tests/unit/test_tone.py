"""Histograms with brightness and contrast undone."""

import cv2
import numpy as np
import pytest

from pictrace.core import tone
from pictrace.core.features import sparse_histogram
from tests.conftest import sample_bgr


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _tone(img: np.ndarray, **kw) -> np.ndarray:
    return tone.tone_normalised(*sparse_histogram(img), **kw)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
# Edits that clip few pixels: clipping is not affine, so it is not undone.
@pytest.mark.parametrize("alpha, beta", [(0.75, 35), (1.0, 40), (0.8, -15)])
def test_an_exposure_edit_keeps_the_normalised_histogram(name, alpha, beta):
    img = sample_bgr(name)
    edited = cv2.convertScaleAbs(img, alpha=alpha, beta=beta)
    raw = _corr(np.sqrt(sparse_histogram_dense(img)), np.sqrt(sparse_histogram_dense(edited)))
    normalised = _corr(_tone(img), _tone(edited))
    assert normalised > 0.75 and normalised > raw + 0.05


def test_different_palettes_stay_apart():
    a, b = sample_bgr("coffee"), sample_bgr("rocket")
    assert _corr(_tone(a), _tone(b)) < 0.5


def test_a_hue_change_is_not_undone():
    img = sample_bgr("astronaut")
    swapped = np.ascontiguousarray(img[..., ::-1])
    assert _corr(_tone(img), _tone(swapped)) < _corr(_tone(img), _tone(cv2.convertScaleAbs(img, alpha=1.2, beta=-20)))


def test_brightness_only_has_one_axis_and_empty_input_is_zero():
    img = sample_bgr("camera")
    assert _tone(img, brightness_only=True).shape == (tone.BINS,)
    empty = tone.tone_normalised(np.zeros(0, np.uint16), np.zeros(0, np.float32))
    assert empty.shape == (tone.BINS**3,) and not empty.any()


def sparse_histogram_dense(img: np.ndarray) -> np.ndarray:
    index, values = sparse_histogram(img)
    dense = np.zeros(32**3)
    dense[index] = values
    return dense
