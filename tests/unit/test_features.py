"""Features computed once per image, and their file format."""

import io

import cv2
import numpy as np
import pytest

from pictrace.core.features import (
    CHIST_BINS,
    GIST_SIDE,
    ORB_FEATURES,
    THUMB_SIDE,
    ImageFeatures,
    dense_histogram,
    extract_features,
)
from pictrace.errors import CorruptShard, InvalidImage
from tests.conftest import jpeg, sample_bgr


@pytest.fixture(scope="module")
def astronaut():
    return extract_features(jpeg(sample_bgr("astronaut")))


def test_shapes_and_types(astronaut):
    f = astronaut
    assert (f.width, f.height) == (512, 512)
    assert f.thumb.shape == (THUMB_SIDE, THUMB_SIDE) and f.thumb.dtype == np.uint8
    assert f.gist.shape == (GIST_SIDE * GIST_SIDE,) and f.gist.dtype == np.float16
    assert f.chist.shape == (CHIST_BINS**3,)
    assert 100 < len(f.descriptors) <= ORB_FEATURES
    assert f.keypoints.shape == (len(f.descriptors), 2)
    assert np.all((f.keypoints >= 0) & (f.keypoints < f.side))
    assert np.linalg.norm(f.gist.astype(np.float32)) == pytest.approx(1.0, abs=1e-2)
    assert abs(float(f.gist.astype(np.float32).sum())) < 0.05  # zero mean


def test_sha256_identifies_the_bytes(astronaut):
    import hashlib

    data = jpeg(sample_bgr("astronaut"))
    assert astronaut.sha256 == hashlib.sha256(data).hexdigest()


def test_sparse_histogram_is_the_dense_one(astronaut):
    side = astronaut.side
    square = cv2.resize(cv2.imdecode(np.frombuffer(jpeg(sample_bgr("astronaut")), np.uint8), cv2.IMREAD_COLOR), (side, side), interpolation=cv2.INTER_LINEAR)
    dense = dense_histogram(square)
    rebuilt = np.zeros_like(dense)
    rebuilt[astronaut.hist_index] = astronaut.hist_value
    np.testing.assert_allclose(rebuilt, dense, atol=1e-6)


def test_reported_size_is_the_original_even_when_decoded_reduced():
    big = cv2.resize(sample_bgr("coffee"), (2400, 1600))
    f = extract_features(jpeg(big))
    assert (f.width, f.height) == (2400, 1600)
    assert f.side == 1024


def test_round_trip(astronaut):
    back = ImageFeatures.from_bytes(astronaut.to_bytes())
    for name in ("gist", "chist", "thumb", "keypoints", "descriptors", "hist_index", "hist_value"):
        np.testing.assert_array_equal(getattr(back, name), getattr(astronaut, name))
    assert (back.sha256, back.width, back.height, back.side) == (
        astronaut.sha256, astronaut.width, astronaut.height, astronaut.side,
    )


def test_stored_bytes_per_image_are_small(astronaut):
    assert astronaut.nbytes_index < 16 * 1024
    assert len(astronaut.to_bytes()) < 150 * 1024


@pytest.mark.parametrize(
    "blob",
    [b"", b"garbage" * 100, b"PK\x03\x04" + b"\0" * 100],
    ids=["empty", "garbage", "zip-header"],
)
def test_foreign_bytes_are_rejected(blob):
    with pytest.raises(CorruptShard):
        ImageFeatures.from_bytes(blob)


def test_a_shard_is_not_a_features_file(astronaut):
    from pictrace.core.compact import index_row
    from pictrace.core.partition import Partition

    with pytest.raises(CorruptShard, match="not a pictrace-features file"):
        ImageFeatures.from_bytes(Partition.build([index_row(astronaut)]).to_bytes())


def test_pickled_arrays_are_refused():
    buf = io.BytesIO()
    np.savez(buf, header=np.array([{"format": "pictrace-features"}], dtype=object))
    with pytest.raises(CorruptShard):
        ImageFeatures.from_bytes(buf.getvalue())


def test_wrong_array_shapes_are_refused(astronaut):
    import dataclasses

    broken = dataclasses.replace(astronaut, thumb=astronaut.thumb[:10])
    with pytest.raises(CorruptShard, match="thumb"):
        ImageFeatures.from_bytes(broken.to_bytes())


def test_not_an_image_raises_invalid_image():
    with pytest.raises(InvalidImage):
        extract_features(b"definitely not an image")


def test_flat_image_has_no_keypoints_but_valid_features():
    f = extract_features(jpeg(np.full((200, 300, 3), 128, np.uint8)))
    assert len(f.descriptors) == 0 and f.keypoints.shape == (0, 2)
