"""Duplicate groups: POST /duplicates starts the job, GET /duplicates pages its groups, over real HTTP."""

from __future__ import annotations

import cv2

from pictrace.catalog import duplicates, layout
from tests.conftest import jpeg, sample_bgr


def cropped(name: str, quality: int = 50):
    img = sample_bgr(name)
    h, w = img.shape[:2]
    return jpeg(img[h // 16 : h - h // 16, w // 20 :], quality)


def add(api, data: bytes) -> str:
    reply = api.post("/images", data, "image/jpeg")
    assert reply.status in (200, 201), reply.body
    return reply.body["ids"][0]


def scan(api, stack) -> dict:
    started = api.post("/duplicates")
    assert started.status == 202, started.body
    assert started.body["job"]["state"] in ("queued", "running")
    assert stack.lambdas.wait_async(120)
    return started.body


def seed(api) -> dict[str, str]:
    return {
        "coffee": add(api, jpeg(sample_bgr("coffee"))),
        "coffee copy": add(api, cropped("coffee")),
        "coffee small": add(api, jpeg(cv2.resize(sample_bgr("coffee"), (200, 133)), 70)),
        "rocket": add(api, jpeg(sample_bgr("rocket"))),
        "rocket copy": add(api, cropped("rocket", 40)),
        "astronaut": add(api, jpeg(sample_bgr("astronaut"))),
        "camera": add(api, jpeg(sample_bgr("camera"))),
    }


def test_groups_of_near_duplicates_across_the_catalog(api, stack, empty_catalog):
    stack.store.delete(layout.DUPLICATES_GROUPS)  # as before any scan
    ids = seed(api)
    before = api.get("/duplicates")
    assert before.status == 200 and before.body["scan"] is None and before.body["groups"] == []

    started = scan(api, stack)
    body = api.get("/duplicates?min_score=0.6").body
    assert body["job"] == {**body["job"], "state": "done", "run": started["job"]["run"]}
    assert body["scan"]["images"] == 7 and body["scan"]["complete"] is True
    found = [sorted(i["id"] for i in g["images"]) for g in body["groups"]]
    assert found == [
        sorted([ids["coffee"], ids["coffee copy"], ids["coffee small"]]),
        sorted([ids["rocket"], ids["rocket copy"]]),
    ]
    first = body["groups"][0]
    assert first["size"] == 3 and first["best_score"] >= 0.6
    assert all(p[2] >= 0.6 for p in first["pairs"])
    assert all("X-Amz-Expires=300" in i["thumb_url"] and i["stored_url"] for i in first["images"])
    assert body["total_groups"] == 2 and body["next_cursor"] is None


def test_a_stricter_threshold_needs_no_new_scan_and_pages_are_linked(api, stack, empty_catalog):
    ids = seed(api)
    scan(api, stack)
    loose = api.get("/duplicates?min_score=0.5").body
    strict = api.get("/duplicates?min_score=0.99").body
    assert strict["scan"]["run"] == loose["scan"]["run"]
    assert strict["groups"] == [] and loose["total_groups"] >= 2

    first = api.get("/duplicates?min_score=0.5&limit=1").body
    assert first["count"] == 1 and first["next_cursor"]
    second = api.get(f"/duplicates?min_score=0.5&limit=1&cursor={first['next_cursor']}").body
    assert second["groups"][0]["images"] != first["groups"][0]["images"]

    # A deleted image leaves its group; a group of one is no group.
    api.delete(f"/images/{ids['rocket copy']}")
    after = api.get("/duplicates?min_score=0.5").body
    assert all(ids["rocket copy"] not in {i["id"] for i in g["images"]} for g in after["groups"])
    assert all(g["size"] >= 2 for g in after["groups"])


def test_bad_parameters_are_4xx_json(api, stack, empty_catalog):
    add(api, jpeg(sample_bgr("coins")))
    scan(api, stack)
    for query, fragment in [
        ("min_score=0.2", "at least 0.5"),
        ("min_score=abc", "min_score"),
        ("min_score=1.5", "min_score"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=nonsense", "cursor"),
        ("cursor=0123456789abcdef0123456789abcdef.1", "earlier scan"),
    ]:
        reply = api.get(f"/duplicates?{query}")
        assert reply.status == 400, (query, reply.body)
        assert reply.body["error"] == "bad_request" and fragment in reply.body["message"], (query, reply.body)


def test_a_second_request_while_a_scan_is_queued_starts_no_other(api, stack, empty_catalog):
    stack.store.put(layout.DUPLICATES_STATUS, b'{"state": "running", "run": "abc", "started_at": 9e12}')
    reply = api.post("/duplicates")
    assert reply.status == 202 and reply.body == {"job": {"state": "running", "run": "abc", "started_at": 9e12}, "started": False}
    stack.store.delete(layout.DUPLICATES_STATUS)


def test_groups_are_components_of_the_pairs_that_reach_the_threshold():
    pairs = [["a", "b", 0.9], ["b", "c", 0.7], ["d", "e", 0.95], ["f", "g", 0.4]]
    at_06 = duplicates.groups(pairs, 0.6)
    assert [g["ids"] for g in at_06] == [["a", "b", "c"], ["d", "e"]]
    assert at_06[0]["pairs"] == [["a", "b", 0.9], ["b", "c", 0.7]]
    assert [g["ids"] for g in duplicates.groups(pairs, 0.8)] == [["d", "e"], ["a", "b"]]


def test_a_scan_out_of_time_goes_on_in_a_new_invocation_and_finds_the_same(api, stack, empty_catalog):
    seed(api)
    catalog = stack.services.catalog
    clock = iter([100.0] * 3 + [1.0] * 100)  # time for three searches, then the invocation's end is near
    calls: list[dict] = []
    first = duplicates.run(catalog, {"run": "r1"}, time_left=lambda: next(clock), invoke=calls.append)
    assert first["state"] == "running" and calls == [{"run": "r1", "resume": 3}]
    assert api.get("/duplicates").body["job"]["state"] == "running"
    assert stack.store.exists(layout.DUPLICATES_WORK)

    done = duplicates.run(catalog, calls[0], invoke=calls.append)
    assert done["state"] == "done" and len(calls) == 1
    assert not stack.store.exists(layout.DUPLICATES_WORK)
    chained = api.get("/duplicates?min_score=0.5").body
    assert chained["scan"]["complete"] is True and chained["scan"]["searched"] == 7

    duplicates.run(catalog, {"run": "r2"})  # the same scan in one invocation
    whole = api.get("/duplicates?min_score=0.5").body
    assert [g["pairs"] for g in whole["groups"]] == [g["pairs"] for g in chained["groups"]]

    # A continuation of a run that another has replaced does nothing.
    assert duplicates.run(catalog, {"run": "r1", "resume": 3}) == api.get("/duplicates").body["job"]


def test_without_a_way_to_go_on_the_scan_is_stored_incomplete(api, stack, empty_catalog):
    seed(api)
    clock = iter([100.0] * 2 + [1.0] * 100)
    duplicates.run(stack.services.catalog, {"run": "r3"}, time_left=lambda: next(clock))
    body = api.get("/duplicates?min_score=0.5").body
    assert body["job"]["state"] == "done"
    assert body["scan"]["complete"] is False and body["scan"]["searched"] == 2 and body["scan"]["images"] == 7


def test_a_long_scan_alive_in_its_latest_invocation_is_not_replaced(api, stack, empty_catalog):
    import json
    import time

    alive = {"state": "running", "run": "long", "started_at": time.time() - 3600, "updated_at": time.time() - 60, "hops": 4}
    stack.store.put(layout.DUPLICATES_STATUS, json.dumps(alive).encode())
    assert api.post("/duplicates").body["started"] is False
    dead = {**alive, "updated_at": time.time() - duplicates.STALE_AFTER - 1}
    stack.store.put(layout.DUPLICATES_STATUS, json.dumps(dead).encode())
    replaced = api.post("/duplicates").body
    assert replaced["started"] is True and replaced["job"]["run"] != "long"
    assert stack.lambdas.wait_async(120)
