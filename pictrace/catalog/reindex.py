"""Rebuilding the index of a catalog in the current format (``pictrace reindex``).

The originals, records and detail features stay; what a search reads is
made again from the detail features: one pending row per live image, a new
empty manifest, then a pack run that folds the rows into partitions.  Shards
of an earlier format are deleted.  Run it with the catalog quiet (no adds,
deletes or pack runs at the same time); running it twice is harmless.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from pictrace.catalog import layout
from pictrace.catalog.catalog import Catalog
from pictrace.catalog.packing import MANIFEST_VERSION, pack
from pictrace.core.features import ImageFeatures
from pictrace.errors import CorruptShard, DamagedRecord, NotFound

_THREADS = 16


@dataclass(frozen=True)
class ReindexReport:
    images: int  # rows written
    damaged: list[str]  # records or features that could not be read (their images stay out of search)
    old_shards_removed: int
    partitions_written: int

    def to_dict(self) -> dict:
        return asdict(self)


def reindex(catalog: Catalog) -> ReindexReport:
    """Rebuild ``catalog``'s phase-1 index from its detail features."""
    store, config = catalog.store, catalog.config
    ids = list(catalog.ids())
    tombstoned = catalog.tombstones()

    def one(sha: str) -> str | None:
        key = layout.features_key(sha)
        try:
            features = ImageFeatures.from_bytes(store.get(key))
        except (NotFound, CorruptShard):
            return key
        try:
            record = catalog.find(sha)
        except DamagedRecord:
            return layout.record_key(sha)
        if record is None:
            return None  # deleted meanwhile
        store.put(layout.pending_key(sha), catalog._pending_row(features, record))
        return None

    live = [sha for sha in ids if sha not in tombstoned]
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        damaged = [key for key in pool.map(one, live) if key]
    fresh = {"version": MANIFEST_VERSION, "partitions": [], "packed": {}, "tombstoned": {}, "retired": {}}
    store.put(layout.MANIFEST, json.dumps(fresh, sort_keys=True).encode(), content_type="application/json")
    old = list(store.list(layout.SHARDS)) + list(store.list(layout.PARTITIONS))
    store.delete_many(old)
    report = pack(store, config.partition_rows, config.pack_grace_seconds)
    return ReindexReport(len(live) - len(damaged), damaged, len(old), report.partitions_written)
