"""The catalog: adding, listing, reading and deleting images in S3.

Adds are read-your-writes: when :meth:`Catalog.add` returns, the image's
features, record and a one-row *pending* shard are stored, and every search
lists the pending prefix.  Packing (``pictrace.catalog.packing``) later folds
pending rows into large shards.  A delete writes a tombstone first, so a
search that starts after the delete returned skips the image even while an
old shard still holds its row.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Iterator

from pictrace.adapters.s3 import PreconditionFailed, S3Store
from pictrace.catalog import layout
from pictrace.catalog.records import ImageRecord
from pictrace.config import Config
from pictrace.core.features import ImageFeatures, extract_features
from pictrace.core.probe import probe
from pictrace.core.shard import Shard
from pictrace.errors import BadRequest, NotFound, PayloadTooLarge

EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "bmp": "bmp", "tiff": "tif", "gif": "gif"}
CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "gif": "image/gif",
}


@dataclass(frozen=True)
class Added:
    record: ImageRecord
    created: bool  # False when identical bytes were already in the catalog


@dataclass(frozen=True)
class Page:
    records: list[ImageRecord]
    next_cursor: str | None
    total: int


class Catalog:
    def __init__(self, store: S3Store, config: Config) -> None:
        self.store = store
        self.config = config

    # --- adding -----------------------------------------------------------

    def add(
        self,
        data: bytes,
        *,
        name: str = "",
        image_url: str = "",
        page_url: str = "",
        key: str | None = None,
    ) -> Added:
        """Add image bytes; identical bytes return the existing record.

        Everything is validated and computed before the first write, so a
        failed add leaves the bucket as it was.  ``key`` names an original
        that is already stored (a catalog drop); otherwise the original is
        written to ``catalog/<sha256>.<ext>``.
        """
        if len(data) > self.config.max_image_bytes:
            raise PayloadTooLarge(
                f"image is {len(data)} bytes; the limit is {self.config.max_image_bytes}"
            )
        info = probe(data)
        features = extract_features(data, max_pixels=self.config.max_pixels)
        existing = self.find(features.sha256)
        if existing is not None:
            return Added(existing, created=False)
        record = ImageRecord(
            id=features.sha256,
            key=key or layout.original_key(features.sha256, EXTENSIONS[info.format]),
            format=info.format,
            width=features.width,
            height=features.height,
            bytes=len(data),
            name=name[:256],
            image_url=image_url,
            page_url=page_url,
        )
        return self._write(record, features, data if key is None else None)

    def _write(self, record: ImageRecord, features: ImageFeatures, original: bytes | None) -> Added:
        sha = record.id
        if original is not None:
            self.store.put(record.key, original, content_type=CONTENT_TYPES[record.format])
        self.store.put(layout.by_key_key(record.key), sha.encode(), content_type="text/plain")
        self.store.put(layout.features_key(sha), features.to_bytes())
        try:
            # Of two adds of the same bytes racing each other, exactly one creates the record.
            self.store.put(
                layout.record_key(sha), record.to_json(), content_type="application/json", if_none_match=True
            )
            created = True
        except PreconditionFailed:
            record, created = self.find(sha) or record, False
        # The pending row makes the image searchable; it goes last so that a
        # search never sees a row whose features are not stored yet.  Both
        # racing adds write it, so each caller can search as soon as it returns.
        pending = Shard.build([(features, record.shard_meta())])
        self.store.put(layout.pending_key(sha), pending.to_bytes())
        self.store.delete(layout.tombstone_key(sha))
        return Added(record, created=created)

    def index_object(self, key: str) -> Added:
        """Index an original that was dropped into ``catalog/`` (S3 ObjectCreated)."""
        if not key.startswith(layout.CATALOG):
            raise BadRequest(f"{key} is not under {layout.CATALOG}")
        try:
            known = self.store.get(layout.by_key_key(key)).decode()
        except NotFound:
            known = ""
        if known:
            record = self.find(known)
            if record is not None:
                return Added(record, created=False)
        data = self.store.get(key, max_bytes=self.config.max_image_bytes)
        name = key[len(layout.CATALOG):]
        return self.add(data, name=name, key=key)

    def forget_object(self, key: str) -> str | None:
        """Remove the image whose original was deleted from ``catalog/`` (ObjectRemoved)."""
        try:
            sha = self.store.get(layout.by_key_key(key)).decode()
        except NotFound:
            return None
        record = self.find(sha)
        if record is None or record.key != key:
            return None
        self.delete(sha, keep_original=True)
        return sha

    # --- reading ----------------------------------------------------------

    def find(self, image_id: str) -> ImageRecord | None:
        if not layout.is_image_id(image_id):
            return None
        try:
            return ImageRecord.from_json(self.store.get(layout.record_key(image_id)))
        except NotFound:
            return None

    def get(self, image_id: str) -> ImageRecord:
        if not layout.is_image_id(image_id):
            raise NotFound(f"no image {image_id!r}: ids are 64 hex characters (sha256)")
        record = self.find(image_id)
        if record is None:
            raise NotFound(f"no image {image_id}")
        return record

    def features(self, image_id: str) -> ImageFeatures:
        return ImageFeatures.from_bytes(self.store.get(layout.features_key(image_id)))

    def page(self, limit: int, cursor: str | None = None) -> Page:
        """Records in id order, ``limit`` at a time, with the catalog's total size."""
        if not 1 <= limit <= self.config.list_page_max:
            raise BadRequest(f"limit must be between 1 and {self.config.list_page_max}")
        if cursor is not None and not layout.is_image_id(cursor):
            raise BadRequest("cursor must be an image id from a previous page")
        after = layout.record_key(cursor) if cursor else ""
        keys = list(self.store.list(layout.RECORDS, start_after=after, limit=limit + 1))
        records = []
        for key in keys[:limit]:
            try:
                records.append(ImageRecord.from_json(self.store.get(key)))
            except NotFound:
                continue  # deleted while we listed
        more = len(keys) > limit
        next_cursor = records[-1].id if more and records else None
        return Page(records, next_cursor, self.count())

    def count(self) -> int:
        return sum(1 for _ in self.store.list(layout.RECORDS))

    def ids(self) -> Iterator[str]:
        for key in self.store.list(layout.RECORDS):
            yield layout.id_from(key, layout.RECORDS)

    def image_url(self, record: ImageRecord) -> str:
        """A short-lived URL to the stored original."""
        return self.store.presign_get(record.key, self.config.presign_ttl)

    # --- deleting ---------------------------------------------------------

    def delete(self, image_id: str, *, keep_original: bool = False) -> ImageRecord:
        record = self.get(image_id)
        # Tombstone first: from here on no search returns the image.
        # A unique body gives each tombstone its own ETag (see packing).
        self.store.put(layout.tombstone_key(image_id), uuid.uuid4().hex.encode(), content_type="text/plain")
        self.store.delete(layout.pending_key(image_id))
        self.store.delete(layout.record_key(image_id))
        self.store.delete(layout.features_key(image_id))
        self.store.delete(layout.by_key_key(record.key))
        if not keep_original:
            self.store.delete(record.key)
        return record

    def tombstones(self) -> set[str]:
        return {layout.id_from(k, layout.TOMBSTONES) for k in self.store.list(layout.TOMBSTONES)}

    # --- uploads and queries ----------------------------------------------

    def create_upload(self, content_type: str) -> dict:
        """A presigned PUT for an image too large for a request body."""
        if not content_type.startswith("image/"):
            raise BadRequest("content_type must be an image/* type")
        key = layout.new_upload_key()
        return {
            "s3_key": key,
            "url": self.store.presign_put(key, self.config.presign_ttl, content_type),
            "method": "PUT",
            "headers": {"Content-Type": content_type},
            "expires_in": self.config.presign_ttl,
            "max_bytes": self.config.max_image_bytes,
        }

    def read_upload(self, key: str) -> bytes:
        if not layout.is_upload_key(key):
            raise BadRequest("s3_key must be a key returned by POST /uploads")
        try:
            return self.store.get(key, max_bytes=self.config.max_image_bytes)
        except NotFound:
            raise NotFound(f"nothing was uploaded to {key} (or the upload expired)") from None

    def store_query(self, data: bytes, features: ImageFeatures) -> str:
        sha = features.sha256
        self.store.put(layout.query_key(sha), data)
        self.store.put(layout.query_features_key(sha), features.to_bytes())
        return layout.query_key(sha)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
