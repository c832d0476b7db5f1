"""Visual words: ORB descriptors hashed so crops and exposure edits still share them."""

import cv2
import numpy as np
import pytest

from pictrace.core.features import WORD_BITS, WORD_TABLES, extract_features, visual_words
from pictrace.core.scoring import query_from_bytes, word_scores
from pictrace.core.shard import Shard
from tests.conftest import SAMPLES, jpeg, sample_bgr


@pytest.fixture(scope="module")
def shard():
    return Shard.build((extract_features(jpeg(sample_bgr(n))), {"name": n}) for n in SAMPLES)


def _edited(img: np.ndarray) -> bytes:
    """Bottom-right 70% crop, brighter and flatter, JPEG quality 50."""
    h, w = img.shape[:2]
    crop = img[round(0.3 * h) :, round(0.3 * w) :]
    return jpeg(cv2.convertScaleAbs(crop, alpha=0.8, beta=30), 50)


def test_words_are_sorted_distinct_and_in_range():
    feats = extract_features(jpeg(sample_bgr("astronaut")))
    w = feats.words
    assert w.dtype == np.uint32 and (np.diff(w.astype(np.int64)) > 0).all()
    assert int(w.max()) < WORD_TABLES << WORD_BITS
    assert len(w) <= WORD_TABLES * len(feats.descriptors)
    # Every table contributes.
    assert set(np.unique(w >> WORD_BITS)) == set(range(WORD_TABLES))


def test_no_descriptors_no_words():
    assert visual_words(np.zeros((0, 32), np.uint8)).shape == (0,)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket", "horse"])
def test_an_edited_crop_shares_far_more_words_with_its_source(name):
    source = extract_features(jpeg(sample_bgr(name)))
    edited = extract_features(_edited(sample_bgr(name)))
    others = [extract_features(jpeg(sample_bgr(n))) for n in ("camera", "moon") if n != name]
    shared = len(np.intersect1d(source.words, edited.words))
    assert all(shared > 2 * max(1, len(np.intersect1d(o.words, edited.words))) for o in others)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket", "coins"])
def test_word_scores_put_the_source_of_an_edited_crop_first(shard, name):
    query = query_from_bytes(_edited(sample_bgr(name)))
    scores = word_scores(query, shard)
    assert shard.metas[int(np.argmax(scores))]["name"] == name


def test_a_mirrored_copy_is_found_through_the_mirrored_words(shard):
    query = query_from_bytes(jpeg(cv2.flip(sample_bgr("chelsea"), 1)))
    scores = word_scores(query, shard)
    assert shard.metas[int(np.argmax(scores))]["name"] == "chelsea"


def test_an_empty_shard_scores_nothing():
    query = query_from_bytes(jpeg(sample_bgr("coffee")))
    assert word_scores(query, Shard.build([])).shape == (0,)
