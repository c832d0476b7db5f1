"""The runtime's SSIM equals scikit-image's on real image pairs."""

import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from pictrace.core.ssim import ssim
from tests.conftest import sample_bgr


def _gray(name: str, side: int = 256) -> np.ndarray:
    img = cv2.cvtColor(sample_bgr(name), cv2.COLOR_BGR2GRAY)
    return cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)


EDITS = {
    "blur": lambda g: cv2.GaussianBlur(g, (7, 7), 2),
    "jpeg": lambda g: cv2.imdecode(cv2.imencode(".jpg", g, [cv2.IMWRITE_JPEG_QUALITY, 20])[1], cv2.IMREAD_GRAYSCALE),
    "brighter": lambda g: cv2.convertScaleAbs(g, alpha=1.2, beta=25),
    "rot90": lambda g: np.ascontiguousarray(np.rot90(g)),
    "noise": lambda g: np.clip(g + np.random.default_rng(0).normal(0, 20, g.shape), 0, 255).astype(np.uint8),
    "other": lambda g: _gray("coffee"),
}


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "camera"])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_equals_scikit_image(name, edit):
    a = _gray(name)
    b = EDITS[edit](a)
    assert ssim(a, b) == pytest.approx(structural_similarity(a, b), abs=1e-4)


def test_identical_images_score_one():
    a = _gray("coins")
    assert ssim(a, a) == pytest.approx(1.0)


def test_non_square_and_small_sizes_match_too():
    a = cv2.resize(_gray("rocket"), (90, 40))
    b = cv2.GaussianBlur(a, (3, 3), 1)
    assert ssim(a, b) == pytest.approx(structural_similarity(a, b), abs=1e-4)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal shapes"):
        ssim(_gray("coins", 64), _gray("coins", 32))
