"""Packing: folding pending one-row partitions into large partitions.

The manifest (``index/manifest.json``) lists the live partitions.  One pack run:

1. reads the manifest and its ETag, the pending rows and the tombstones;
2. rewrites the partitions that hold newly tombstoned ids, appends pending
   rows to the last partition while it has room and starts new ones for the rest;
3. writes the new partitions under fresh keys, then swaps the manifest with a
   conditional write (``If-Match``), so two runs racing cannot lose each
   other's work: the loser removes what it wrote and the next run redoes it;
4. deletes what earlier runs made redundant (pending rows, retired partitions,
   tombstones) only once that is older than a grace period, so a search that
   read an older manifest still finds every object it names.

Pending rows and tombstones are remembered with their ETags: a row written
again later (an image deleted and re-added) is a different object and is
neither skipped nor deleted by mistake.

A meta change (:meth:`pictrace.catalog.catalog.Catalog.set_meta`) writes a
*retag marker* and then a fresh pending row with the new filter tags.  A run
that packs the pending row of a marked image drops the image's older row
from whatever partition holds it, as it does for a delete, so the packed
index carries the new tags only.  Markers are kept for a grace period after
their last write, since a later change may need them again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from pictrace.adapters.s3 import PreconditionFailed, S3Store
from pictrace.catalog import layout
from pictrace.core.partition import Partition
from pictrace.errors import CorruptShard, NotFound, OutdatedIndex

MANIFEST_VERSION = 2
REINDEX_HINT = "run `pictrace reindex` to rebuild the index in the current format"


@dataclass
class Manifest:
    partitions: list[dict]  # {"key", "count"}
    packed: dict[str, dict]  # pending id -> {"etag", "at"}: row is in a partition since "at"
    tombstoned: dict[str, dict]  # tombstone id -> {"etag", "at"}: no partition holds the id since "at"
    retired: dict[str, float]  # partition key -> when it left the manifest
    etag: str | None = None
    retagged: dict[str, dict] = field(default_factory=dict)  # marker id -> {"etag", "at"}: first seen at "at"

    @classmethod
    def load(cls, store: S3Store) -> "Manifest":
        try:
            data, etag = store.get_with_etag(layout.MANIFEST)
        except NotFound:
            return cls([], {}, {}, {}, None)
        try:
            raw = json.loads(data)
            version = raw.get("version")
        except (ValueError, AttributeError):
            raise CorruptShard("index/manifest.json is not a PicTrace manifest", object=layout.MANIFEST) from None
        if isinstance(version, int) and version < MANIFEST_VERSION:
            raise OutdatedIndex(
                f"index/manifest.json is version {version}, not {MANIFEST_VERSION}: {REINDEX_HINT}",
                object=layout.MANIFEST,
            )
        if version != MANIFEST_VERSION:
            raise CorruptShard(
                f"index/manifest.json is version {version!r}, not {MANIFEST_VERSION}: {REINDEX_HINT}",
                object=layout.MANIFEST,
            )
        try:
            retagged = raw.get("retagged", {})  # absent in manifests written before meta changes
            if not isinstance(retagged, dict):
                raise TypeError("retagged")
            return cls(raw["partitions"], raw["packed"], raw["tombstoned"], raw["retired"], etag, retagged)
        except (KeyError, TypeError):
            raise CorruptShard("index/manifest.json is not a PicTrace manifest", object=layout.MANIFEST) from None

    def to_json(self) -> bytes:
        body = {
            "version": MANIFEST_VERSION,
            "partitions": self.partitions,
            "packed": self.packed,
            "tombstoned": self.tombstoned,
            "retired": self.retired,
            "retagged": self.retagged,
        }
        return json.dumps(body, sort_keys=True).encode()

    @property
    def size(self) -> int:
        return sum(int(s["count"]) for s in self.partitions)


@dataclass(frozen=True)
class PackReport:
    packed: int  # pending rows moved into partitions
    dropped: int  # deleted rows removed from partitions
    partitions_written: int
    swapped: bool  # False when another run changed the manifest first
    cleaned: int  # objects deleted after their grace period
    damaged: tuple[str, ...] = ()  # partitions that could not be read, left as they are


def pack(store: S3Store, partition_rows: int, grace_seconds: float, now: float | None = None) -> PackReport:
    """One pack run; safe to run concurrently with adds, deletes, searches and itself.

    A damaged pending row is left where it is (and reported by searches),
    so it cannot stop the others from being packed.
    """
    now = time.time() if now is None else now
    manifest = Manifest.load(store)
    tombs = _by_id(store.list_etags(layout.TOMBSTONES), layout.TOMBSTONES)
    pendings = _by_id(store.list_etags(layout.PENDING), layout.PENDING)
    # Listed after the pending rows: a meta change writes its marker before its
    # row, so every row listed above has its marker listed here.
    retags = _by_id(store.list_etags(layout.RETAGGED), layout.RETAGGED)
    new_tombs = {i: e for i, e in tombs.items() if manifest.tombstoned.get(i, {}).get("etag") != e}
    new_pending = {i: e for i, e in pendings.items() if manifest.packed.get(i, {}).get("etag") != e}

    rows = []
    for sha in list(new_pending):
        try:
            rows.extend(Partition.from_bytes(store.get(layout.pending_key(sha))).rows())
        except NotFound:
            continue  # deleted since we listed it
        except CorruptShard:
            del new_pending[sha]  # not packed: a repair (the image added again) rewrites it
    rows = [r for r in rows if r.sha256 not in tombs]
    # Packed rows of these images are older than the rows packed now.
    replaced = {r.sha256 for r in rows} & set(retags)

    last = manifest.partitions[-1] if manifest.partitions else None
    tail = last if rows and last and last["count"] < partition_rows else None
    kept, reopened, dropped, damaged = [], [], 0, []
    for entry in manifest.partitions:
        if new_tombs or replaced or entry is tail:
            try:
                part = Partition.from_bytes(store.get(entry["key"]))
            except CorruptShard:
                # Kept as it is: searches report it, `pictrace reindex` rebuilds it;
                # new rows go to a new partition meanwhile.
                damaged.append(entry["key"])
                kept.append(entry)
                continue
            hit = [i for i in part.id_list() if i in new_tombs or i in replaced]
            if hit or entry is tail:
                dropped += sum(1 for i in hit if i in new_tombs)
                reopened.extend(part.without(hit).rows())
                manifest.retired[entry["key"]] = now
                continue
        kept.append(entry)

    merged = _unique(reopened + rows)
    written = []
    for start in range(0, len(merged), partition_rows):
        part = Partition.build(merged[start : start + partition_rows])
        key = layout.new_partition_key()
        store.put(key, part.to_bytes())
        written.append({"key": key, "count": len(part)})

    manifest.partitions = kept + written
    for sha in new_pending:
        # A row left out for a tombstone is not recorded as packed: the
        # tombstone may belong to a delete that a re-add (which wrote this
        # row) is about to lift, and the next run must then pack the row.
        if sha not in tombs:
            manifest.packed[sha] = {"etag": new_pending[sha], "at": now}
    for sha in new_tombs:
        manifest.tombstoned[sha] = {"etag": new_tombs[sha], "at": now}
    new_retags = {i: e for i, e in retags.items() if manifest.retagged.get(i, {}).get("etag") != e}
    for sha, etag in new_retags.items():
        manifest.retagged[sha] = {"etag": etag, "at": now}  # new, or written again: its grace starts over
    doomed = _expire(manifest, pendings, tombs, now - grace_seconds)
    expired_retags = _expire_retags(manifest, retags, now - grace_seconds)
    if not (written or new_tombs or new_pending or any(doomed.values()) or new_retags or expired_retags):
        return PackReport(0, 0, 0, False, 0, tuple(damaged))
    try:
        store.put(
            layout.MANIFEST,
            manifest.to_json(),
            content_type="application/json",
            if_match=manifest.etag,
            if_none_match=manifest.etag is None,
        )
    except PreconditionFailed:
        store.delete_many([w["key"] for w in written])
        return PackReport(0, 0, 0, False, 0, tuple(damaged))
    for keys in doomed.values():
        store.delete_many(keys)
    for key, etag in expired_retags:
        try:
            store.delete_if_match(key, etag)
        except PreconditionFailed:
            pass  # written again since it was listed: a newer change still needs it
    return PackReport(len(rows), dropped, len(written), True, sum(len(v) for v in doomed.values()), tuple(damaged))


def _expire_retags(manifest: Manifest, retags: dict[str, str], before: float) -> list[tuple[str, str]]:
    """Forget markers seen before ``before`` (or gone); return (key, etag) of those that may now go."""
    out = []
    for sha, info in list(manifest.retagged.items()):
        if sha not in retags:
            del manifest.retagged[sha]
        elif info["at"] < before:
            del manifest.retagged[sha]
            if retags[sha] == info["etag"]:
                out.append((layout.retagged_key(sha), info["etag"]))
    return out


def _unique(rows: list) -> list:
    seen: set[str] = set()
    out = []
    for row in rows:
        if row.sha256 not in seen:
            seen.add(row.sha256)
            out.append(row)
    return out


def _by_id(etags: dict[str, str], prefix: str) -> dict[str, str]:
    return {layout.id_from(k, prefix): e for k, e in etags.items()}


def _expire(manifest: Manifest, pendings: dict, tombs: dict, before: float) -> dict[str, list[str]]:
    """Forget entries older than ``before``; return the object keys that may now go."""
    doomed: dict[str, list[str]] = {"pending": [], "tombstones": [], "partitions": []}
    for sha, info in list(manifest.packed.items()):
        if info["at"] < before:
            del manifest.packed[sha]
            if pendings.get(sha) == info["etag"]:
                doomed["pending"].append(layout.pending_key(sha))
    for sha, info in list(manifest.tombstoned.items()):
        # While a pending row of the id is still listed, the tombstone keeps
        # hiding it: it may be a row the delete did not get to remove, which
        # no run packed (see above).  It expires once the row is gone.
        if info["at"] < before and sha not in pendings:
            del manifest.tombstoned[sha]
            if tombs.get(sha) == info["etag"]:
                doomed["tombstones"].append(layout.tombstone_key(sha))
    for key, at in list(manifest.retired.items()):
        if at < before:
            del manifest.retired[key]
            doomed["partitions"].append(key)
    return doomed
