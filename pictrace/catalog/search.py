"""A search over the whole catalog, in two phases of fanned-out invocations.

1. **Candidates.** The plan reads three small things and never lists the
   whole bucket: the pending prefix (images added since the last pack), the
   tombstones (deleted images not yet packed away) and the manifest (packed
   partitions).  One invocation per partition, and one per batch of pending
   rows, scores every row by cheap signals and returns its best candidates.
2. **Rerank.** The candidates merge into one global shortlist (at most
   four signals times ``shortlist`` images, whatever the catalog's size);
   one invocation per ``rerank_batch`` of it reads those images' detail
   features and ranks them by the three signals.  The best ``k`` of all
   batches are the answer; the records of those ``k`` name them.

Pending is listed *before* the manifest is read; packing keeps pending rows
for a grace period after they enter a partition, so every image is in one
or the other.

A ``filter`` travels with both phases: phase 1 restricts every signal's top
list to rows whose tags match, so the shortlist holds matching images only
(as many as exist, up to its size); phase 2 reads the candidates' records
and drops any whose meta does not match exactly (a tag is a 32-bit hash).
The answer's ``filter_dropped`` counts those drops, so a collision (or a
meta changed while the search ran) shows instead of silently costing a
result.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol, Sequence

from pictrace.catalog import layout
from pictrace.catalog.catalog import Catalog
from pictrace.catalog.packing import Manifest
from pictrace.catalog.records import labels_json
from pictrace.config import Config
from pictrace.core.candidates import Candidate, shortlist
from pictrace.core.filters import Filter
from pictrace.core.merge import merge_topk
from pictrace.core.probe import probe
from pictrace.core.rerank import MODES, RANKINGS
from pictrace.core.scoring import Match, query_from_bytes
from pictrace.errors import (
    BadRequest,
    CorruptShard,
    DamagedRecord,
    ModelUnavailable,
    OutdatedIndex,
    PayloadTooLarge,
    ScoringFailed,
)


class Invoker(Protocol):
    def map(self, payloads: Sequence[dict], reserve: float = 0.0) -> list[dict | ScoringFailed]: ...


@dataclass(frozen=True)
class Plan:
    batches: list[dict]
    exclude: list[str]
    candidates: int
    damaged: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()  # ids of the pending rows scored in pending batches


def plan(catalog: Catalog) -> Plan:
    store, config = catalog.store, catalog.config
    listed = store.list_etags(layout.PENDING)
    exclude = sorted(catalog.tombstones())
    try:
        manifest = Manifest.load(store)
    except OutdatedIndex:
        raise  # an index of another format: nothing of it can be read
    except CorruptShard:
        return _unmanaged(catalog, listed, exclude)
    # Rows already packed into a listed partition (same ETag) are scored there.
    pending = [
        key
        for key, etag in listed.items()
        if manifest.packed.get(layout.id_from(key, layout.PENDING), {}).get("etag") != etag
    ]
    batches: list[dict] = [{"partition": s["key"]} for s in manifest.partitions]
    for start in range(0, len(pending), config.pending_batch):
        batches.append({"pending": pending[start : start + config.pending_batch]})
    return Plan(batches, exclude, manifest.size + len(pending), (), _ids(pending))


def _unmanaged(catalog: Catalog, pending: dict[str, str], exclude: list[str]) -> Plan:
    """The plan when the manifest is damaged: every partition object and every pending row.

    Retired partitions are among them until packing cleans them up; their
    duplicate rows merge away, and an image deleted since has no record, so
    it never reaches the answer.  The manifest is reported as damaged.
    """
    batches: list[dict] = [{"partition": key} for key in catalog.store.list(layout.PARTITIONS)]
    keys = sorted(pending)
    step = catalog.config.pending_batch
    batches += [{"pending": keys[s : s + step]} for s in range(0, len(keys), step)]
    return Plan(batches, exclude, len(keys), (layout.MANIFEST,), _ids(keys))


def _ids(pending_keys) -> tuple[str, ...]:
    return tuple(layout.id_from(key, layout.PENDING) for key in pending_keys)


def _stale(catalog: Catalog, the_plan: Plan) -> list[str]:
    """Images whose meta changed since their row was packed: their packed rows carry old tags.

    Their pending rows are scored, so a filtered search leaves their packed
    rows out (packing soon drops them).  A search without a filter need not
    look: both rows score the same, and the shortlist keeps one.
    """
    if not the_plan.pending:
        return []  # nothing pending: every row is packed, and packing left one per image
    marked = {layout.id_from(key, layout.RETAGGED) for key in catalog.store.list(layout.RETAGGED)}
    return sorted(marked.intersection(the_plan.pending))


def check_k(k: int, config: Config) -> int:
    if not 1 <= k <= config.max_k:
        raise BadRequest(f"k must be an integer from 1 to {config.max_k}")
    return k


def search(
    catalog: Catalog,
    invoker: Invoker,
    data: bytes,
    *,
    k: int,
    ranking: str = "default",
    mode: str = "default",
    exclude: Sequence[str] = (),
    min_score: float = 0.0,
    filter: Filter = Filter(),
) -> dict:
    """Search the catalog for ``data``; the response body of ``POST /search``.

    ``mode="similar"`` ranks by looks-like similarity (the embedding's
    cosine) instead of copy detection's three signals; every result
    reports ``semantic`` either way.  Ids in ``exclude`` are never returned (an image searched for its
    look-alikes is not one of them); results scoring below ``min_score`` are
    left out, so ``results`` may be empty; with a ``filter``, only images
    whose meta matches it are candidates at all.
    """
    started = time.perf_counter()
    config = catalog.config
    check_k(k, config)
    if ranking not in RANKINGS:
        raise BadRequest(f"ranking must be one of {', '.join(RANKINGS)}")
    if mode not in MODES:
        raise BadRequest(f"mode must be one of {', '.join(MODES)}")
    if len(data) > config.max_image_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {config.max_image_bytes}")
    info = probe(data)
    query = query_from_bytes(data, max_pixels=config.max_pixels)
    if mode == "similar" and query.features.embedding is None:
        raise ModelUnavailable("mode=similar needs the embedding model, which this deployment lacks")
    sha = query.features.sha256
    query_s3_key = catalog.store_query(data, query.features)
    the_plan = plan(catalog)
    query_key = layout.query_features_key(sha)
    # Every signal keeps at least k, so k matches are found whenever k exist.
    per_signal = max(config.shortlist, k)
    wanted = {"filter": filter.to_dict()} if filter else {}
    excluded = sorted({*the_plan.exclude, *exclude})
    stale = sorted({*excluded, *_stale(catalog, the_plan)}) if filter else excluded

    phase1 = [
        {
            "phase": "candidates",
            "mode": mode,
            "query": query_key,
            "batch": batch,
            "per_signal": per_signal,
            "exclude": stale if "partition" in batch else excluded,
            **wanted,
        }
        for batch in the_plan.batches
    ]
    # Phase 1 leaves time for phase 2, so a slow partition costs its own
    # candidates, not the whole answer.
    answers1 = invoker.map(phase1, reserve=config.rerank_reserve)
    failed = _failures(phase1, answers1, lambda p: p["batch"])
    found = [Candidate.from_dict(c) for a in answers1 if not isinstance(a, ScoringFailed) for c in a["candidates"]]
    short = shortlist(found, per_signal, mode)

    step = max(1, config.rerank_batch)
    phase2 = [
        {
            "phase": "rerank",
            "query": query_key,
            "candidates": [c.to_dict() for c in short[start : start + step]],
            "k": k,
            "ranking": ranking,
            "mode": mode,
            **wanted,
        }
        for start in range(0, len(short), step)
    ]
    answers2 = invoker.map(phase2) if phase2 else []
    failed += _failures(phase2, answers2, lambda p: {"rerank": len(p["candidates"])})
    good2 = [a for a in answers2 if not isinstance(a, ScoringFailed)]
    merged = merge_topk(([Match.from_dict(m) for m in a["matches"]] for a in good2), k)
    merged = _named([m for m in merged if m.score >= min_score], catalog, filter)
    damaged = [*the_plan.damaged]
    damaged += [key for a in (*answers1, *answers2) if not isinstance(a, ScoringFailed) for key in a.get("damaged", [])]
    return {
        "query": {
            "sha256": sha,
            "format": info.format,
            "width": query.features.width,
            "height": query.features.height,
            "bytes": len(data),
            "s3_key": query_s3_key,
            "stored_url": catalog.store.presign_get(query_s3_key, config.presign_ttl),
            "labels": labels_json(query.features.labels),
        },
        "k": k,
        "ranking": ranking,
        "mode": mode,
        "min_score": min_score,
        "filter": filter.to_dict(),
        # Candidates phase 1's hashed tokens let through that the exact check on their records dropped.
        "filter_dropped": sum(int(a.get("unmatched", 0)) for a in good2),
        "results": [_result(catalog, rank, m) for rank, m in enumerate(merged, 1)],
        "counts": {
            "candidates": the_plan.candidates,
            "shortlist": len(short),
            "scored_candidates": sum(int(a.get("work", {}).get("candidates", 0)) for a in good2),
            "fully_scored": sum(int(a.get("work", {}).get("full", 0)) for a in good2),
            "batches": len(phase1),
            "rerank_batches": len(phase2),
            "failed_batches": len(failed),
        },
        # Damaged objects hide their images, so the answer may lack them too.
        "partial": bool(failed or damaged),
        "failed_batches": failed,
        "damaged_objects": sorted(set(damaged)),
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _failures(payloads: list[dict], answers: list, describe) -> list[dict]:
    return [
        {"batch": describe(p), "error": str(a)} for p, a in zip(payloads, answers) if isinstance(a, ScoringFailed)
    ]


def _named(matches: list[Match], catalog: Catalog, filter: Filter = Filter()) -> list[Match]:
    """The matches with their records' names, keys and meta; images deleted meanwhile drop out.

    So do images whose meta stopped matching ``filter`` since phase 2 read it.
    """

    def record(m: Match):
        try:
            return catalog.find(m.id)
        except DamagedRecord:
            return None

    if not matches:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(matches))) as pool:
        records = list(pool.map(record, matches))
    return [
        replace(m, meta=r.result_meta()) for m, r in zip(matches, records) if r is not None and filter.matches(r.filterable())
    ]


def _result(catalog: Catalog, rank: int, m: Match) -> dict:
    meta = m.meta
    ttl = catalog.config.presign_ttl
    stored = catalog.store.presign_get(meta["key"], ttl) if meta.get("key") else ""
    return {
        "rank": rank,
        "id": m.id,
        "name": meta.get("name", ""),
        "image_url": meta.get("image_url") or stored,
        "stored_url": stored,
        # None for an image catalogued before thumbnails (until `pictrace reindex` makes them)
        "thumb_url": catalog.store.presign_get(meta["thumb"], ttl) if meta.get("thumb") else None,
        "page_url": meta.get("page_url", ""),
        "labels": meta.get("labels", []),
        "meta": meta.get("meta", {}),
        "score": round(m.score, 6),
        "scores": m.rounded_scores(),
        "transform": m.transform,
    }
