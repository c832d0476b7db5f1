"""A damaged manifest or partition hides as little as possible, and says so."""

from __future__ import annotations

import pytest

from pictrace.adapters.folder_store import FolderStore
from pictrace.catalog import layout
from pictrace.catalog.batch import ShardCache, score_batch
from pictrace.catalog.catalog import Catalog
from pictrace.catalog.packing import Manifest, pack
from pictrace.catalog.search import search
from pictrace.config import Config
from pictrace.errors import OutdatedIndex, PicTraceError, ScoringFailed
from tests.conftest import jpeg, sample_bgr

NAMES = ("coffee", "rocket", "camera", "astronaut")


class InProcess:
    """The scoring function's work, called in this process (what each invocation runs)."""

    def __init__(self, store) -> None:
        self.store, self.cache = store, ShardCache()

    def map(self, payloads, reserve=0.0):
        out = []
        for p in payloads:
            try:
                out.append(score_batch(self.store, p, self.cache))
            except PicTraceError as exc:
                out.append(ScoringFailed(str(exc)))
        return out


@pytest.fixture
def packed(tmp_path):
    store = FolderStore(tmp_path / "store")
    config = Config(bucket="local", partition_rows=3)
    catalog = Catalog(store, config)
    ids = {n: catalog.add(jpeg(sample_bgr(n)), name=n).record.id for n in NAMES}
    pack(store, 3, 0.0)
    return store, catalog, ids


def find(catalog, store, name: str) -> dict:
    return search(catalog, InProcess(store), jpeg(sample_bgr(name)[20:-20, 20:-20]), k=4)


def test_a_damaged_manifest_still_lets_searches_find_every_image(packed):
    store, catalog, ids = packed
    store.put(layout.MANIFEST, b"{not json")
    body = find(catalog, store, "rocket")
    assert body["results"][0]["id"] == ids["rocket"]
    assert {r["id"] for r in body["results"]} == set(ids.values())
    assert body["partial"] is True and layout.MANIFEST in body["damaged_objects"]


def test_a_deleted_image_does_not_come_back_through_a_damaged_manifest(packed):
    store, catalog, ids = packed
    catalog.delete(ids["camera"])
    pack(store, 3, 0.0)  # rewrites its partition; the old one is retired, not yet cleaned
    store.put(layout.MANIFEST, b"{not json")
    body = find(catalog, store, "camera")
    assert ids["camera"] not in {r["id"] for r in body["results"]}


def test_a_damaged_partition_fails_its_batch_and_packing_goes_on(packed):
    store, catalog, ids = packed
    bad = Manifest.load(store).partitions[-1]["key"]
    store.put(bad, b"PK\x03\x04 not a partition")
    body = find(catalog, store, "coffee")
    assert body["partial"] is True and [f["batch"] for f in body["failed_batches"]] == [{"partition": bad}]
    added = catalog.add(jpeg(sample_bgr("chelsea")), name="chelsea").record.id
    report = pack(store, 3, 0.0)
    assert report.swapped and bad in report.damaged
    assert bad in [p["key"] for p in Manifest.load(store).partitions]
    assert find(catalog, store, "chelsea")["results"][0]["id"] == added


def test_an_index_of_an_earlier_format_is_a_409_naming_reindex(packed):
    store, catalog, _ = packed
    store.put(layout.MANIFEST, b'{"version": 1, "shards": [], "packed": {}, "tombstoned": {}, "retired": {}}')
    with pytest.raises(OutdatedIndex, match="pictrace reindex") as caught:
        find(catalog, store, "coffee")
    assert caught.value.status == 409


def test_packing_leaves_a_damaged_manifest_alone_and_reindex_repairs_it(packed):
    from pictrace.catalog.reindex import reindex
    from pictrace.errors import CorruptShard

    store, catalog, ids = packed
    store.put(layout.MANIFEST, b"{not json")
    added = catalog.add(jpeg(sample_bgr("chelsea")), name="chelsea").record.id
    # Packing cannot know what is packed: it refuses, naming the object, and writes nothing.
    before = store.list_etags("index/")
    with pytest.raises(CorruptShard) as caught:
        pack(store, 3, 0.0)
    assert caught.value.details["object"] == layout.MANIFEST
    assert store.list_etags("index/") == before
    # The new image is searchable meanwhile, from its pending row.
    assert find(catalog, store, "chelsea")["results"][0]["id"] == added
    reindex(catalog)
    body = search(catalog, InProcess(store), jpeg(sample_bgr("rocket")), k=10)
    assert body["partial"] is False and body["results"][0]["id"] == ids["rocket"]
    assert {r["id"] for r in body["results"]} == {*ids.values(), added}
