"""The flat array container detail features are stored in: round trips and hostile files."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest

from pictrace.core import arrays
from pictrace.core.features import ImageFeatures, extract_features
from pictrace.errors import CorruptShard
from tests.conftest import jpeg, sample_bgr


def container(table: list, payload: bytes) -> bytes:
    head = json.dumps(table).encode()
    return arrays.MAGIC + struct.pack("<I", len(head)) + head + payload


def test_arrays_round_trip_with_and_without_compression():
    values = {
        "thumb": np.arange(256 * 256, dtype=np.uint8).reshape(256, 256),
        "points": np.linspace(0, 1, 20, dtype=np.float32).reshape(10, 2),
        "empty": np.zeros((0, 32), np.uint8),
        "big_endian": np.arange(5, dtype=">u4"),
    }
    back = arrays.unpack(arrays.pack(values, compress=frozenset({"thumb"})))
    assert list(back) == list(values)
    for name, value in values.items():
        assert np.array_equal(back[name], value) and back[name].shape == value.shape


def test_object_arrays_are_refused_when_writing():
    with pytest.raises(ValueError):
        arrays.pack({"bad": np.array([{"a": 1}], dtype=object)})


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04 a zip file",
        arrays.MAGIC + b"\xff\xff\xff\x00[]",  # table longer than the file
        container([["a", "|O", [1], 8, False]], b"\0" * 8),  # object dtype
        container([["a", "|u1", [4], 5, False]], b"\0" * 5),  # length disagrees with shape
        container([["a", "|u1", [1 << 40], 1, True]], b"x"),  # declares a huge array
        container([["a", "<u8", [1 << 20, 1 << 20, 1 << 20], 0, False]], b""),  # overflowing shape
        container([["a", "|u1", [16], 4, True]], zlib.compress(b"\0" * 1_000_000)[:4]),  # does not inflate
        container([["a", "|u1", [16], 0, False]], b"") + b"x",  # stored length disagrees
        container([["a", "|u1", [4], 4, False]], b"\0" * 4) + b"trailing",
        container({"not": "a list"}, b""),  # type: ignore[arg-type]
        container([["a", "|u1", [4], 4]], b"\0" * 4),  # short entry
    ],
)
def test_malformed_containers_are_refused(data):
    with pytest.raises(CorruptShard):
        arrays.unpack(data)


def test_a_compression_bomb_is_not_inflated_beyond_its_shape():
    bomb = zlib.compress(b"\0" * 50_000_000)
    with pytest.raises(CorruptShard, match="beyond its shape"):
        arrays.unpack(container([["a", "|u1", [1024], len(bomb), True]], bomb))


def test_features_of_the_earlier_npz_format_still_load():
    f = extract_features(jpeg(sample_bgr("coffee")))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays.unpack(f.to_bytes()))
    old = ImageFeatures.from_bytes(buf.getvalue())
    assert old.sha256 == f.sha256
    assert np.array_equal(old.thumb, f.thumb) and np.array_equal(old.descriptors, f.descriptors)
