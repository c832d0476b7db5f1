"""Concurrent adds, deletes, searches and packing: nothing lost, nothing deleted comes back.

Phase one sends 500 adds at once through the HTTP API (32 client threads):
400 distinct images cut from real photographs plus 100 repeats of some of
them, shuffled so that repeats race their originals.  Phase two races 60 new
adds (and 20 repeats of them), 80 deletes -- 20 of them followed at once by a
re-add of the same image -- and a few searches against two threads that
run the packing function in a loop, with a small partition size and a short
grace period so that partitions are rewritten and old objects cleaned up while
everything else is going on; one loop calls the packing function, the
other calls ``pack`` directly so that two runs race for the manifest.

Afterwards the catalog must hold exactly the images that should survive:
listed once each, indexed in exactly one place (a live partition or a pending
row), each its own best match when searched with its own bytes; a deleted
image is neither listed nor found, even after packing cleaned up.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import pytest

from pictrace import runtime
from pictrace.catalog import layout
from pictrace.catalog.packing import pack
from pictrace.catalog.search import plan
from pictrace.core.partition import Partition
from tests.conftest import Client, Reply
from tests.hostile.corpus import variants

pytestmark = pytest.mark.slow

WORKERS = 32
DISTINCT, REPEATS = 400, 100
NEW, NEW_REPEATS, DELETED, READDED, SEARCHES = 60, 20, 80, 20, 20
GRACE = 3
SETTINGS = {
    "PICTRACE_PARTITION_ROWS": "150",
    "PICTRACE_PACK_GRACE_SECONDS": str(GRACE),
    # Every search here looks for an exact copy, which always heads the cheap
    # first ranking; a short shortlist keeps ~500 searches affordable.
    "PICTRACE_SHORTLIST": "4",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_all(tasks: list[Callable[[], object]], workers: int = WORKERS) -> list:
    """Run every task on a thread pool; results in task order (exceptions propagate)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [f.result() for f in [pool.submit(t) for t in tasks]]


def listed_ids(api: Client) -> list[str]:
    """Every id GET /images lists, page by page, in order."""
    ids: list[str] = []
    cursor = ""
    while True:
        reply = api.get(f"/images?limit=97{'&cursor=' + cursor if cursor else ''}")
        assert reply.status == 200, reply.body
        ids += [r["id"] for r in reply.body["images"]]
        cursor = reply.body["next_cursor"]
        if not cursor:
            return ids


def indexed_ids(stack) -> Counter[str]:
    """How many times each id would be scored by a search starting now (tombstoned ids excluded)."""
    the_plan = plan(stack.services.catalog)
    gone = set(the_plan.exclude)
    counts: Counter[str] = Counter()
    for batch in the_plan.batches:
        if "partition" in batch:
            ids = Partition.from_bytes(stack.services.store.get(batch["partition"])).id_list()
        else:
            ids = [layout.id_from(k, layout.PENDING) for k in batch["pending"]]
        counts.update(i for i in ids if i not in gone)
    return counts


@pytest.mark.slow
def test_a_readd_packed_while_its_old_tombstone_is_still_listed_is_not_lost(stack, api, empty_catalog, monkeypatch) -> None:
    """The interleaving the race below once hit, made deterministic.

    A re-add writes the pending row and then lifts the tombstone of the
    earlier delete.  A pack run in between sees the row and the tombstone at
    once: it must not drop the row for good.
    """
    data = variants(1, seed=23)[0]
    image_id = sha(data)
    assert api.post("/images", data, "image/jpeg").status == 201
    stack.pack_now()
    assert api.delete(f"/images/{image_id}").status == 200

    store = stack.services.store
    real_delete = store.delete

    def pack_first(key: str) -> None:
        if key == layout.tombstone_key(image_id):
            pack(store, 5000, 0.5)  # the row is pending, the tombstone still listed
        real_delete(key)

    monkeypatch.setattr(store, "delete", pack_first)
    assert api.post("/images", data, "image/jpeg").status == 201
    monkeypatch.setattr(store, "delete", real_delete)

    for _ in range(3):  # later runs, past the grace period, clean up
        time.sleep(0.6)
        pack(store, 5000, 0.5)
        assert indexed_ids(stack) == Counter({image_id: 1})
    reply = api.post("/search?k=1", data, "image/jpeg")
    assert [r["id"] for r in reply.body["results"]] == [image_id]


@pytest.fixture(scope="module")
def settings(stack) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in SETTINGS.items():
            mp.setenv(k, v)
        runtime.services.cache_clear()
        yield
    runtime.services.cache_clear()


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return variants(DISTINCT + NEW, seed=11)


