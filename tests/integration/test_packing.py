"""Packing against real S3 semantics: grace periods, tombstones, re-adds, racing runs."""

import time

import numpy as np
import pytest

from pictrace.catalog import layout
from pictrace.catalog.packing import Manifest, pack
from pictrace.catalog.search import plan
from tests.conftest import jpeg, sample_bgr

GRACE = 100.0


def tile(i: int) -> bytes:
    """Distinct small real images: crops of a photograph."""
    img = sample_bgr("astronaut")
    y, x = divmod(i, 8)
    return jpeg(np.ascontiguousarray(img[y * 40 : y * 40 + 120, x * 40 : x * 40 + 120]))


def keys(store, prefix):
    return set(store.list(prefix))


@pytest.fixture
def catalog(empty_catalog, stack):
    # Clean slate for the index: drop everything packing left behind.
    store = empty_catalog.store
    pack(store, 5000, grace_seconds=0, now=time.time() + 10 * GRACE)
    return empty_catalog


def test_pending_rows_move_into_shards_and_are_cleaned_after_the_grace(catalog):
    store = catalog.store
    ids = [catalog.add(tile(i)).record.id for i in range(5)]
    t0 = time.time()
    report = pack(store, partition_rows=3, grace_seconds=GRACE, now=t0)
    assert (report.packed, report.partitions_written, report.swapped) == (5, 2, True)
    m = Manifest.load(store)
    assert sorted(s["count"] for s in m.partitions) == [2, 3]
    # inside the grace period the pending rows stay (an older plan may name them) ...
    assert len(keys(store, layout.PENDING)) == 5
    # ... but a new plan scores them from the shards only
    p = plan(catalog)
    assert all("partition" in b for b in p.batches) and p.candidates == 5
    pack(store, partition_rows=3, grace_seconds=GRACE, now=t0 + GRACE + 1)
    assert keys(store, layout.PENDING) == set()
    assert sorted(r for r in catalog.ids()) == sorted(ids)


def test_tail_shard_is_refilled_and_old_one_retired_later(catalog):
    store = catalog.store
    for i in range(2):
        catalog.add(tile(i))
    t0 = time.time()
    pack(store, partition_rows=4, grace_seconds=GRACE, now=t0)
    first = Manifest.load(store).partitions[0]["key"]
    catalog.add(tile(2))
    pack(store, partition_rows=4, grace_seconds=GRACE, now=t0 + 1)
    m = Manifest.load(store)
    assert [s["count"] for s in m.partitions] == [3] and first in m.retired
    assert store.exists(first)  # a search that read the old manifest can still load it
    pack(store, partition_rows=4, grace_seconds=GRACE, now=t0 + GRACE + 2)
    assert not store.exists(first)


def test_deleted_rows_leave_shards_and_tombstones_expire(catalog):
    store = catalog.store
    ids = [catalog.add(tile(i)).record.id for i in range(3)]
    t0 = time.time()
    pack(store, 5000, GRACE, now=t0)
    catalog.delete(ids[1])
    assert plan(catalog).exclude == [ids[1]]
    report = pack(store, 5000, GRACE, now=t0 + 1)
    assert report.dropped == 1
    pack(store, 5000, GRACE, now=t0 + GRACE + 2)
    assert keys(store, layout.TOMBSTONES) == set()
    assert plan(catalog).exclude == []
    from pictrace.core.partition import Partition

    live = {str(i) for s in Manifest.load(store).partitions for i in Partition.from_bytes(store.get(s["key"])).id_list()}
    assert live == {ids[0], ids[2]}


def test_readd_after_delete_is_not_lost_to_cleanup(catalog):
    store = catalog.store
    image_id = catalog.add(tile(7)).record.id
    t0 = time.time()
    pack(store, 5000, GRACE, now=t0)
    catalog.delete(image_id)
    catalog.add(tile(7))  # same bytes again: a new pending row, tombstone removed
    pack(store, 5000, GRACE, now=t0 + GRACE + 1)  # expires the *old* packed marker
    pack(store, 5000, GRACE, now=t0 + 3 * GRACE)
    p = plan(catalog)
    assert image_id not in p.exclude and p.candidates >= 1
    from pictrace.core.partition import Partition

    rows = [str(i) for s in Manifest.load(store).partitions for i in Partition.from_bytes(store.get(s["key"])).id_list()]
    pending = [layout.id_from(k, layout.PENDING) for k in keys(store, layout.PENDING)]
    assert image_id in rows + pending


def test_losing_a_manifest_race_leaves_no_orphans(catalog, monkeypatch):
    store = catalog.store
    catalog.add(tile(3))
    real_put = store.put

    def racing_put(key, data, **kw):
        if key == layout.MANIFEST:
            real_put(key, b'{"version": 2, "partitions": [], "packed": {}, "tombstoned": {}, "retired": {}}')
        return real_put(key, data, **kw)

    before = keys(store, layout.PARTITIONS)
    monkeypatch.setattr(store, "put", racing_put)
    report = pack(store, 5000, GRACE)
    monkeypatch.undo()
    assert report.swapped is False
    assert keys(store, layout.PARTITIONS) == before  # what it wrote was removed
    assert pack(store, 5000, GRACE).packed == 1  # the next run does the work
