"""Migration: an index of the format before partitions gets a clear error, and `pictrace reindex` rebuilds it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from pictrace.adapters.folder_store import FolderStore
from pictrace.catalog import layout
from pictrace.catalog.catalog import Catalog
from pictrace.catalog.packing import Manifest
from pictrace.catalog.reindex import reindex
from pictrace.catalog.search import plan
from pictrace.config import Config
from pictrace.core.partition import Partition
from pictrace.errors import CorruptShard
from tests.conftest import jpeg, sample_bgr

OLD_MANIFEST = {"version": 1, "shards": [{"key": "index/shards/old.npz", "count": 2}], "packed": {}, "tombstoned": {}, "retired": {}}


@pytest.fixture
def old_catalog(tmp_path):
    """A catalog whose images are stored but whose index is of the earlier format."""
    store = FolderStore(tmp_path / "store")
    catalog = Catalog(store, Config(bucket="local"))
    ids = [catalog.add(jpeg(sample_bgr(n)), name=n).record.id for n in ("coffee", "rocket", "camera")]
    catalog.delete(ids[2])
    for key in list(store.list(layout.PENDING)):
        store.delete(key)
    store.put(layout.MANIFEST, json.dumps(OLD_MANIFEST).encode())
    store.put("index/shards/old.npz", b"an old shard")
    return tmp_path, store, catalog, ids[:2]


def test_an_old_index_is_a_clear_error(old_catalog):
    _, _, catalog, _ = old_catalog
    with pytest.raises(CorruptShard, match="pictrace reindex"):
        plan(catalog)


def test_reindex_rebuilds_partitions_from_the_stored_features(old_catalog):
    _, store, catalog, live = old_catalog
    report = reindex(catalog)
    assert report.images == 2 and report.damaged == [] and report.old_shards_removed == 1
    manifest = Manifest.load(store)
    ids = {i for p in manifest.partitions for i in Partition.from_bytes(store.get(p["key"])).id_list()}
    assert ids == set(live)
    assert list(store.list(layout.SHARDS)) == []
    assert len(plan(catalog).batches) == 1 and plan(catalog).candidates == 2
    again = reindex(catalog)  # harmless to repeat
    assert again.images == 2 and {p["count"] for p in Manifest.load(store).partitions} == {2}


def test_damaged_features_are_reported_and_left_out(old_catalog):
    _, store, catalog, live = old_catalog
    store.put(layout.features_key(live[0]), b"not features")
    report = reindex(catalog)
    assert report.images == 1 and report.damaged == [layout.features_key(live[0])]


def test_the_command_reindexes_a_data_folder(old_catalog):
    folder, store, _, live = old_catalog
    out = subprocess.run(
        [sys.executable, "-m", "pictrace", "reindex", "--data", str(folder), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["images"] == 2
    missing = subprocess.run(
        [sys.executable, "-m", "pictrace", "reindex", "--data", str(folder / "nowhere")],
        capture_output=True, text=True, timeout=120,
    )
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1


def test_reindex_makes_the_thumbnails_of_images_catalogued_before_them(old_catalog):
    _, store, catalog, live = old_catalog
    old = catalog.get(live[0])
    store.put(layout.record_key(old.id), dataclasses.replace(old, thumb="").to_json())
    store.delete(layout.thumb_key(old.id))
    assert catalog.thumb_url(catalog.get(old.id)) is None

    report = reindex(catalog)
    assert report.thumbnails_made == 1
    record = catalog.get(old.id)
    assert record.thumb == layout.thumb_key(old.id) and record.etag == old.etag
    assert store.get(record.thumb)[:3] == b"\xff\xd8\xff"  # a JPEG
    assert reindex(catalog).thumbnails_made == 0  # made once


def test_reindex_fills_the_embeddings_of_images_stored_without_them(old_catalog):
    _, store, catalog, live = old_catalog
    sha = live[0]
    bare = dataclasses.replace(catalog.features(sha), embedding=None, semantic=None, labels=())
    store.put(layout.features_key(sha), bare.to_bytes())
    store.put(layout.record_key(sha), dataclasses.replace(catalog.get(sha), labels=[]).to_json())

    report = reindex(catalog)
    assert report.embeddings_made == 1
    features, record = catalog.features(sha), catalog.get(sha)
    assert features.embedding is not None and features.labels
    assert [x["label"] for x in record.labels] == [name for name, _ in features.labels]
    rows = {r.sha256: r for p in Manifest.load(store).partitions for r in Partition.from_bytes(store.get(p["key"])).rows()}
    assert rows[sha].semantic.any() and len(rows[sha].tags) == len(features.labels)
    assert reindex(catalog).embeddings_made == 0  # made once
