"""The catalog: adding, listing, reading and deleting images in S3.

Adds are read-your-writes: when :meth:`Catalog.add` returns, the image's
features, record and a one-row *pending* shard are stored, and every search
lists the pending prefix.  Packing (``pictrace.catalog.packing``) later folds
pending rows into large shards.  A delete writes a tombstone first, so a
search that starts after the delete returned skips the image even while an
old shard still holds its row.

Races between an add and a delete of the same image (two API containers, or
an API call and a late S3 notification) converge: the record decides.  A
delete removes every other object first and the record last, with a
conditional delete of the version it read; an add that wrote a record ends by
making the other objects agree with whatever the record is then
(:meth:`Catalog._settle`).  A damaged record is reported, never fatal to a
page, and DELETE of its id still removes what belongs to it.
"""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Iterator

from pictrace.adapters.s3 import PreconditionFailed, S3Store
from pictrace.catalog import layout
from pictrace.catalog.records import ImageRecord, labels_json
from pictrace.config import Config
from pictrace.core.features import ImageFeatures
from pictrace.core.filters import Filter, check_meta, meta_tags
from pictrace.core.probe import probe
from pictrace.core.compact import index_row
from pictrace.core.partition import Partition
from pictrace.core.thumbnail import CONTENT_TYPE as THUMB_CONTENT_TYPE
from pictrace.core.thumbnail import features_and_thumbnail
from pictrace.errors import BadRequest, Conflict, DamagedRecord, NotFound, PayloadTooLarge

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
    damaged: list[dict] = field(default_factory=list)  # {"id", "key", "reason"} of records skipped


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
        etag: str = "",
        meta: dict | None = None,
    ) -> Added:
        """Add image bytes; identical bytes return the existing record.

        Everything is validated and computed before the first write, so a
        failed add leaves the bucket as it was.  ``key`` names an original
        that is already stored (a catalog drop, whose ETag is ``etag``);
        otherwise the original is written to ``catalog/<sha256>.<ext>``.  A
        damaged record of the same bytes is replaced.  ``meta`` is the
        client's own fields (:func:`pictrace.core.filters.check_meta`); bytes
        already in the catalog keep theirs (:meth:`set_meta` changes it).
        """
        meta = check_meta({} if meta is None else meta)
        if len(data) > self.config.max_image_bytes:
            raise PayloadTooLarge(
                f"image is {len(data)} bytes; the limit is {self.config.max_image_bytes}"
            )
        # Known bytes are answered from their record: decoding them again
        # would only rebuild the same features.
        existing = self._readable(sha256(data))
        if existing is not None:
            return Added(existing, created=False)
        info = probe(data)
        features, thumb = features_and_thumbnail(data, max_pixels=self.config.max_pixels)
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
            etag=etag,
            thumb=layout.thumb_key(features.sha256),
            labels=labels_json(features.labels),
            meta=meta,
        )
        return self._write(record, features, data if key is None else None, thumb)

    def _write(self, record: ImageRecord, features: ImageFeatures, original: bytes | None, thumb: bytes) -> Added:
        sha = record.id
        if original is not None:
            etag = self.store.put(record.key, original, content_type=CONTENT_TYPES[record.format])
            record = replace(record, etag=etag)
        self.store.put(layout.by_key_key(record.key), sha.encode(), content_type="text/plain")
        self.store.put(layout.features_key(sha), features.to_bytes())
        self.store.put(layout.thumb_key(sha), thumb, content_type=THUMB_CONTENT_TYPE)
        try:
            # Of two adds of the same bytes racing each other, exactly one creates the record.
            self.store.put(
                layout.record_key(sha), record.to_json(), content_type="application/json", if_none_match=True
            )
            created = True
        except PreconditionFailed:
            existing = self._readable(sha)
            if existing is None:  # damaged, or deleted this instant: this add stands
                self.store.put(layout.record_key(sha), record.to_json(), content_type="application/json")
                created = True
            else:
                record, created = existing, False
        # The pending row makes the image searchable; it goes last so that a
        # search never sees a row whose features are not stored yet.  Both
        # racing adds write it, so each caller can search as soon as it returns.
        self.store.put(layout.pending_key(sha), self._pending_row(features, record))
        self.store.delete(layout.tombstone_key(sha))
        self._settle(record, features, original, thumb)
        return Added(record, created=created)

    @staticmethod
    def _pending_row(features: ImageFeatures, record: ImageRecord) -> bytes:
        """The one-row pending partition that makes ``record`` searchable.

        Each write is a new object with its own ETag, even for the same
        image: packing tells a re-added row from the one it already packed
        (and then dropped for a delete) by that ETag.  Its filter tags come
        from the record's meta.
        """
        return Partition.build([index_row(features, tags=meta_tags(record.meta))]).to_bytes(nonce=uuid.uuid4().hex)

    def _settle(self, written: ImageRecord, features: ImageFeatures, original: bytes | None, thumb: bytes) -> None:
        """After an add: make the image's objects agree with its record as it is now.

        A delete that ran during the add may have removed objects the add
        wrote, or the record itself after the add wrote it.  Record present:
        the original (if this add holds its bytes), features, by-key entry and
        pending row exist and no tombstone hides it.  Record gone: a
        tombstone and no pending row, and nothing this add wrote is left
        behind.  Checked again after each repair, a few rounds at most.
        """
        sha = written.id
        for _ in range(3):
            record = self._readable(sha)
            if record is None:
                self.store.put(layout.tombstone_key(sha), uuid.uuid4().hex.encode(), content_type="text/plain")
                self.store.delete(layout.pending_key(sha))
                self.store.delete(layout.features_key(sha))
                self.store.delete(layout.thumb_key(sha))
                if original is not None:  # the delete won; what this add put back must go too
                    self.store.delete(layout.by_key_key(written.key))
                    self.store.delete(written.key)
                return
            missing = self._missing(record)
            if not missing:
                return
            if layout.tombstone_key(sha) in missing:
                self.store.delete(layout.tombstone_key(sha))
            if record.key in missing:
                if original is None or record.key != written.key:
                    return  # not an original this add stored: its ObjectRemoved event retires the image
                self.store.put(record.key, original, content_type=CONTENT_TYPES[record.format])
            if layout.by_key_key(record.key) in missing:
                self.store.put(layout.by_key_key(record.key), sha.encode(), content_type="text/plain")
            if layout.features_key(sha) in missing:
                self.store.put(layout.features_key(sha), features.to_bytes())
            if record.thumb and record.thumb in missing:
                self.store.put(record.thumb, thumb, content_type=THUMB_CONTENT_TYPE)
            if layout.pending_key(sha) in missing:
                self.store.put(layout.pending_key(sha), self._pending_row(features, record))

    def _missing(self, record: ImageRecord) -> set[str]:
        """Which of a live image's objects are wrong: absent ones, or a tombstone that is present."""
        sha = record.id
        wanted = [record.key, layout.by_key_key(record.key), layout.features_key(sha), layout.pending_key(sha)]
        wanted += [record.thumb] if record.thumb else []  # records older than thumbnails have none
        out = {key for key in wanted if self.store.etag(key) is None}
        if self.store.etag(layout.tombstone_key(sha)) is not None:
            out.add(layout.tombstone_key(sha))
        return out

    def index_object(self, key: str) -> Added:
        """Index an original that was dropped into ``catalog/`` (S3 ObjectCreated).

        Replayed events are duplicates.  When the key was overwritten with
        other bytes, the new bytes are indexed and the old image is retired
        (its record, features and rows; the object is now the new image).
        """
        if not key.startswith(layout.CATALOG):
            raise BadRequest(f"{key} is not under {layout.CATALOG}")
        record = self._record_at(key)
        if record is not None and record.key != key:
            return Added(record, created=False)  # the key's bytes are catalogued under another key
        if record is not None and record.etag and record.etag == self.store.etag(key):
            return Added(record, created=False)
        data, etag = self.store.get_with_etag(key, max_bytes=self.config.max_image_bytes)
        if record is not None:
            if sha256(data) == record.id:
                return Added(record, created=False)  # a record older than stored ETags
            self.delete(record.id, keep_original=True)
        return self.add(data, name=key[len(layout.CATALOG):], key=key, etag=etag)

    def forget_object(self, key: str) -> str | None:
        """Remove the image whose original was deleted from ``catalog/`` (ObjectRemoved).

        S3 delivers notifications late and out of order, so the event is
        checked against the bucket as it is now: if an object is at ``key``
        again (re-added or rewritten after the delete), the event is stale
        and changes nothing.
        """
        if self.store.etag(key) is not None:
            return None
        try:
            sha = self.store.get(layout.by_key_key(key)).decode()
        except NotFound:
            return None
        try:
            record = self.find(sha)
        except DamagedRecord:
            self.store.delete(layout.by_key_key(key))  # the damaged record cannot say which key was its own
            return self.delete(sha, keep_original=True)
        if record is None or record.key != key:
            return None
        return self.delete(sha, keep_original=True)

    def _record_at(self, key: str) -> ImageRecord | None:
        """The readable record the by-key entry of ``key`` points to, if any."""
        try:
            known = self.store.get(layout.by_key_key(key)).decode()
        except NotFound:
            return None
        return self._readable(known)

    # --- metadata ---------------------------------------------------------

    def set_meta(self, image_id: str, meta: dict) -> ImageRecord:
        """Replace an image's meta; its index row follows before this returns.

        Features and record are read first, so a refused or failed change
        writes nothing.  The record is rewritten with ``If-Match`` on the
        version read (a delete or another change in between makes it read
        again); then a retag marker and a fresh pending row with the new
        tags: searches score the pending row at once, and packing, seeing
        the marker, drops the image's older row from its partition.
        """
        meta = check_meta(meta)
        if not layout.is_image_id(image_id):
            raise NotFound(f"no image {image_id!r}: ids are 64 hex characters (sha256)")
        key = layout.record_key(image_id)
        for _ in range(3):
            try:
                data, etag = self.store.get_with_etag(key)
                record = ImageRecord.from_json(data, where=key)
                features = self.features(image_id)
            except NotFound:
                raise NotFound(f"no image {image_id}") from None
            updated = replace(record, meta=meta)
            try:
                self.store.put(key, updated.to_json(), content_type="application/json", if_match=etag)
            except PreconditionFailed:
                continue  # changed since we read it: apply this change to the new version
            self._retag(updated, features)
            return updated
        raise Conflict(f"image {image_id} kept changing while its meta was set; try again")

    def _retag(self, written: ImageRecord, features: ImageFeatures) -> None:
        """Make the pending row carry the tags of the record as it is now (after a meta change).

        The marker goes before the row: packing lists pending rows before
        markers, so a pack that sees this row also sees its marker.  A change
        racing this one may have written its row first; a delete may have
        removed the image meanwhile, and then the row goes too.
        """
        sha = written.id
        self.store.put(layout.retagged_key(sha), uuid.uuid4().hex.encode(), content_type="text/plain")
        record: ImageRecord | None = written
        for _ in range(3):
            self.store.put(layout.pending_key(sha), self._pending_row(features, record))
            now = self._readable(sha)
            if now is None:
                self.store.delete(layout.pending_key(sha))  # deleted meanwhile: its tombstone stays
                return
            if now.meta == record.meta:
                return
            record = now

    # --- reading ----------------------------------------------------------

    def find(self, image_id: str) -> ImageRecord | None:
        """The image's record, None if there is none; DamagedRecord if it is unreadable."""
        if not layout.is_image_id(image_id):
            return None
        key = layout.record_key(image_id)
        try:
            return ImageRecord.from_json(self.store.get(key), where=key)
        except NotFound:
            return None

    def _readable(self, image_id: str) -> ImageRecord | None:
        """Like :meth:`find`, with a damaged record counted as absent (an add replaces it)."""
        try:
            return self.find(image_id)
        except DamagedRecord:
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

    def page(self, limit: int, cursor: str | None = None, filter: Filter = Filter()) -> Page:
        """Records in id order, ``limit`` at a time, with the catalog's total size.

        With a ``filter``, only records whose meta matches it (see :meth:`_filtered_page`).
        """
        if not 1 <= limit <= self.config.list_page_max:
            raise BadRequest(f"limit must be between 1 and {self.config.list_page_max}")
        if cursor is not None and not layout.is_image_id(cursor):
            raise BadRequest("cursor must be an image id from a previous page")
        after = layout.record_key(cursor) if cursor else ""
        if filter:
            return self._filtered_page(limit, after, filter)
        keys = list(self.store.list(layout.RECORDS, start_after=after, limit=limit + 1))
        records, damaged = [], []
        for key in keys[:limit]:
            try:
                records.append(ImageRecord.from_json(self.store.get(key), where=key))
            except NotFound:
                continue  # deleted while we listed
            except DamagedRecord as exc:
                # One bad object must not hide the rest of the page: skip it and say so.
                damaged.append({"id": layout.id_from(key, layout.RECORDS), "key": key, "reason": exc.message})
        more = len(keys) > limit
        last = layout.id_from(keys[limit - 1], layout.RECORDS) if more else ""
        if more and not layout.is_image_id(last):
            last = records[-1].id if records else ""
        return Page(records, last or None, self.count(), damaged)

    def _filtered_page(self, limit: int, after: str, filter: Filter) -> Page:
        """Up to ``limit`` matching records after ``after``, reading at most ``list_page_max`` records.

        Records are read to be matched, so one request's work is bounded:
        a page may hold fewer than ``limit`` records while ``next_cursor``
        says where the next one carries on.
        """
        budget = self.config.list_page_max
        keys = list(self.store.list(layout.RECORDS, start_after=after, limit=budget + 1))
        records, damaged, last = [], [], ""
        more = len(keys) > budget
        step = 64
        with ThreadPoolExecutor(max_workers=16) as pool:
            for start in range(0, min(len(keys), budget), step):
                chunk = keys[start : min(start + step, budget)]
                for key, got in zip(chunk, pool.map(self._read_record, chunk)):
                    if len(records) == limit:
                        more = True
                        break
                    last = key
                    if isinstance(got, dict):
                        damaged.append(got)
                    elif got is not None and filter.matches(got.filterable()):
                        records.append(got)
                else:
                    continue
                break
        cursor = layout.id_from(last, layout.RECORDS) if more and last else ""
        return Page(records, cursor if layout.is_image_id(cursor) else None, self.count(), damaged)

    def _read_record(self, key: str) -> ImageRecord | dict | None:
        """The record at ``key``; None if it is gone, ``{"id", "key", "reason"}`` if damaged."""
        try:
            return ImageRecord.from_json(self.store.get(key), where=key)
        except NotFound:
            return None
        except DamagedRecord as exc:
            return {"id": layout.id_from(key, layout.RECORDS), "key": key, "reason": exc.message}

    def damaged_records(self) -> list[dict]:
        """Every unreadable record in the catalog ({"id", "key", "reason"}), for an operator.

        Reads every record: a repair tool, not a request path.  DELETE of an
        id listed here removes it.
        """
        out = []
        for key in self.store.list(layout.RECORDS):
            try:
                ImageRecord.from_json(self.store.get(key), where=key)
            except NotFound:
                continue
            except DamagedRecord as exc:
                out.append({"id": layout.id_from(key, layout.RECORDS), "key": key, "reason": exc.message})
        return out

    def count(self) -> int:
        return sum(1 for _ in self.store.list(layout.RECORDS))

    def ids(self) -> Iterator[str]:
        for key in self.store.list(layout.RECORDS):
            yield layout.id_from(key, layout.RECORDS)

    def image_url(self, record: ImageRecord) -> str:
        """A short-lived URL to the stored original."""
        return self.store.presign_get(record.key, self.config.presign_ttl)

    def thumb_url(self, record: ImageRecord) -> str | None:
        """A short-lived URL to the image's thumbnail; None for a record made before thumbnails."""
        return self.store.presign_get(record.thumb, self.config.presign_ttl) if record.thumb else None

    def urls(self, record: ImageRecord) -> dict:
        """The presigned links an answer carries for ``record``: original, thumbnail, their lifetime."""
        return {"stored_url": self.image_url(record), "thumb_url": self.thumb_url(record), "expires_in": self.config.presign_ttl}

    # --- deleting ---------------------------------------------------------

    def delete(self, image_id: str, *, keep_original: bool = False) -> str:
        """Delete an image; returns its id.  NotFound if there is none.

        The record goes last, and only the version read at the start: an add
        racing this delete either sees the record and reports a duplicate
        (the delete then wins), or finds it gone and writes everything anew.
        If the record was replaced meanwhile, the delete starts over on it.
        A damaged record is deleted with whatever can be found of its image.
        """
        if not layout.is_image_id(image_id):
            raise NotFound(f"no image {image_id!r}: ids are 64 hex characters (sha256)")
        key = layout.record_key(image_id)
        for _ in range(3):
            try:
                data, etag = self.store.get_with_etag(key)
            except NotFound:
                raise NotFound(f"no image {image_id}") from None
            try:
                record = ImageRecord.from_json(data, where=key)
            except DamagedRecord:
                self._delete_damaged(image_id, keep_original)
                return image_id
            self._remove_all_but_record(image_id, [record.key], keep_original)
            try:
                self.store.delete_if_match(key, etag)
                return image_id
            except PreconditionFailed:
                continue  # re-added since we read it: delete the new version too
        raise NotFound(f"image {image_id} kept being re-added while it was deleted; try again")

    def _remove_all_but_record(self, image_id: str, originals: list[str], keep_original: bool) -> None:
        # Tombstone first: from here on no search returns the image.
        # A unique body gives each tombstone its own ETag (see packing).
        self.store.put(layout.tombstone_key(image_id), uuid.uuid4().hex.encode(), content_type="text/plain")
        self.store.delete(layout.pending_key(image_id))
        self.store.delete(layout.features_key(image_id))
        self.store.delete(layout.thumb_key(image_id))
        for original in originals:
            self.store.delete(layout.by_key_key(original))
            if not keep_original:
                self.store.delete(original)

    def _delete_damaged(self, image_id: str, keep_original: bool) -> None:
        """Remove a damaged record and its image's objects; its original is found by the API's key name."""
        originals = list(self.store.list(f"{layout.CATALOG}{image_id}."))
        self._remove_all_but_record(image_id, originals, keep_original)
        self.store.delete(layout.record_key(image_id))

    def tombstones(self) -> set[str]:
        return {layout.id_from(k, layout.TOMBSTONES) for k in self.store.list(layout.TOMBSTONES)}

    # --- uploads and queries ----------------------------------------------

    def create_upload(self, content_type: str) -> dict:
        """A presigned upload for an image too large for a request body.

        On S3 it is a POST form whose policy makes S3 refuse a file over
        ``max_image_bytes``; the answer says which method and what to send
        with it (form ``fields`` for a POST, ``headers`` for a PUT).
        """
        if not content_type.startswith("image/"):
            raise BadRequest("content_type must be an image/* type")
        key = layout.new_upload_key()
        ticket = self.store.presign_upload(key, self.config.presign_ttl, content_type, self.config.max_image_bytes)
        return {
            "s3_key": key,
            **ticket,
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
