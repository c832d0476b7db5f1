"""Comparing one pair (pictrace.core.pair) and the library's similar/min_score."""

import numpy as np

from pictrace.api import LocalIndex
from pictrace.core.features import extract_features
from pictrace.core.pair import compare, spread
from pictrace.core.scoring import query_from_bytes
from tests.conftest import jpeg, sample_bgr


def test_spread_keeps_order_and_bounds():
    assert spread(list(range(5)), 10) == [0, 1, 2, 3, 4]
    assert spread(list(range(10)), 5) == [0, 2, 4, 6, 8]
    assert len(spread(list(range(1001)), 200)) == 200


def test_an_image_compared_with_itself_is_identity_at_one():
    data = jpeg(sample_bgr("coffee"))
    found = compare(query_from_bytes(data), extract_features(data)).to_dict()
    assert found["transform"] == "identity" and found["score"] > 0.99
    assert found["keypoints"]["count"] > 100 and found["keypoints"]["mirrored"] is False


def test_a_turned_copy_is_reported_turned():
    data = jpeg(sample_bgr("astronaut"))
    turned = jpeg(np.ascontiguousarray(np.rot90(sample_bgr("astronaut"))))
    found = compare(query_from_bytes(turned), extract_features(data))
    assert found.match.transform == "rot90" and found.match.score > 0.7


def test_library_similar_leaves_the_image_out_and_min_score_empties():
    index = LocalIndex()
    ids = {n: index.add(jpeg(sample_bgr(n)), {"name": n}) for n in ("chelsea", "coffee", "rocket")}
    crop = index.add(jpeg(np.ascontiguousarray(sample_bgr("chelsea")[20:-20, 20:-20])), {"name": "crop"})
    hits = index.similar(ids["chelsea"], k=5)
    assert [h.id for h in hits][0] == crop and ids["chelsea"] not in [h.id for h in hits]
    assert [h.id for h in index.similar(ids["chelsea"], k=5, min_score=0.5)] == [crop]
    assert index.search(jpeg(sample_bgr("moon")), k=3, min_score=0.5) == []
    assert len(index.search(jpeg(sample_bgr("moon")), k=3)) == 3
