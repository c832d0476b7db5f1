"""Crop alignment: a cropped query is compared with the square of the original it came from."""

import cv2
import numpy as np
import pytest

from pictrace.core import align
from pictrace.core.features import extract_features
from pictrace.core.scoring import aligned_ssim, query_from_bytes
from pictrace.core.ssim import ssim
from tests.conftest import jpeg, sample_bgr


def _crop(img: np.ndarray, side: float, fx: float, fy: float) -> np.ndarray:
    """The ``side`` fraction of each dimension, its corner at (fx, fy) of the room left."""
    h, w = img.shape[:2]
    ch, cw = round(h * side), round(w * side)
    y0, x0 = round((h - ch) * fy), round((w - cw) * fx)
    return img[y0 : y0 + ch, x0 : x0 + cw]


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
@pytest.mark.parametrize("fx, fy", [(0.5, 0.5), (0.0, 0.0), (1.0, 0.0), (1.0, 1.0)])
def test_a_crop_is_found_where_it_was_cut(name, fx, fy):
    img = sample_bgr(name)
    query = query_from_bytes(jpeg(_crop(img, 0.8, fx, fy)))
    cand = extract_features(jpeg(img))
    found = align.crop_alignment(query.small_thumbs(0), cand.thumb)
    assert found is not None and found.scale == pytest.approx(0.8)
    room = cand.thumb.shape[0] - found.side
    # Within one search-resolution pixel (4 thumbnail pixels) of the true corner.
    assert abs(found.x - fx * room) <= 5 and abs(found.y - fy * room) <= 5


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket"])
def test_aligned_ssim_of_a_crop_is_far_above_the_whole_frame_ssim(name):
    img = sample_bgr(name)
    query = query_from_bytes(jpeg(_crop(img, 0.8, 1.0, 1.0)))
    cand = extract_features(jpeg(img))
    whole = ssim(query.features.thumb, cand.thumb)
    aligned = aligned_ssim(query, 0, cand)
    assert aligned > 0.75 and aligned > whole + 0.2


def test_aligned_ssim_gives_an_unrelated_picture_no_lift():
    query = query_from_bytes(jpeg(_crop(sample_bgr("astronaut"), 0.8, 0.5, 0.5)))
    other = extract_features(jpeg(sample_bgr("coffee")))
    assert aligned_ssim(query, 0, other) < 0.35


def test_aligned_ssim_of_an_uncropped_copy_is_its_plain_ssim_or_better():
    img = sample_bgr("chelsea")
    query = query_from_bytes(jpeg(img, 60))
    cand = extract_features(jpeg(img))
    assert aligned_ssim(query, 0, cand) >= ssim(query.features.thumb, cand.thumb)


def test_a_flat_query_has_no_alignment():
    flat = np.full((200, 300, 3), 90, np.uint8)
    query = query_from_bytes(cv2.imencode(".png", flat)[1].tobytes())
    cand = extract_features(jpeg(sample_bgr("coffee")))
    assert align.crop_alignment(query.small_thumbs(0), cand.thumb) is None
