"""Rebuilding the index of a catalog in the current format (``pictrace reindex``).

The originals, records and detail features stay; what a search reads is
made again from the detail features: one pending row per live image, a new
empty manifest, then a pack run that folds the rows into partitions.  Shards
of an earlier format are deleted.  Images catalogued before thumbnails get
theirs, and images whose features lack a looks-like embedding (stored before
embeddings, or while the model was missing) get it, with their labels: both
are made from the original (the only steps that read originals).  Run it with the catalog quiet (no adds,
deletes or pack runs at the same time); running it twice is harmless.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace

from pictrace.catalog import layout
from pictrace.catalog.catalog import Catalog
from pictrace.catalog.packing import MANIFEST_VERSION, pack
from pictrace.catalog.records import ImageRecord, labels_json
from pictrace.core.decode import decode
from pictrace.core.features import DECODE_SIDE, ImageFeatures, looks_like
from pictrace.core.thumbnail import CONTENT_TYPE, make_thumbnail
from pictrace.errors import CorruptShard, DamagedRecord, InvalidImage, NotFound, PayloadTooLarge

_THREADS = 16


@dataclass(frozen=True)
class ReindexReport:
    images: int  # rows written
    damaged: list[str]  # records or features that could not be read (their images stay out of search)
    old_shards_removed: int
    partitions_written: int
    thumbnails_made: int = 0  # for images catalogued before thumbnails
    embeddings_made: int = 0  # for images whose features had no looks-like embedding


    def to_dict(self) -> dict:
        return asdict(self)


def reindex(catalog: Catalog) -> ReindexReport:
    """Rebuild ``catalog``'s phase-1 index from its detail features."""
    store, config = catalog.store, catalog.config
    ids = list(catalog.ids())
    tombstoned = catalog.tombstones()

    made: list[str] = []
    embedded: list[str] = []

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
        if features.embedding is None:
            features, record, done = add_embedding(catalog, record, features)
            if done:
                embedded.append(sha)
        store.put(layout.pending_key(sha), catalog._pending_row(features, record))
        if not record.thumb and add_thumbnail(catalog, record):
            made.append(sha)
        return None

    live = [sha for sha in ids if sha not in tombstoned]
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        damaged = [key for key in pool.map(one, live) if key]
    fresh = {"version": MANIFEST_VERSION, "partitions": [], "packed": {}, "tombstoned": {}, "retired": {}}
    store.put(layout.MANIFEST, json.dumps(fresh, sort_keys=True).encode(), content_type="application/json")
    old = list(store.list(layout.SHARDS)) + list(store.list(layout.PARTITIONS))
    store.delete_many(old)
    report = pack(store, config.partition_rows, config.pack_grace_seconds)
    return ReindexReport(len(live) - len(damaged), damaged, len(old), report.partitions_written, len(made), len(embedded))


def add_embedding(catalog: Catalog, record: ImageRecord, features: ImageFeatures) -> tuple[ImageFeatures, ImageRecord, bool]:
    """Give an image's stored features its looks-like embedding and its record the labels, from the original.

    Returns the features and record as they now are, and whether they
    changed: without the model, or when the original cannot be read, both
    stay as they were (the image is still found by copy detection).
    """
    store, config = catalog.store, catalog.config
    try:
        data = store.get(record.key, max_bytes=config.max_image_bytes)
        image = decode(data, max_pixels=config.max_pixels, max_side=DECODE_SIDE)
    except (NotFound, PayloadTooLarge, InvalidImage):
        return features, record, False
    extra = looks_like(image)
    if not extra:
        return features, record, False
    features = replace(features, **extra)
    record = replace(record, labels=labels_json(features.labels))
    store.put(layout.features_key(record.id), features.to_bytes())
    store.put(layout.record_key(record.id), record.to_json(), content_type="application/json")
    return features, record, True


def add_thumbnail(catalog: Catalog, record: ImageRecord) -> bool:
    """Make the thumbnail of an image catalogued before thumbnails; False if its original cannot give one.

    The record is rewritten with the thumbnail's key, which is why reindex
    wants the catalog quiet: an add or delete of the same image at that
    instant could be undone.
    """
    store, config = catalog.store, catalog.config
    try:
        data = store.get(record.key, max_bytes=config.max_image_bytes)
        image = decode(data, max_pixels=config.max_pixels, max_side=DECODE_SIDE)
    except (NotFound, PayloadTooLarge, InvalidImage):
        return False  # the search index does not need it; the answer just has no thumb_url
    key = layout.thumb_key(record.id)
    store.put(key, make_thumbnail(image), content_type=CONTENT_TYPE)
    store.put(layout.record_key(record.id), replace(record, thumb=key).to_json(), content_type="application/json")
    return True
