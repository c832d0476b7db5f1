"""Metadata and filters through the local HTTP API: meta on add and PATCH, filters inside phase 1."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import time
import uuid

import numpy as np
import pytest

from pictrace.catalog import layout
from pictrace.catalog.packing import Manifest, pack
from pictrace.client import upload_request
from pictrace.core.partition import Partition
from tests.conftest import jpeg, sample_bgr
from tests.integration.test_api import multipart

# Coffee and rocket belong to tenant a, the rest to b: a mirrored coffee's best
# matches are a's, so a filtered search for b must find b's however weak they are.
TENANT = {"coffee": "a", "rocket": "a", "chelsea": "b", "astronaut": "b", "camera": "b", "horse": "b", "coins": "b"}


def q(value: object) -> str:
    return urllib.parse.quote(json.dumps(value))


def add_with_meta(api, name: str, meta: dict) -> str:
    reply = api.post(f"/images?meta={q(meta)}", jpeg(sample_bgr(name)), "image/jpeg")
    assert reply.status in (200, 201), reply.body
    return reply.body["ids"][0]


def patch(api, image_id: str, body) -> object:
    return api.request("PATCH", f"/images/{image_id}", body)


def count(stack, prefix: str) -> int:
    return stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix).get("KeyCount", 0)


@pytest.fixture
def tenants(api, empty_catalog) -> dict[str, str]:
    return {n: add_with_meta(api, n, {"tenant": t, "kind": ["photo", n]}) for n, t in TENANT.items()}


MIRRORED_COFFEE = jpeg(np.ascontiguousarray(sample_bgr("coffee")[:, ::-1]))


def test_meta_rides_on_every_kind_of_add_and_on_records_lists_and_results(api, stack, empty_catalog):
    raw = add_with_meta(api, "coffee", {"tenant": "a", "year": 2024, "deep": {"x": [1, "y"]}})
    body, ctype = multipart("file", "rocket.jpg", jpeg(sample_bgr("rocket")))
    boundary = ctype.split("=", 1)[1]
    field = f'--{boundary}\r\nContent-Disposition: form-data; name="meta"\r\n\r\n{{"tenant": "b"}}\r\n'.encode()
    form = api.post("/images", field + body, ctype)
    assert form.status == 201, form.body
    ticket = api.post("/uploads", {"content_type": "image/jpeg"}).body
    urllib.request.urlopen(upload_request(ticket, jpeg(sample_bgr("chelsea")))).read()
    js = api.post("/images", {"s3_key": ticket["s3_key"], "meta": {"tenant": "c", "tags": ["cat", "pet"]}})
    assert js.status == 201, js.body

    assert form.body["images"][0]["meta"] == {"tenant": "b"}
    got = api.get(f"/images/{raw}")
    assert got.status == 200 and got.body["meta"] == {"tenant": "a", "year": 2024, "deep": {"x": [1, "y"]}}
    listed = {r["id"]: r["meta"] for r in api.get("/images").body["images"]}
    assert listed[js.body["ids"][0]] == {"tenant": "c", "tags": ["cat", "pet"]}
    found = api.post("/search?k=3", MIRRORED_COFFEE, "image/jpeg")
    assert found.status == 200 and found.body["results"][0]["meta"]["tenant"] == "a"
    assert found.body["filter"] == {}


def test_a_filtered_search_returns_k_matching_images_although_better_ones_do_not_match(api, tenants):
    unfiltered = api.post("/search?k=3", MIRRORED_COFFEE, "image/jpeg").body["results"]
    assert unfiltered[0]["id"] == tenants["coffee"]

    reply = api.post(f"/search?k=4&filter={q({'tenant': 'b'})}", MIRRORED_COFFEE, "image/jpeg")
    assert reply.status == 200, reply.body
    results = reply.body["results"]
    assert len(results) == 4 and all(r["meta"]["tenant"] == "b" for r in results)
    assert reply.body["filter"] == {"tenant": ["b"]}
    assert reply.body["filter_dropped"] == 0  # no token collision: phase 1 let through matching images only
    # All five b images when k asks for more than exist.
    every = api.post(f"/search?k=10&filter={q({'tenant': 'b'})}", MIRRORED_COFFEE, "image/jpeg").body["results"]
    assert {r["id"] for r in every} == {tenants[n] for n, t in TENANT.items() if t == "b"}

    # In a JSON body, with a list (any of) and a second field (ANDed).
    sha = reply.body["query"]["sha256"]
    both = api.post("/search", {"query": sha, "filter": {"tenant": ["a", "b"], "kind": ["rocket", "horse"]}, "k": 5})
    assert both.status == 200, both.body
    assert {r["id"] for r in both.body["results"]} == {tenants["rocket"], tenants["horse"]}
    none = api.post("/search", {"query": sha, "filter": {"tenant": "nobody"}})
    assert none.status == 200 and none.body["results"] == []


def test_filters_hold_for_packed_partitions_and_pending_rows_together(api, stack, tenants):
    stack.pack_now()
    late = add_with_meta(api, "moon", {"tenant": "b"})  # pending, the rest packed
    reply = api.post(f"/search?k=10&filter={q({'tenant': 'b'})}", MIRRORED_COFFEE, "image/jpeg")
    assert {r["id"] for r in reply.body["results"]} == {late} | {tenants[n] for n, t in TENANT.items() if t == "b"}


def test_list_and_similar_take_the_same_filter(api, tenants):
    listed = api.get(f"/images?filter={q({'tenant': 'a'})}")
    assert listed.status == 200, listed.body
    assert {r["id"] for r in listed.body["images"]} == {tenants["coffee"], tenants["rocket"]}
    assert listed.body["filter"] == {"tenant": ["a"]}
    # Pages of one, following next_cursor.
    seen, cursor = [], ""
    for _ in range(5):
        page = api.get(f"/images?limit=1&filter={q({'tenant': 'a'})}" + (f"&cursor={cursor}" if cursor else "")).body
        seen += [r["id"] for r in page["images"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted([tenants["coffee"], tenants["rocket"]])

    similar = api.get(f"/images/{tenants['coffee']}/similar?k=5&filter={q({'tenant': 'a'})}")
    assert similar.status == 200, similar.body
    assert [r["id"] for r in similar.body["results"]] == [tenants["rocket"]]


def test_patch_replaces_meta_and_searches_follow_before_and_after_packing(api, stack, tenants):
    stack.pack_now()
    coffee = tenants["coffee"]
    reply = patch(api, coffee, {"meta": {"tenant": "b", "note": "moved"}})
    assert reply.status == 200, reply.body
    assert reply.body["meta"] == {"tenant": "b", "note": "moved"} and reply.body["id"] == coffee
    assert api.get(f"/images/{coffee}").body["meta"] == {"tenant": "b", "note": "moved"}

    def best(tenant: str) -> list[str]:
        found = api.post(f"/search?k=3&filter={q({'tenant': tenant})}", MIRRORED_COFFEE, "image/jpeg")
        assert found.status == 200, found.body
        return [r["id"] for r in found.body["results"]]

    for _ in range(2):  # at once (pending row), then packed
        assert best("b")[0] == coffee
        assert best("a") == [tenants["rocket"]]
        # The packed row's old tags did not nominate coffee: the shortlist is rocket alone.
        only_a = api.post(f"/search?k=3&filter={q({'tenant': 'a'})}", MIRRORED_COFFEE, "image/jpeg").body
        assert only_a["counts"]["shortlist"] == 1
        assert coffee not in {r["id"] for r in api.get(f"/images?filter={q({'tenant': 'a'})}").body["images"]}
        stack.pack_now()

    # Packing replaced the packed row: the image is in one partition, with the new tags only.
    manifest = Manifest.load(stack.services.store)
    rows = [r for e in manifest.partitions for r in Partition.from_bytes(stack.services.store.get(e["key"])).rows()]
    assert sum(r.sha256 == coffee for r in rows) == 1


def test_a_patched_image_deleted_never_comes_back(api, stack, tenants):
    coffee = tenants["coffee"]
    stack.pack_now()
    assert patch(api, coffee, {"meta": {"tenant": "z"}}).status == 200
    assert api.delete(f"/images/{coffee}").status == 200
    for _ in range(2):
        found = api.post(f"/search?k=5&filter={q({'tenant': 'z'})}", MIRRORED_COFFEE, "image/jpeg")
        assert found.status == 200 and found.body["results"] == []
        stack.pack_now()
    assert patch(api, coffee, {"meta": {"tenant": "y"}}).status == 404


@pytest.mark.parametrize(
    "meta, status, code",
    [
        ('{"tenant": ', 400, "invalid_meta"),
        ("[1, 2]", 400, "invalid_meta"),
        (json.dumps({"a": {"b": {"c": {"d": {"e": 1}}}}}), 400, "invalid_meta"),
        (json.dumps({f"f{i}": "v" for i in range(8)}), 400, "invalid_meta"),
        (json.dumps({"note": "x" * 5000}), 413, "meta_too_large"),
        ("[" * 3000, 400, "invalid_meta"),  # deeper than the JSON parser recurses
    ],
)
def test_bad_meta_is_a_4xx_and_stores_nothing(api, stack, empty_catalog, meta, status, code):
    before = count(stack, "catalog/"), count(stack, "index/")
    reply = api.post(f"/images?meta={urllib.parse.quote(meta)}", jpeg(sample_bgr("coins")), "image/jpeg")
    assert reply.status == status, reply.body
    assert reply.body["error"] == code and "meta" in reply.body["message"]
    assert (count(stack, "catalog/"), count(stack, "index/")) == before
    js = api.post("/images", {"s3_key": "uploads/" + "0" * 32, "meta": "not an object"})
    assert js.status == 400 and js.body["error"] == "invalid_meta"


@pytest.mark.parametrize(
    "bad", ['{"tenant": ', '["a"]', '{"tenant": 3}', '{"tenant": []}', '{"tenant": [null]}', '"tenant"']
)
def test_a_bad_filter_is_a_400_and_stores_no_query(api, stack, tenants, bad):
    before = count(stack, "queries/")
    reply = api.post(f"/search?filter={urllib.parse.quote(bad)}", jpeg(sample_bgr("moon")), "image/jpeg")
    assert reply.status == 400 and reply.body["error"] == "invalid_filter", reply.body
    assert count(stack, "queries/") == before
    assert api.get(f"/images?filter={urllib.parse.quote(bad)}").status == 400
    assert api.get(f"/images/{tenants['coffee']}/similar?filter={urllib.parse.quote(bad)}").status == 400


def test_filter_in_both_the_query_string_and_the_body_is_refused(api, tenants):
    sha = api.post("/search", MIRRORED_COFFEE, "image/jpeg").body["query"]["sha256"]
    reply = api.post(f"/search?filter={q({'tenant': 'a'})}", {"query": sha, "filter": {"tenant": "b"}})
    assert reply.status == 400 and reply.body["error"] == "invalid_filter"
    body = api.post("/search", {"query": sha, "filter": "tenant=a"})
    assert body.status == 400 and body.body["error"] == "invalid_filter"


def test_bad_patches_are_4xx_and_change_nothing(api, tenants):
    coffee = tenants["coffee"]
    before = api.get(f"/images/{coffee}").body["meta"]
    cases = [
        (f"/images/{coffee}", {"meta": [1]}, 400, "invalid_meta"),
        (f"/images/{coffee}", {"meta": {"x": "y" * 5000}}, 413, "meta_too_large"),
        (f"/images/{coffee}", {"meta": {}, "name": "renamed"}, 400, "bad_request"),
        (f"/images/{coffee}", {"name": "renamed"}, 400, "bad_request"),
        (f"/images/{'0' * 64}", {"meta": {"a": "b"}}, 404, "not_found"),
        ("/images/nope", {"meta": {"a": "b"}}, 404, "not_found"),
    ]
    for path, body, status, code in cases:
        reply = api.request("PATCH", path, body)
        assert (reply.status, reply.body.get("error")) == (status, code), (path, body, reply.body)
    raw = api.request("PATCH", f"/images/{coffee}", jpeg(sample_bgr("moon")), "image/jpeg")
    assert raw.status == 400 and raw.body["error"] == "bad_request"
    assert api.get(f"/images/{coffee}").body["meta"] == before


def test_an_add_of_known_bytes_keeps_their_meta(api, tenants):
    again = api.post(f"/images?meta={q({'tenant': 'q'})}", jpeg(sample_bgr("coffee")), "image/jpeg")
    assert again.status == 200 and again.body["images"][0]["meta"]["tenant"] == "a"


def test_a_retag_marker_goes_once_its_grace_is_over(api, stack, tenants):
    store, config = stack.services.store, stack.services.config
    marker = layout.retagged_key(tenants["rocket"])
    assert patch(api, tenants["rocket"], {"meta": {"tenant": "b"}}).status == 200
    assert store.etag(marker) is not None
    stack.pack_now()
    assert tenants["rocket"] in Manifest.load(store).retagged and store.etag(marker) is not None
    pack(store, config.partition_rows, config.pack_grace_seconds, now=time.time() + 10 * config.pack_grace_seconds)
    assert store.etag(marker) is None and tenants["rocket"] not in Manifest.load(store).retagged
    found = api.post(f"/search?k=1&filter={q({'tenant': 'b'})}", jpeg(sample_bgr("rocket")), "image/jpeg")
    assert found.body["results"][0]["id"] == tenants["rocket"]


def test_a_filter_in_a_multipart_search_and_after_a_reindex(api, stack, tenants):
    from pictrace.catalog.reindex import reindex

    body, ctype = multipart("file", "q.jpg", MIRRORED_COFFEE)
    boundary = ctype.split("=", 1)[1]
    field = f'--{boundary}\r\nContent-Disposition: form-data; name="filter"\r\n\r\n{{"tenant": "b"}}\r\n'.encode()
    form = api.post("/search?k=3", field + body, ctype)
    assert form.status == 200, form.body
    assert len(form.body["results"]) == 3 and {r["meta"]["tenant"] for r in form.body["results"]} == {"b"}

    # Rows rebuilt from the records keep their tags.
    reindex(stack.services.catalog)
    again = api.post(f"/search?k=10&filter={q({'tenant': 'a'})}", MIRRORED_COFFEE, "image/jpeg")
    assert [r["id"] for r in again.body["results"]] == [tenants["coffee"], tenants["rocket"]]


def test_a_row_whose_tags_lie_never_yields_a_non_matching_result(api, stack, tenants):
    """As if ("tenant", "a") and ("tenant", "b") shared a 32-bit token: coffee's row says b, its record a."""
    from pictrace.core import compact

    coffee = tenants["coffee"]
    row = compact.index_row(stack.services.catalog.features(coffee), tags=[("tenant", "b")])
    stack.services.store.put(layout.pending_key(coffee), Partition.build([row]).to_bytes(nonce=uuid.uuid4().hex))
    reply = api.post(f"/search?k=10&filter={q({'tenant': 'b'})}", MIRRORED_COFFEE, "image/jpeg")
    assert reply.status == 200, reply.body
    assert {r["id"] for r in reply.body["results"]} == {tenants[n] for n, t in TENANT.items() if t == "b"}
    assert reply.body["filter_dropped"] == 1  # coffee, let through by its row and dropped by its record
    similar = api.get(f"/images/{tenants['rocket']}/similar?k=10&filter={q({'tenant': 'b'})}")
    assert similar.status == 200 and similar.body["filter_dropped"] == 1
    assert tenants["coffee"] not in {r["id"] for r in similar.body["results"]}


