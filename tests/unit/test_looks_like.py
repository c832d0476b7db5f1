"""Looks-like search on real photos: labels at ingest, mode="similar" ranks a cat near a cat, semantic everywhere."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pictrace.api import LocalIndex
from pictrace.core import compact
from pictrace.core.features import STORED_LABELS, ImageFeatures, extract_features
from pictrace.errors import ModelUnavailable
from pictrace.model import embedding
from tests.conftest import jpeg, sample_bgr

# A public-domain photo of a kitten (Wikimedia Commons, by Loliloli), as GCompris ships it.
CAT = Path(__file__).resolve().parents[1] / "fixtures" / "photos" / "cat.webp"
CAT_LABELS = {"tabby cat", "a cat having a striped coat", "Egyptian Mau", "Persian cat", "Siamese cat"}
OTHERS = ("coffee", "rocket", "astronaut", "camera", "coins")

pytestmark = pytest.mark.skipif(not embedding.DEFAULT_MODEL.is_file(), reason=f"no model: {embedding.BUILD_COMMAND}")


@pytest.fixture(scope="module")
def index():
    idx = LocalIndex()
    ids = {n: idx.add(jpeg(sample_bgr(n)), {"name": n}) for n in OTHERS}
    ids["cat"] = idx.add(CAT.read_bytes(), {"name": "cat"})
    return idx, ids


def test_ingest_stores_the_top_labels_with_probabilities():
    f = extract_features(jpeg(sample_bgr("chelsea")))
    assert f.labels[0][0] in CAT_LABELS
    assert 1 <= len(f.labels) <= STORED_LABELS and len({n for n, _ in f.labels}) == len(f.labels)
    assert [p for _, p in f.labels] == sorted((p for _, p in f.labels), reverse=True)
    assert extract_features(jpeg(sample_bgr("coffee"))).labels[0][0] == "espresso"


def test_features_keep_the_embedding_codes_and_labels_through_bytes():
    f = extract_features(jpeg(sample_bgr("rocket")))
    assert f.embedding.dtype == np.float16 and f.embedding.shape == (1280,)
    assert f.semantic.dtype == np.int8 and f.semantic.shape == (compact.SEMANTIC_DIMS,)
    back = ImageFeatures.from_bytes(f.to_bytes())
    assert np.array_equal(back.embedding, f.embedding) and np.array_equal(back.semantic, f.semantic)
    assert back.labels == f.labels
    # Features stored before embeddings load as features without one.
    old = ImageFeatures.from_bytes(dataclasses.replace(f, embedding=None, semantic=None, labels=()).to_bytes())
    assert old.embedding is None and old.semantic is None and old.labels == ()


def test_index_rows_carry_the_codes_and_the_labels_as_tags():
    f = extract_features(jpeg(sample_bgr("coffee")))
    row = compact.index_row(f)
    assert np.array_equal(row.semantic, f.semantic)
    assert compact.filter_token("label", "espresso") in set(row.tags.tolist())
    # Meta tags come first; labels fill the row up to its ten tags and no further.
    full = compact.index_row(f, tags=[(f"field{i}", "v") for i in range(compact.MAX_ROW_TAGS)])
    assert len(full.tags) == compact.MAX_ROW_TAGS and compact.filter_token("label", "espresso") not in set(full.tags.tolist())


def test_similar_mode_ranks_a_cat_near_a_cat(index):
    idx, ids = index
    query = jpeg(sample_bgr("chelsea"))
    found = idx.search(query, k=3, mode="similar")
    assert found[0].id == ids["cat"]
    assert [m.score for m in found] == [m.semantic for m in found] == sorted((m.semantic for m in found), reverse=True)
    # The three signals are still reported, and say the cat is no copy of Chelsea.
    assert found[0].ssim < 0.5 and found[0].orb < 0.1


def test_every_result_of_either_mode_reports_semantic(index):
    idx, ids = index
    copy = jpeg(sample_bgr("coffee")[10:-10, 10:-10], 70)
    default = idx.search(copy, k=6)
    assert default[0].id == ids["coffee"] and default[0].semantic > 0.9
    assert all(m.semantic is not None and -1 <= m.semantic <= 1 for m in default)
    assert all(set(m.to_dict()["scores"]) == {"ssim", "orb", "hist", "semantic"} for m in default)
    # With embeddings on both sides the default score is the mean of the four signals.
    assert all(m.score == pytest.approx((m.ssim + m.orb + m.hist + m.semantic) / 4) for m in default)
    # The original's ranking keeps its mean of three.
    seed = idx.search(copy, k=6, ranking="seed")
    assert all(m.semantic is not None for m in seed)
    assert all(m.score == pytest.approx((m.ssim + m.orb + m.hist) / 3) for m in seed)


def test_labels_are_a_filter(index):
    idx, ids = index
    hits = idx.search(jpeg(sample_bgr("chelsea")), k=5, mode="similar", filter={"label": "espresso"})
    assert [m.id for m in hits] == [ids["coffee"]]
    assert idx.labels(ids["coffee"])[0][0] == "espresso"


def test_without_the_model_ingest_degrades_and_similar_mode_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PICTRACE_MODEL_PATH", str(tmp_path / "absent.onnx"))
    f = extract_features(jpeg(sample_bgr("coins")))
    assert f.embedding is None and f.labels == ()
    idx = LocalIndex()
    image_id = idx.add_features(f)
    assert idx.search(jpeg(sample_bgr("coins")), k=1)[0].id == image_id  # copy detection still works
    assert idx.search(jpeg(sample_bgr("coins")), k=1)[0].semantic is None
    with pytest.raises(ModelUnavailable, match="pictrace.model.convert"):
        idx.search(jpeg(sample_bgr("coins")), k=1, mode="similar")
