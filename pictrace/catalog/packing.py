"""Packing: folding pending one-row shards into large shards.

The manifest (``index/manifest.json``) lists the live shards.  One pack run:

1. reads the manifest and its ETag, the pending rows and the tombstones;
2. rewrites the shards that hold newly tombstoned ids, appends pending rows
   to the last shard while it has room and starts new shards for the rest;
3. writes the new shards under fresh keys, then swaps the manifest with a
   conditional write (``If-Match``), so two runs racing cannot lose each
   other's work: the loser removes what it wrote and the next run redoes it;
4. deletes what earlier runs made redundant (pending rows, retired shards,
   tombstones) only once that is older than a grace period, so a search that
   read an older manifest still finds every object it names.

Pending rows and tombstones are remembered with their ETags: a row written
again later (an image deleted and re-added) is a different object and is
neither skipped nor deleted by mistake.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pictrace.adapters.s3 import PreconditionFailed, S3Store
from pictrace.catalog import layout
from pictrace.core.shard import Shard
from pictrace.errors import CorruptShard, NotFound

MANIFEST_VERSION = 1


@dataclass
class Manifest:
    shards: list[dict]  # {"key", "count"}
    packed: dict[str, dict]  # pending id -> {"etag", "at"}: row is in a shard since "at"
    tombstoned: dict[str, dict]  # tombstone id -> {"etag", "at"}: no shard holds the id since "at"
    retired: dict[str, float]  # shard key -> when it left the manifest
    etag: str | None = None

    @classmethod
    def load(cls, store: S3Store) -> "Manifest":
        try:
            data, etag = store.get_with_etag(layout.MANIFEST)
        except NotFound:
            return cls([], {}, {}, {}, None)
        try:
            raw = json.loads(data)
            if raw.get("version") != MANIFEST_VERSION:
                raise ValueError(raw.get("version"))
            return cls(raw["shards"], raw["packed"], raw["tombstoned"], raw["retired"], etag)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CorruptShard("index/manifest.json is not a PicTrace manifest") from None

    def to_json(self) -> bytes:
        body = {
            "version": MANIFEST_VERSION,
            "shards": self.shards,
            "packed": self.packed,
            "tombstoned": self.tombstoned,
            "retired": self.retired,
        }
        return json.dumps(body, sort_keys=True).encode()

    @property
    def size(self) -> int:
        return sum(int(s["count"]) for s in self.shards)


@dataclass(frozen=True)
class PackReport:
    packed: int  # pending rows moved into shards
    dropped: int  # deleted rows removed from shards
    shards_written: int
    swapped: bool  # False when another run changed the manifest first
    cleaned: int  # objects deleted after their grace period


def pack(store: S3Store, shard_size: int, grace_seconds: float, now: float | None = None) -> PackReport:
    """One pack run; safe to run concurrently with adds, deletes, searches and itself."""
    now = time.time() if now is None else now
    manifest = Manifest.load(store)
    tombs = _by_id(store.list_etags(layout.TOMBSTONES), layout.TOMBSTONES)
    pendings = _by_id(store.list_etags(layout.PENDING), layout.PENDING)
    new_tombs = {i: e for i, e in tombs.items() if manifest.tombstoned.get(i, {}).get("etag") != e}
    new_pending = {i: e for i, e in pendings.items() if manifest.packed.get(i, {}).get("etag") != e}

    rows = []
    for sha in new_pending:
        try:
            rows.extend(Shard.from_bytes(store.get(layout.pending_key(sha))).rows())
        except NotFound:
            continue  # deleted since we listed it
    rows = [r for r in rows if r[0] not in tombs]

    tail = manifest.shards[-1] if rows and manifest.shards and manifest.shards[-1]["count"] < shard_size else None
    kept, reopened, dropped = [], [], 0
    for entry in manifest.shards:
        if new_tombs or entry is tail:
            shard = Shard.from_bytes(store.get(entry["key"]))
            hit = [str(i) for i in shard.ids if str(i) in new_tombs]
            if hit or entry is tail:
                dropped += len(hit)
                reopened.extend(shard.without(hit).rows())
                manifest.retired[entry["key"]] = now
                continue
        kept.append(entry)

    merged = Shard.from_rows(reopened + rows).rows()
    written = []
    for start in range(0, len(merged), shard_size):
        part = Shard.from_rows(merged[start : start + shard_size])
        key = layout.new_shard_key()
        store.put(key, part.to_bytes())
        written.append({"key": key, "count": len(part)})

    manifest.shards = kept + written
    for sha in new_pending:
        # A row left out for a tombstone is not recorded as packed: the
        # tombstone may belong to a delete that a re-add (which wrote this
        # row) is about to lift, and the next run must then pack the row.
        if sha not in tombs:
            manifest.packed[sha] = {"etag": new_pending[sha], "at": now}
    for sha in new_tombs:
        manifest.tombstoned[sha] = {"etag": new_tombs[sha], "at": now}
    doomed = _expire(manifest, pendings, tombs, now - grace_seconds)
    if not (written or new_tombs or new_pending or any(doomed.values())):
        return PackReport(0, 0, 0, False, 0)
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
        return PackReport(0, 0, 0, False, 0)
    for keys in doomed.values():
        store.delete_many(keys)
    return PackReport(len(rows), dropped, len(written), True, sum(len(v) for v in doomed.values()))


def _by_id(etags: dict[str, str], prefix: str) -> dict[str, str]:
    return {layout.id_from(k, prefix): e for k, e in etags.items()}


def _expire(manifest: Manifest, pendings: dict, tombs: dict, before: float) -> dict[str, list[str]]:
    """Forget entries older than ``before``; return the object keys that may now go."""
    doomed: dict[str, list[str]] = {"pending": [], "tombstones": [], "shards": []}
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
            doomed["shards"].append(key)
    return doomed