def test_the_scoring_function_applies_the_filter_its_events_carry(api, stack, tenants):
    sha = api.post("/search?k=1", MIRRORED_COFFEE, "image/jpeg").body["query"]["sha256"]
    pending = sorted(stack.services.store.list(layout.PENDING))
    event = {"phase": "candidates", "query": layout.query_features_key(sha), "batch": {"pending": pending}, "per_signal": 2}
    score = "ScoreFunction"
    everything = stack.invoke(score, event)
    assert tenants["coffee"] in {c["id"] for c in everything["candidates"]}
    only_b = stack.invoke(score, {**event, "filter": {"tenant": ["b"]}})
    b_ids = {tenants[n] for n, t in TENANT.items() if t == "b"}
    assert only_b["candidates"] and {c["id"] for c in only_b["candidates"]} <= b_ids

    # Phase 2 checks the records: a candidate whose meta does not match is dropped, whatever phase 1 said.
    rerank = {"phase": "rerank", "query": event["query"], "candidates": everything["candidates"], "k": 10}
    all_matches = stack.invoke(score, rerank)
    kept = stack.invoke(score, {**rerank, "filter": {"tenant": "b"}})
    assert {m["id"] for m in kept["matches"]} <= b_ids
    assert kept["unmatched"] == len(all_matches["matches"]) - len(kept["matches"]) > 0
    assert stack.invoke(score, {**event, "filter": {"tenant": 3}})["error"] == "invalid_filter"
