"""Phase 2: the cascade gives the ranking full scoring gives, with less SSIM work."""

from __future__ import annotations

import numpy as np
import pytest

from pictrace.api import candidate_query
from pictrace.core import compact
from pictrace.core.candidates import candidates, shortlist
from pictrace.core.features import extract_features
from pictrace.core.partition import Partition
from pictrace.core.rerank import rerank
from pictrace.core.scoring import query_from_bytes
from tests.conftest import jpeg, sample_bgr

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "hubble_deep_field", "immunohistochemistry", "page", "horse")


@pytest.fixture(scope="module")
def details():
    out = {}
    for n in NAMES:
        f = extract_features(jpeg(sample_bgr(n)))
        out[f.sha256] = f
    return out


@pytest.fixture(scope="module")
def partition(details):
    return Partition.build(compact.index_row(f) for f in details.values())


def plan(data: bytes, partition: Partition, per_signal: int = 8):
    query = query_from_bytes(data)
    return query, shortlist(candidates(candidate_query(query), partition, per_signal=per_signal), per_signal)


@pytest.mark.parametrize("edit", ["crop", "mirror", "none"])
def test_the_cascade_ranks_as_full_scoring_does(details, partition, edit):
    img = sample_bgr("coffee")
    img = {"crop": img[40:360, 60:520], "mirror": np.ascontiguousarray(img[:, ::-1]), "none": img}[edit]
    query, short = plan(jpeg(img), partition)
    fast, work = rerank(query, short, details, k=3)
    slow, all_work = rerank(query, short, details, k=3, cascade=False)
    assert [(m.id, m.score, m.transform) for m in fast] == [(m.id, m.score, m.transform) for m in slow]
    assert all_work.full == len(short) and work.candidates == len(short)
    assert fast[0].id == extract_features(jpeg(sample_bgr("coffee"))).sha256


def test_a_decisive_top_match_stops_the_cascade_early(details, partition):
    query, short = plan(jpeg(sample_bgr("astronaut")), partition, per_signal=10)
    matches, work = rerank(query, short, details, k=1)
    assert matches[0].score > 0.9
    assert work.full < work.candidates


def test_candidates_deleted_meanwhile_are_skipped(details, partition):
    query, short = plan(jpeg(sample_bgr("rocket")), partition)
    rocket = extract_features(jpeg(sample_bgr("rocket"))).sha256
    left = {i: f for i, f in details.items() if i != rocket}
    matches, work = rerank(query, short, left, k=5)
    assert rocket not in [m.id for m in matches] and work.candidates == len(short) - 1


def test_seed_ranking_scores_every_candidate(details, partition):
    query, short = plan(jpeg(sample_bgr("chelsea")), partition)
    matches, work = rerank(query, short, details, k=2, ranking="seed")
    assert work.full == len(short) and matches[0].transform == "identity"
