"""What the scoring function does per invocation: one phase-1 batch or one phase-2 batch.

* ``{"phase": "candidates", "batch": {"partition": key}}`` or
  ``{"batch": {"pending": [key, ...]}}``: score every row of a packed
  partition (or of pending one-row partitions) by the cheap signals and
  return the partition's candidates.  Partitions never change once written,
  so a warm function keeps the last few it loaded.
* ``{"phase": "rerank", "candidates": [...]}``: read those candidates' detail
  features and rank them by the three signals, cheapest first.

Either may carry ``"filter": {field: [value, ...]}``: phase 1 then scores
only rows whose tags match it; phase 2 reads each candidate's record first
and drops those whose meta does not match exactly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from pictrace.adapters.s3 import S3Store
from pictrace.catalog import layout
from pictrace.catalog.records import ImageRecord
from pictrace.core.candidates import Candidate, CandidateQuery, candidates, query_side
from pictrace.core.features import ImageFeatures
from pictrace.core.filters import Filter
from pictrace.core.partition import Partition
from pictrace.core.rerank import MODES, RANKINGS, rerank
from pictrace.core.scoring import Query
from pictrace.errors import BadRequest, CorruptShard, DamagedRecord, NotFound

_LOAD_THREADS = 16
MAX_PER_SIGNAL = 256
MAX_RERANK = 1024


@dataclass
class ShardCache:
    """Least-recently-used cache of immutable objects (partitions, query features).

    Safe to share between threads (the local stack runs concurrent
    invocations in one process); ``load`` runs outside the lock, so two
    threads missing the same key may both load it.
    """

    capacity: int = 4
    items: "OrderedDict[str, object]" = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def get(self, key: str, load):
        with self._lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = load()
        with self._lock:
            self.items[key] = value
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)
        return value


def score_batch(store: S3Store, event: Mapping, cache: ShardCache, shortlist: int = 32) -> dict:
    """Run the phase an invocation names; returns JSON-ready data."""
    if not isinstance(event, Mapping):
        raise BadRequest("malformed scoring event: not an object")
    if event.get("phase", "candidates") == "rerank":
        return rerank_batch(store, event, cache)
    return candidate_batch(store, event, cache, shortlist)


def _query(store: S3Store, key: str, cache: ShardCache) -> Query:
    return cache.get(key, lambda: Query(ImageFeatures.from_bytes(store.get(key))))


def _candidate_query(store: S3Store, key: str, cache: ShardCache) -> CandidateQuery:
    return cache.get(key + "#phase1", lambda: query_side(_query(store, key, cache)))


def candidate_batch(store: S3Store, event: Mapping, cache: ShardCache, per_signal: int) -> dict:
    """Phase 1 over one partition or a list of pending rows."""
    query_key, batch, exclude = _parse_common(event)
    try:
        per_signal = int(event.get("per_signal", per_signal))
    except (TypeError, ValueError):
        raise BadRequest("per_signal must be an integer") from None
    if not 1 <= per_signal <= MAX_PER_SIGNAL:
        raise BadRequest(f"per_signal must be from 1 to {MAX_PER_SIGNAL}")
    mode = str(event.get("mode", "default"))
    if mode not in MODES:
        raise BadRequest(f"mode must be one of {', '.join(MODES)}")
    vanished = 0
    damaged: list[str] = []
    if "partition" in batch:
        part = cache.get(batch["partition"], lambda: Partition.from_bytes(store.get(batch["partition"])))
    else:
        parts = []
        for key in batch["pending"]:
            try:
                parts.append(Partition.from_bytes(store.get(key)))
            except NotFound:
                vanished += 1  # packed and cleaned, or deleted, since the plan was made
            except CorruptShard:
                damaged.append(key)  # one damaged row must not hide the others
        part = Partition.concat(parts)
    tags = Filter.parse(event.get("filter")).tokens() if event.get("filter") else ()
    cq = _candidate_query(store, query_key, cache)
    found = candidates(cq, part, per_signal=per_signal, mode=mode, exclude=exclude, tags=tags)
    return {
        "candidates": [c.to_dict() for c in found],
        "rows": len(part) - len(set(exclude) & set(part.id_list())),
        "vanished": vanished,
        "damaged": damaged,
    }


def rerank_batch(store: S3Store, event: Mapping, cache: ShardCache) -> dict:
    """Phase 2 over a batch of the global shortlist."""
    try:
        query_key = str(event["query"])
        k = int(event.get("k", 5))
        ranking = str(event.get("ranking", "default"))
        mode = str(event.get("mode", "default"))
        raw = event["candidates"]
        if not isinstance(raw, list) or len(raw) > MAX_RERANK:
            raise ValueError(f"candidates must be a list of at most {MAX_RERANK}")
        shortlist = [Candidate.from_dict(c) for c in raw]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadRequest(f"malformed rerank event: {exc}") from None
    wanted = Filter.parse(event.get("filter"))
    if not query_key.startswith(layout.QUERIES):
        raise BadRequest("query must be a key under queries/")
    if ranking not in RANKINGS or not 1 <= k <= 1000:
        raise BadRequest("bad k or ranking in scoring event")
    if mode not in MODES:
        raise BadRequest(f"mode must be one of {', '.join(MODES)}")
    if not all(layout.is_image_id(c.id) for c in shortlist):
        raise BadRequest("candidate ids must be image ids")
    unmatched = 0
    if wanted:
        keep = _matching(store, [c.id for c in shortlist], wanted)
        unmatched = len(shortlist) - len(keep)
        shortlist = [c for c in shortlist if c.id in keep]
    details, damaged = _load_features(store, [c.id for c in shortlist])
    matches, work = rerank(_query(store, query_key, cache), shortlist, details, k=k, ranking=ranking, mode=mode)
    return {
        "matches": [m.to_dict() for m in matches],
        "work": work.to_dict(),
        "vanished": len(shortlist) - len(details) - len(damaged),
        "damaged": damaged,
        "unmatched": unmatched,
    }


def _matching(store: S3Store, ids: Sequence[str], wanted: Filter) -> set[str]:
    """The ids whose record's meta matches ``wanted`` (a deleted or damaged record matches nothing)."""

    def one(sha: str) -> str | None:
        key = layout.record_key(sha)
        try:
            record = ImageRecord.from_json(store.get(key), where=key)
        except (NotFound, DamagedRecord):
            return None
        return sha if wanted.matches(record.filterable()) else None

    if not ids:
        return set()
    with ThreadPoolExecutor(max_workers=min(_LOAD_THREADS, len(ids))) as pool:
        return {sha for sha in pool.map(one, ids) if sha}


