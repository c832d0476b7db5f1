"""Shards: versioned, pickle-free files of many images' index features."""

import io
import json

import numpy as np
import pytest

from pictrace.core.features import extract_features
from pictrace.core.shard import SHARD_VERSION, Shard
from pictrace.errors import CorruptShard
from tests.conftest import jpeg, sample_bgr


@pytest.fixture(scope="module")
def feats():
    return [extract_features(jpeg(sample_bgr(n))) for n in ("astronaut", "coffee", "chelsea")]


@pytest.fixture(scope="module")
def shard(feats):
    return Shard.build((f, {"name": f"img{i}", "key": f"catalog/{i}.jpg"}) for i, f in enumerate(feats))


def test_round_trip(shard):
    back = Shard.from_bytes(shard.to_bytes())
    assert list(back.ids) == list(shard.ids)
    np.testing.assert_array_equal(back.gist, shard.gist)
    np.testing.assert_array_equal(back.chist, shard.chist)
    assert back.metas == shard.metas


def test_duplicate_ids_are_kept_once(feats):
    s = Shard.build([(feats[0], {"n": 1}), (feats[1], {}), (feats[0], {"n": 2})])
    assert len(s) == 2 and s.metas[0] == {"n": 1}


def test_without_and_concat(shard, feats):
    smaller = shard.without([feats[1].sha256])
    assert feats[1].sha256 not in set(smaller.ids) and len(smaller) == 2
    joined = Shard.concat([smaller, shard])
    assert sorted(joined.ids) == sorted(shard.ids)


def test_empty_shard_round_trips():
    empty = Shard.build([])
    back = Shard.from_bytes(empty.to_bytes())
    assert len(back) == 0 and back.gist.shape == (0, 1024)


def _rewrite(shard: Shard, **changes) -> bytes:
    arrays = {
        "ids": shard.ids, "gist": shard.gist, "chist": shard.chist,
        "words": shard.words, "word_offsets": shard.word_offsets,
    }
    header = {"format": "pictrace-shard", "version": SHARD_VERSION, "metas": list(shard.metas)}
    header.update(changes.pop("header", {}))
    arrays.update(changes)
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    return buf.getvalue()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"header": {"version": 99}}, "version 99 is not supported"),
        ({"header": {"format": "something-else"}}, "not a pictrace-shard file"),
        ({"gist": np.zeros((2, 1024), np.float16)}, "malformed"),
        ({"chist": np.zeros((3, 512), np.float32)}, "malformed"),
        ({"header": {"metas": [{}]}}, "malformed"),
        ({"word_offsets": np.array([0, 1, 2, 3], np.int64)}, "malformed"),
        ({"words": np.zeros(3, np.int64)}, "malformed"),
        ({"words": np.full(1, 2**31, np.uint32), "word_offsets": np.array([0, 1, 1, 1], np.int64)}, "out of range"),
        ({"header": {"version": 1}}, "version 1 is not supported"),
    ],
    ids=["future-version", "foreign-format", "short-gist", "float32-chist", "metas-length",
         "offsets-disagree", "int64-words", "word-out-of-range", "previous-version"],
)
def test_damaged_shards_are_rejected(shard, change, message):
    with pytest.raises(CorruptShard, match=message):
        Shard.from_bytes(_rewrite(shard, **change))


def test_truncated_file_is_rejected(shard):
    data = shard.to_bytes()
    with pytest.raises(CorruptShard):
        Shard.from_bytes(data[: len(data) // 2])


def test_object_arrays_never_unpickle(shard):
    buf = io.BytesIO()
    np.savez(buf, header=np.array([1], dtype=object), ids=shard.ids)
    with pytest.raises(CorruptShard):
        Shard.from_bytes(buf.getvalue())
