"""POST /search?mode=similar through the local HTTP API: looks-like ranking, labels, semantic on every result."""

from __future__ import annotations

import pytest

from pictrace.model import embedding
from tests.conftest import jpeg, sample_bgr
from tests.integration.test_api import add
from tests.unit.test_looks_like import CAT, CAT_LABELS

pytestmark = pytest.mark.skipif(not embedding.DEFAULT_MODEL.is_file(), reason=f"no model: {embedding.BUILD_COMMAND}")
SCORES = {"ssim", "orb", "hist", "semantic"}


@pytest.fixture
def catalog(api, empty_catalog):
    ids = {n: add(api, n) for n in ("coffee", "rocket", "astronaut", "camera", "coins")}
    reply = api.post("/images", CAT.read_bytes(), "image/webp")
    assert reply.status in (200, 201), reply.body
    ids["cat"] = reply.body["ids"][0]
    return ids


def test_similar_mode_finds_the_other_cat_first(api, catalog):
    reply = api.post("/search?mode=similar&k=3", jpeg(sample_bgr("chelsea")), "image/jpeg")
    assert reply.status == 200, reply.body
    body = reply.body
    assert body["mode"] == "similar"
    assert body["query"]["labels"][0]["label"] in CAT_LABELS
    results = body["results"]
    assert results[0]["id"] == catalog["cat"] and len(results) == 3
    for r in results:
        assert set(r["scores"]) == SCORES and r["score"] == r["scores"]["semantic"]
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert results[0]["labels"] and {"label", "probability"} <= set(results[0]["labels"][0])


def test_the_default_mode_is_copy_detection_and_reports_semantic_too(api, catalog):
    copy = jpeg(sample_bgr("coffee")[20:-20, 30:-10], 70)
    reply = api.post("/search?k=3", copy, "image/jpeg")
    assert reply.status == 200, reply.body
    assert reply.body["mode"] == "default"
    top = reply.body["results"][0]
    assert top["id"] == catalog["coffee"] and top["scores"]["semantic"] > 0.9
    assert all(set(r["scores"]) == SCORES for r in reply.body["results"])


def test_labels_are_shown_with_the_image(api, catalog):
    reply = api.get(f"/images/{catalog['coffee']}")
    assert reply.status == 200, reply.body
    labels = reply.body.get("labels") or reply.body.get("image", {}).get("labels")
    assert labels[0]["label"] == "espresso" and 0 < labels[0]["probability"] <= 1


def test_a_bad_mode_is_a_400(api, catalog):
    reply = api.post("/search?mode=dreamy", jpeg(sample_bgr("coffee")), "image/jpeg")
    assert reply.status == 400 and "mode" in reply.body["message"]



def test_more_like_a_catalog_image_in_similar_mode(api, catalog):
    chelsea = add(api, "chelsea")
    reply = api.get(f"/images/{chelsea}/similar?mode=similar&k=2")
    assert reply.status == 200, reply.body
    assert reply.body["mode"] == "similar" and reply.body["results"][0]["id"] == catalog["cat"]
    assert chelsea not in [r["id"] for r in reply.body["results"]]
    assert api.get(f"/images/{chelsea}/similar?mode=dreamy").status == 400