def _load_features(store: S3Store, ids: Sequence[str]) -> tuple[dict[str, ImageFeatures], list[str]]:
    def one(sha: str) -> tuple[str, ImageFeatures | None, bool]:
        try:
            return sha, ImageFeatures.from_bytes(store.get(layout.features_key(sha))), False
        except NotFound:
            return sha, None, False  # deleted while this search ran
        except CorruptShard:
            return sha, None, True  # damaged: reported, the rest of the batch still scores

    if not ids:
        return {}, []
    with ThreadPoolExecutor(max_workers=min(_LOAD_THREADS, len(ids))) as pool:
        loaded = list(pool.map(one, ids))
    return {sha: f for sha, f, _ in loaded if f is not None}, [layout.features_key(s) for s, _, bad in loaded if bad]


def _parse_common(event: Mapping) -> tuple[str, dict, list[str]]:
    try:
        query_key = str(event["query"])
        batch = dict(event["batch"])
        exclude = [str(x) for x in event.get("exclude", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"malformed scoring event: {exc}") from None
    if not query_key.startswith(layout.QUERIES):
        raise BadRequest("query must be a key under queries/")
    if "partition" in batch:
        if not str(batch["partition"]).startswith(layout.PARTITIONS):
            raise BadRequest("batch partition must be a key under index/partitions/")
    elif "pending" in batch:
        if not isinstance(batch["pending"], list) or not all(
            str(key).startswith(layout.PENDING) for key in batch["pending"]
        ):
            raise BadRequest("batch pending keys must be under index/pending/")
    else:
        raise BadRequest("batch needs 'partition' or 'pending'")
    return query_key, batch, exclude