@pytest.fixture(scope="module")
def loaded(stack, settings, images) -> dict:
    """Phase one: the 500 concurrent adds into an empty catalog."""
    cat = stack.services.catalog
    for image_id in list(cat.ids()):
        cat.delete(image_id)
    stack.pack_now()
    api = Client(stack.api_url)
    first = images[:DISTINCT]
    rng = random.Random(5)
    sends = first + rng.sample(first, REPEATS)
    rng.shuffle(sends)
    replies = run_all([lambda d=d: (d, api.post("/images", d, "image/jpeg")) for d in sends])
    yield {"sent": replies, "ids": {sha(d) for d in first}}
    for image_id in list(cat.ids()):
        cat.delete(image_id)


def test_500_concurrent_adds_keep_every_image_exactly_once(stack, api, loaded) -> None:
    created: Counter[str] = Counter()
    for data, reply in loaded["sent"]:
        assert reply.status in (200, 201), reply.body
        assert reply.body["ids"] == [sha(data)]
        created[sha(data)] += reply.body["images"][0]["created"]
    # However the repeats raced, exactly one add of each image created it.
    assert set(created) == loaded["ids"] and set(created.values()) == {1}

    listed = listed_ids(api)
    assert len(listed) == len(set(listed)) == DISTINCT
    assert set(listed) == loaded["ids"]
    assert api.get("/images?limit=1").body["total"] == DISTINCT
    store = stack.services.store
    assert {layout.id_from(k, layout.RECORDS) for k in store.list(layout.RECORDS)} == loaded["ids"]
    assert {layout.id_from(k, layout.FEATURES) for k in store.list(layout.FEATURES)} == loaded["ids"]
    assert indexed_ids(stack) == Counter({i: 1 for i in loaded["ids"]})


def test_adds_deletes_and_packing_racing_lose_nothing_and_resurrect_nothing(stack, api, loaded, images) -> None:
    rng = random.Random(9)
    old = images[:DISTINCT]
    new = images[DISTINCT:]
    doomed = rng.sample(old, DELETED)
    readded = doomed[:READDED]
    probes = rng.sample([d for d in old if d not in doomed], SEARCHES)

    def delete(data: bytes, again: bool) -> list[Reply]:
        out = [api.delete(f"/images/{sha(data)}")]
        if again:
            out.append(api.post("/images", data, "image/jpeg"))
        return out

    tasks: list[Callable[[], list[Reply]]] = [
        *[lambda d=d: [api.post("/images", d, "image/jpeg")] for d in new + rng.sample(new, NEW_REPEATS)],
        *[lambda d=d: delete(d, d in readded) for d in doomed],
        *[lambda d=d: [api.post("/search?k=1", d, "image/jpeg")] for d in probes],
    ]
    rng.shuffle(tasks)

    stop = threading.Event()
    pack_errors: list[BaseException] = []
    pack_runs = Counter()
    store, config = stack.services.store, stack.services.config

    def pack_loop(run_once: Callable[[], dict]) -> None:
        while not stop.is_set():
            try:
                report = run_once()
                pack_runs["swapped" if report["swapped"] else "idle"] += 1
            except BaseException as exc:  # noqa: BLE001 -- reported below
                pack_errors.append(exc)

    # The packing function, and a second run racing it for the manifest (as
    # an overlapping scheduled run would on AWS).
    direct = lambda: asdict(pack(store, config.partition_rows, config.pack_grace_seconds))  # noqa: E731
    packers = [threading.Thread(target=pack_loop, args=(run,)) for run in (stack.pack_now, direct)]
    for t in packers:
        t.start()
    try:
        outcomes = run_all(tasks)
    finally:
        stop.set()
        for t in packers:
            t.join()

    assert pack_errors == []
    assert pack_runs["swapped"] > 0
    for replies in outcomes:
        for reply in replies:
            assert reply.status in (200, 201), reply.body

    # Let the grace period pass so packing also deletes what it retired, twice over.
    for _ in range(2):
        time.sleep(GRACE + 0.5)
        stack.pack_now()

    gone = {sha(d) for d in doomed[READDED:]}
    alive = (loaded["ids"] - gone) | {sha(d) for d in new}
    listed = listed_ids(api)
    assert len(listed) == len(set(listed)) and set(listed) == alive
    assert indexed_ids(stack) == Counter({i: 1 for i in alive})

    def absent(data: bytes) -> None:
        assert api.get(f"/images/{sha(data)}").status == 404
        reply = api.post("/search?k=5", data, "image/jpeg")
        assert reply.status == 200 and not reply.body["partial"], reply.body
        assert sha(data) not in {r["id"] for r in reply.body["results"]}

    def found(data: bytes) -> None:
        reply = api.post("/search?k=1", data, "image/jpeg")
        assert reply.status == 200 and not reply.body["partial"], reply.body
        assert [r["id"] for r in reply.body["results"]] == [sha(data)]

    by_id = {sha(d): d for d in images}
    run_all([lambda d=by_id[i]: absent(d) for i in gone], workers=4)
    run_all([lambda d=by_id[i]: found(d) for i in sorted(alive)], workers=4)
