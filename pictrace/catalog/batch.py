"""Scoring one batch: what the scoring function does per invocation.

A batch is either a packed shard (``{"shard": key}``) or a list of pending
one-row shards (``{"pending": [key, ...]}``).  Shards never change once
written, so a warm function keeps the last few it loaded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from pictrace.adapters.s3 import S3Store
from pictrace.catalog import layout
from pictrace.core.features import ImageFeatures
from pictrace.core.scoring import RANKINGS, Query, score_shard
from pictrace.core.shard import Shard
from pictrace.errors import BadRequest, NotFound

_LOAD_THREADS = 16


@dataclass
class ShardCache:
    """Least-recently-used cache of immutable objects (shards, query features).

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


def score_batch(store: S3Store, event: Mapping, cache: ShardCache, shortlist: int) -> dict:
    """Score the batch an invocation names; returns matches and counts as JSON-ready data."""
    query_key, batch, k, ranking, exclude = _parse(event)
    query = cache.get(query_key, lambda: Query(ImageFeatures.from_bytes(store.get(query_key))))
    vanished = 0
    if "shard" in batch:
        shard = cache.get(batch["shard"], lambda: Shard.from_bytes(store.get(batch["shard"])))
    else:
        shards = []
        for key in batch["pending"]:
            try:
                shards.append(Shard.from_bytes(store.get(key)))
            except NotFound:
                vanished += 1  # packed and cleaned, or deleted, since the plan was made
        shard = Shard.concat(shards)

    missing: list[str] = []

    def load(ids: Sequence[str]) -> dict[str, ImageFeatures]:
        found = _load_features(store, ids)
        missing.extend(i for i in ids if i not in found)
        return found

    matches = score_shard(query, shard, load, k=k, ranking=ranking, shortlist=shortlist, exclude=exclude)
    return {
        "matches": [m.to_dict() for m in matches],
        "candidates": len(shard) - len(set(exclude) & {str(i) for i in shard.ids}),
        "scored": len(matches),
        "vanished": vanished + len(missing),
    }


def _load_features(store: S3Store, ids: Sequence[str]) -> dict[str, ImageFeatures]:
    def one(sha: str) -> tuple[str, ImageFeatures | None]:
        try:
            return sha, ImageFeatures.from_bytes(store.get(layout.features_key(sha)))
        except NotFound:
            return sha, None  # deleted while this search ran

    if not ids:
        return {}
    with ThreadPoolExecutor(max_workers=min(_LOAD_THREADS, len(ids))) as pool:
        return {sha: f for sha, f in pool.map(one, ids) if f is not None}


def _parse(event: Mapping) -> tuple[str, dict, int, str, list[str]]:
    try:
        query_key = str(event["query"])
        batch = dict(event["batch"])
        k = int(event.get("k", 5))
        ranking = str(event.get("ranking", "default"))
        exclude = [str(x) for x in event.get("exclude", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"malformed scoring event: {exc}") from None
    if not query_key.startswith(layout.QUERIES):
        raise BadRequest("query must be a key under queries/")
    if "shard" in batch:
        if not str(batch["shard"]).startswith(layout.SHARDS):
            raise BadRequest("batch shard must be a key under index/shards/")
    elif "pending" in batch:
        if not all(str(key).startswith(layout.PENDING) for key in batch["pending"]):
            raise BadRequest("batch pending keys must be under index/pending/")
    else:
        raise BadRequest("batch needs 'shard' or 'pending'")
    if ranking not in RANKINGS or not 1 <= k <= 1000:
        raise BadRequest("bad k or ranking in scoring event")
    return query_key, batch, k, ranking, exclude
