"""POST /search {"query": sha256}: a stored query searched again, as a link to a search does."""

from tests.conftest import jpeg, sample_bgr
from tests.integration.test_api import add


def test_a_stored_query_can_be_searched_again(api, empty_catalog):
    ids = {n: add(api, n) for n in ("coffee", "rocket")}
    first = api.post("/search?k=2", jpeg(sample_bgr("coffee"), quality=40), "image/jpeg").body
    sha = first["query"]["sha256"]
    again = api.post("/search?k=2", {"query": sha})
    assert again.status == 200, again.body
    assert again.body["query"]["sha256"] == sha
    assert [r["id"] for r in again.body["results"]] == [r["id"] for r in first["results"]]
    assert again.body["results"][0]["id"] == ids["coffee"]
    narrowed = api.post("/search", {"query": sha, "min_score": 0.6})
    assert [r["id"] for r in narrowed.body["results"]] == [ids["coffee"]]


def test_unknown_or_malformed_stored_queries_are_refused(api, empty_catalog):
    assert api.post("/search", {"query": "0" * 64}).status == 404
    for bad in ("nope", 5, "../" + "0" * 61, "0" * 64 + "\n"):
        reply = api.post("/search", {"query": bad})
        assert reply.status == 400 and "query" in reply.body["message"], bad
