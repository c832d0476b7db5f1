"""Catalog races and damaged records, against the local stack's moto S3.

Races are made deterministic: a store wrapper counts the calls one
operation makes and runs a whole second operation at call number ``k``,
for every ``k``.  Whatever the interleaving, the image must end either
fully present (record, original, features, by-key entry, pending row, no
tombstone) or fully gone (nothing listed, nothing searchable, no original
left for a notification to bring back).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from urllib.parse import quote_plus

import pytest
from botocore.exceptions import ClientError

from pictrace.catalog import layout
from pictrace.catalog.catalog import Catalog
from tests.conftest import Client
from tests.hostile.corpus import jpeg_header_only, variants


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def no_drops_left(stack):
    """Objects these tests drop under catalog/drops/ and incoming/ go afterwards."""
    yield
    for prefix in ("catalog/drops/", layout.INCOMING, layout.RESULTS):
        for key in list(stack.services.store.list(prefix)):
            stack.services.store.delete(key)


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return variants(4, seed=41)


class Interleaving:
    """A store that runs ``hook`` once, just before its ``at``-th call (counting from 0)."""

    def __init__(self, store, at: int, hook: Callable[[], object]) -> None:
        self._store, self._at, self._hook, self.calls = store, at, hook, 0

    def __getattr__(self, name: str):
        real = getattr(self._store, name)
        if not callable(real):
            return real

        def call(*args, **kwargs):
            if self.calls == self._at:
                self._hook()
            self.calls += 1
            return real(*args, **kwargs)

        return call


def state(stack, image_id: str) -> dict[str, bool]:
    store, catalog = stack.services.store, stack.services.catalog
    record = catalog.find(image_id)
    original = record.key if record else next(iter(store.list(f"{layout.CATALOG}{image_id}.")), "")
    return {
        "record": record is not None,
        "original": bool(original) and store.exists(original),
        "by_key": bool(original) and store.exists(layout.by_key_key(original)),
        "features": store.exists(layout.features_key(image_id)),
        "pending": store.exists(layout.pending_key(image_id)),
        "visible": not store.exists(layout.tombstone_key(image_id)),
    }


PRESENT = dict(record=True, original=True, by_key=True, features=True, pending=True, visible=True)
GONE = dict(record=False, original=False, by_key=False, features=False, pending=False, visible=False)


def quietly(op: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            op()
        except Exception as exc:  # a delete of an image not yet recorded is a 404: fine here
            assert getattr(exc, "code", "") == "not_found", exc

    return run


def calls_made(stack, op: Callable[[Catalog], object]) -> int:
    counter = Interleaving(stack.services.store, -1, lambda: None)
    op(Catalog(counter, stack.services.config))
    return counter.calls


def test_an_add_landing_anywhere_inside_a_delete_leaves_a_whole_image_or_none(stack, empty_catalog, images) -> None:
    data, plain = images[0], stack.services.catalog
    image_id = sha(data)
    plain.add(data)
    steps = calls_made(stack, lambda c: c.delete(image_id))
    plain.add(data)
    outcomes = []
    for at in range(steps + 1):
        racing = Catalog(Interleaving(stack.services.store, at, quietly(lambda: plain.add(data))), stack.services.config)
        racing.delete(image_id)
        now = state(stack, image_id)
        assert now in (PRESENT, GONE), (at, now)
        outcomes.append(now == PRESENT)
        if now == GONE:
            plain.add(data)
    # Every add that started before the delete's last step saw the record: a duplicate, then deleted.
    assert not any(outcomes)


def test_a_delete_landing_anywhere_inside_an_add_leaves_a_whole_image_or_none(stack, empty_catalog, images) -> None:
    data, plain = images[1], stack.services.catalog
    image_id = sha(data)
    steps = calls_made(stack, lambda c: c.add(data))
    plain.delete(image_id)
    outcomes = []
    for at in range(steps + 1):
        racing = Catalog(Interleaving(stack.services.store, at, quietly(lambda: plain.delete(image_id))), stack.services.config)
        racing.add(data)
        now = state(stack, image_id)
        assert now in (PRESENT, GONE), (at, now)
        outcomes.append(now == PRESENT)
        if now == PRESENT:
            plain.delete(image_id)
    assert any(outcomes) and not all(outcomes)


def test_a_delete_that_read_an_old_record_still_converges(stack, empty_catalog, images) -> None:
    """Delete B read the record, then delete A and a re-add ran to completion, then B went on."""
    data, plain = images[2], stack.services.catalog
    image_id = sha(data)
    plain.add(data)
    steps = calls_made(stack, lambda c: c.delete(image_id))
    plain.add(data)

    def delete_then_readd() -> None:
        quietly(lambda: plain.delete(image_id))()
        plain.add(data)

    for at in range(1, steps + 1):
        stale = Catalog(Interleaving(stack.services.store, at, delete_then_readd), stack.services.config)
        quietly(lambda: stale.delete(image_id))()
        now = state(stack, image_id)
        assert now in (PRESENT, GONE), (at, now)
        if now == GONE:
            plain.add(data)


# --- S3 notifications ------------------------------------------------------------------


def s3_event(*records: tuple[str, str]) -> dict:
    return {
        "Records": [
            {"eventName": name, "s3": {"bucket": {"name": "pictrace"}, "object": {"key": quote_plus(key, safe="/")}}}
            for name, key in records
        ]
    }


def test_a_late_removed_event_does_not_delete_the_image_added_again(stack, api: Client, empty_catalog, images) -> None:
    data = images[3]
    image_id = sha(data)
    assert api.post("/images", data, "image/jpeg").status == 201
    key = api.get(f"/images/{image_id}").body["key"]
    assert api.delete(f"/images/{image_id}").status == 200
    again = api.post("/images", data, "image/jpeg")
    assert again.status == 201 and again.body["images"][0]["created"] is True
    # The ObjectRemoved notification of the first delete arrives only now.
    out = stack.invoke("IndexFunction", s3_event(("ObjectRemoved:Delete", key)))
    assert out["removed"] == []
    assert api.get(f"/images/{image_id}").status == 200
    assert state(stack, image_id) == PRESENT
    assert [r["id"] for r in api.post("/search?k=1", data, "image/jpeg").body["results"]] == [image_id]


def test_an_overwritten_drop_is_indexed_again_and_the_old_image_retired(stack, empty_catalog, images) -> None:
    key = "catalog/drops/overwritten.jpg"
    old, new = images[0], images[1]
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=old)
    first = stack.invoke("IndexFunction", s3_event(("ObjectCreated:Put", key)))
    assert first["indexed"] == [{"key": key, "id": sha(old)}]
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=new)
    second = stack.invoke("IndexFunction", s3_event(("ObjectCreated:Put", key)))
    assert second["indexed"] == [{"key": key, "id": sha(new)}]
    catalog = empty_catalog
    assert catalog.find(sha(old)) is None and state(stack, sha(old))["pending"] is False
    assert catalog.get(sha(new)).key == key and state(stack, sha(new)) == PRESENT
    # A replay of the same notification changes nothing.
    replay = stack.invoke("IndexFunction", s3_event(("ObjectCreated:Put", key)))
    assert replay["indexed"] == [] and replay["duplicates"] == [{"key": key, "id": sha(new)}]


def test_one_failing_record_of_an_event_does_not_stop_the_others(stack, empty_catalog, images, monkeypatch) -> None:
    bad, hostile, good = "catalog/drops/a-crash.jpg", "catalog/drops/b-header-only.jpg", "catalog/drops/c-good.jpg"
    for key, body in ((bad, images[2]), (hostile, jpeg_header_only(64, 48)), (good, images[3])):
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    catalog = stack.services.catalog
    real = catalog.index_object

    def crash_on_bad(key: str):
        if key == bad:
            raise ValueError("a decoder defect")  # what an unexpected parser crash looks like
        return real(key)

    monkeypatch.setattr(catalog, "index_object", crash_on_bad)
    out = stack.invoke("IndexFunction", s3_event(*[("ObjectCreated:Put", k) for k in (bad, hostile, good)]))
    assert [f["key"] for f in out["failed"]] == [bad] and out["failed"][0]["error"] == "internal_error"
    assert [r["key"] for r in out["rejected"]] == [hostile]
    assert out["indexed"] == [{"key": good, "id": sha(images[3])}]


def test_a_storage_error_is_retried_but_only_after_the_rest_of_the_poll(stack, empty_catalog, images, monkeypatch) -> None:
    stack.sync_notifications()  # forget what earlier tests dropped
    bad, good = "catalog/drops/a-unreachable.jpg", "catalog/drops/b-fine.jpg"
    for key, body in ((bad, images[0]), (good, images[1])):
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    catalog = stack.services.catalog
    real = catalog.index_object

    def unreachable(key: str):
        if key == bad:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "GetObject")
        return real(key)

    monkeypatch.setattr(catalog, "index_object", unreachable)
    stack.sync_notifications()
    assert catalog.find(sha(images[1])) is not None
    assert catalog.find(sha(images[0])) is None


def test_a_crashing_incoming_drop_still_gets_its_result_and_its_neighbour_too(stack, empty_catalog, images, monkeypatch) -> None:
    bad, good = "incoming/a-crash.jpg", "incoming/b-fine.jpg"
    for key, body in ((bad, images[0]), (good, images[1])):
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    store = stack.services.store
    real = store.get

    def crash_on_bad(key: str, **kw):
        if key == bad:
            raise ValueError("a decoder defect")
        return real(key, **kw)

    monkeypatch.setattr(store, "get", crash_on_bad)
    out = stack.invoke("SearchTriggerFunction", s3_event(("ObjectCreated:Put", bad), ("ObjectCreated:Put", good)))
    monkeypatch.setattr(store, "get", real)
    assert out["results"] == [layout.result_key(bad), layout.result_key(good)]
    failed = json.loads(store.get(layout.result_key(bad)))
    assert failed["error"] == "internal_error" and failed["source_key"] == bad
    assert "results" in json.loads(store.get(layout.result_key(good)))


# --- damaged records ---------------------------------------------------------------------

DAMAGED = {
    "not-json": b"{\"id\": ",
    "not-utf8": b"\xff\xfe\x00garbage",
    "a-list": b"[]",
    "missing-fields": b"{\"id\": \"%s\"}",
    "wrong-types": b"{\"id\": \"%s\", \"key\": 5, \"format\": \"jpeg\", \"width\": \"wide\", \"height\": 1, \"bytes\": 1}",
    "bool-size": b"{\"id\": \"%s\", \"key\": \"k\", \"format\": \"jpeg\", \"width\": true, \"height\": 1, \"bytes\": 1}",
}


@pytest.mark.parametrize("damage", sorted(DAMAGED))
def test_a_damaged_record_is_reported_and_can_still_be_deleted(damage, stack, api: Client, empty_catalog, images) -> None:
    ids = [sha(d) for d in images[:3]]
    for data in images[:3]:
        assert api.post("/images", data, "image/jpeg").status == 201
    victim = sorted(ids)[1]
    body = DAMAGED[damage].replace(b"%s", victim.encode())
    stack.s3.put_object(Bucket=stack.bucket, Key=layout.record_key(victim), Body=body)

    page = api.get("/images?limit=2")
    assert page.status == 200, page.body
    assert [r["id"] for r in page.body["images"]] == [sorted(ids)[0]]
    assert [d["id"] for d in page.body["damaged"]] == [victim] and page.body["next_cursor"] == victim
    rest = api.get(f"/images?limit=2&cursor={victim}")
    assert [r["id"] for r in rest.body["images"]] == [sorted(ids)[2]] and rest.body["damaged"] == []
    assert [d["id"] for d in empty_catalog.damaged_records()] == [victim]

    one = api.get(f"/images/{victim}")
    assert one.status == 409 and one.body["error"] == "damaged_record"
    assert layout.record_key(victim) in one.body["message"]

    assert api.delete(f"/images/{victim}").body == {"deleted": victim}
    assert api.get(f"/images/{victim}").status == 404
    assert state(stack, victim) == GONE
    assert sorted(r["id"] for r in api.get("/images").body["images"]) == sorted(i for i in ids if i != victim)
    assert empty_catalog.damaged_records() == []


def test_adding_the_image_again_repairs_its_damaged_record(stack, api: Client, empty_catalog, images) -> None:
    data = images[0]
    image_id = sha(data)
    assert api.post("/images", data, "image/jpeg").status == 201
    stack.s3.put_object(Bucket=stack.bucket, Key=layout.record_key(image_id), Body=b"\x00")
    again = api.post("/images", data, "image/jpeg")
    assert again.status == 201, again.body
    assert api.get(f"/images/{image_id}").status == 200 and state(stack, image_id) == PRESENT


def test_a_removed_event_for_a_damaged_record_removes_it(stack, empty_catalog, images) -> None:
    key = "catalog/drops/damaged.jpg"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=images[1])
    image_id = stack.invoke("IndexFunction", s3_event(("ObjectCreated:Put", key)))["indexed"][0]["id"]
    stack.s3.put_object(Bucket=stack.bucket, Key=layout.record_key(image_id), Body=b"{")
    stack.s3.delete_object(Bucket=stack.bucket, Key=key)
    out = stack.invoke("IndexFunction", s3_event(("ObjectRemoved:Delete", key)))
    assert out["removed"] == [{"key": key, "id": image_id}]
    assert empty_catalog.damaged_records() == [] and not stack.services.store.exists(layout.pending_key(image_id))


class Slow:
    """A store whose every call first sleeps a few milliseconds (seeded), so two threads interleave."""

    def __init__(self, store, seed: int) -> None:
        self._store, self._rng, self._lock = store, random.Random(seed), threading.Lock()

    def __getattr__(self, name: str):
        real = getattr(self._store, name)
        if not callable(real):
            return real

        def call(*args, **kwargs):
            with self._lock:
                pause = self._rng.uniform(0, 0.01)
            time.sleep(pause)
            return real(*args, **kwargs)

        return call


def test_parallel_add_and_delete_with_store_latency_leave_a_whole_image_or_none(stack, empty_catalog, images) -> None:
    """The two-container race: an add and a delete of one image at once, 12 seeded trials."""
    data, config = images[3], stack.services.config
    image_id = sha(data)
    for seed in range(12):
        if empty_catalog.find(image_id) is None:
            empty_catalog.add(data)
        adder, deleter = Catalog(Slow(stack.services.store, seed), config), Catalog(Slow(stack.services.store, 100 + seed), config)
        head_start = (seed % 6) * 0.02  # the add lands early, midway or late in the delete

        def add_later(adder=adder, head_start=head_start) -> None:
            time.sleep(head_start)
            quietly(lambda: adder.add(data))()

        threads = [threading.Thread(target=add_later), threading.Thread(target=quietly(lambda: deleter.delete(image_id)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        now = state(stack, image_id)
        assert now in (PRESENT, GONE), (seed, now)
