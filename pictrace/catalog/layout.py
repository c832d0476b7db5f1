"""The S3 layout: the only module that knows where things live in the bucket.

    catalog/...                      originals (API adds use catalog/<sha256>.<ext>;
                                     anything dropped here is indexed too)
    incoming/...                     drop a query here: results/<same key>.json appears
    results/<key>.json               S3-triggered search results
    queries/<sha256>                 query images, as received
    queries/<sha256>.features.npz    their features, read by the scoring batches
    uploads/<token>                  presigned PUT targets for large images
    index/records/<sha256>.json      one record per catalog image
    index/features/<sha256>.npz      detail features per catalog image
    index/thumbs/<sha256>.jpg        display thumbnail per catalog image (made at ingest)
    index/by-key/<sha256 of key>     original key -> image id (for ObjectRemoved events)
    index/pending/<sha256>.npz       one-row partitions added since the last pack
    index/tombstones/<sha256>        deleted ids, until packing drops them from partitions
    index/retagged/<sha256>          images whose meta changed: packing replaces their packed row
    index/partitions/<uuid>.npz      packed phase-1 partitions
    index/manifest.json              the list of live partitions
    index/duplicates/status.json     the duplicate-groups job: queued, running, done or failed
    index/duplicates/groups.json     its last finished result: the near-duplicate pairs and groups
    index/duplicates/work.json       a scan's progress while it runs over several invocations
    index/shards/<uuid>.npz          shards of the index format before partitions
                                     (read by nothing; `pictrace reindex` removes them)

Prefixes that functions write (index/, queries/, results/) are disjoint from
the prefixes that trigger them (catalog/, incoming/), so no function can
trigger itself.
"""

from __future__ import annotations

import hashlib
import re
import uuid

CATALOG = "catalog/"
INCOMING = "incoming/"
RESULTS = "results/"
QUERIES = "queries/"
UPLOADS = "uploads/"
RECORDS = "index/records/"
FEATURES = "index/features/"
THUMBS = "index/thumbs/"
BY_KEY = "index/by-key/"
PENDING = "index/pending/"
TOMBSTONES = "index/tombstones/"
RETAGGED = "index/retagged/"
PARTITIONS = "index/partitions/"
SHARDS = "index/shards/"
MANIFEST = "index/manifest.json"
DUPLICATES_STATUS = "index/duplicates/status.json"
DUPLICATES_GROUPS = "index/duplicates/groups.json"
DUPLICATES_WORK = "index/duplicates/work.json"

# Always fullmatch: "$" also matches before a final newline, and an id with
# one sorts before its own record key, so a cursor would repeat its item.
_SHA = re.compile(r"[0-9a-f]{64}")
_UPLOAD = re.compile(r"uploads/[0-9a-f]{32}")


def is_image_id(value: str) -> bool:
    """Whether ``value`` is exactly a lower-case hex sha256 (an image id, a cursor, a query)."""
    return _SHA.fullmatch(value) is not None


def original_key(sha: str, ext: str) -> str:
    return f"{CATALOG}{sha}.{ext}"


def record_key(sha: str) -> str:
    return f"{RECORDS}{sha}.json"


def features_key(sha: str) -> str:
    return f"{FEATURES}{sha}.npz"


def thumb_key(sha: str) -> str:
    return f"{THUMBS}{sha}.jpg"


def by_key_key(original: str) -> str:
    return f"{BY_KEY}{hashlib.sha256(original.encode()).hexdigest()}"


def pending_key(sha: str) -> str:
    return f"{PENDING}{sha}.npz"


def tombstone_key(sha: str) -> str:
    return f"{TOMBSTONES}{sha}"


def retagged_key(sha: str) -> str:
    return f"{RETAGGED}{sha}"


def new_partition_key() -> str:
    return f"{PARTITIONS}{uuid.uuid4().hex}.npz"


def query_key(sha: str) -> str:
    return f"{QUERIES}{sha}"


def query_features_key(sha: str) -> str:
    return f"{QUERIES}{sha}.features.npz"


def new_upload_key() -> str:
    return f"{UPLOADS}{uuid.uuid4().hex}"


def is_upload_key(key: str) -> bool:
    """Whether ``key`` is exactly a key :func:`new_upload_key` hands out."""
    return _UPLOAD.fullmatch(key) is not None


def result_key(incoming_key: str) -> str:
    return f"{RESULTS}{incoming_key[len(INCOMING):]}.json"


def id_from(key: str, prefix: str) -> str:
    """The sha256 embedded in a records/, pending/ or tombstones/ key."""
    name = key[len(prefix):]
    return name.split(".", 1)[0]
