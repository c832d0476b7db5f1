"""Display thumbnails: small, bounded in bytes, the image's shape, made from the decode the features use."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pictrace.core.features import extract_features
from pictrace.core.thumbnail import MAX_THUMB_BYTES, THUMB_SIDE, features_and_thumbnail, make_thumbnail
from tests.conftest import jpeg, sample_bgr


def shape_of(data: bytes) -> tuple[int, int]:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return img.shape[1], img.shape[0]


@pytest.mark.parametrize("size", [(4000, 3000), (300, 1200), (256, 256)])
def test_the_longest_side_is_the_thumbnail_side_and_the_shape_is_kept(size):
    w, h = size
    img = cv2.resize(sample_bgr("astronaut"), (w, h))
    tw, th = shape_of(make_thumbnail(img))
    assert max(tw, th) == THUMB_SIDE
    assert abs(tw / th - w / h) < 0.02


def test_a_small_image_is_not_enlarged():
    img = cv2.resize(sample_bgr("coins"), (120, 80))
    assert shape_of(make_thumbnail(img)) == (120, 80)


def test_noise_still_fits_the_byte_bound():
    noise = np.random.default_rng(1).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    data = make_thumbnail(noise)
    assert len(data) <= MAX_THUMB_BYTES
    assert data[:3] == b"\xff\xd8\xff"


def test_a_photo_thumbnail_is_a_few_kilobytes():
    assert len(make_thumbnail(sample_bgr("chelsea"))) < 32 * 1024


def test_features_come_out_as_extract_features_makes_them():
    data = jpeg(sample_bgr("rocket"))
    features, thumb = features_and_thumbnail(data)
    expected = extract_features(data)
    assert features.sha256 == expected.sha256 and (features.width, features.height) == (expected.width, expected.height)
    assert np.array_equal(features.descriptors, expected.descriptors)
    assert max(shape_of(thumb)) == THUMB_SIDE
