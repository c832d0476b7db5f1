"""A search over the whole catalog: plan batches, fan out, merge.

The plan reads three small things and never lists the whole bucket: the
pending prefix (images added since the last pack), the tombstones (deleted
images not yet packed away) and the manifest (packed shards).  Pending is
listed *before* the manifest is read; packing keeps pending rows for a grace
period after they enter a shard, so every image is in one or the other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, Sequence

from pictrace.catalog import layout
from pictrace.catalog.catalog import Catalog
from pictrace.catalog.packing import Manifest
from pictrace.config import Config
from pictrace.core.merge import merge_topk
from pictrace.core.probe import probe
from pictrace.core.scoring import RANKINGS, Match, query_from_bytes
from pictrace.errors import BadRequest, PayloadTooLarge, ScoringFailed


class Invoker(Protocol):
    def map(self, payloads: Sequence[dict]) -> list[dict | ScoringFailed]: ...


@dataclass(frozen=True)
class Plan:
    batches: list[dict]
    exclude: list[str]
    candidates: int


def plan(catalog: Catalog) -> Plan:
    store, config = catalog.store, catalog.config
    listed = store.list_etags(layout.PENDING)
    exclude = sorted(catalog.tombstones())
    manifest = Manifest.load(store)
    # Rows already packed into a listed shard (same ETag) are scored there.
    pending = [
        key
        for key, etag in listed.items()
        if manifest.packed.get(layout.id_from(key, layout.PENDING), {}).get("etag") != etag
    ]
    batches: list[dict] = [{"shard": s["key"]} for s in manifest.shards]
    for start in range(0, len(pending), config.pending_batch):
        batches.append({"pending": pending[start : start + config.pending_batch]})
    return Plan(batches, exclude, manifest.size + len(pending))


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
    exclude: Sequence[str] = (),
    min_score: float = 0.0,
) -> dict:
    """Search the catalog for ``data``; the response body of ``POST /search``.

    Ids in ``exclude`` are never returned (an image searched for its
    look-alikes is not one of them); results scoring below ``min_score`` are
    left out, so ``results`` may be empty.
    """
    started = time.perf_counter()
    config = catalog.config
    check_k(k, config)
    if ranking not in RANKINGS:
        raise BadRequest(f"ranking must be one of {', '.join(RANKINGS)}")
    if len(data) > config.max_image_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {config.max_image_bytes}")
    info = probe(data)
    query = query_from_bytes(data, max_pixels=config.max_pixels)
    sha = query.features.sha256
    query_s3_key = catalog.store_query(data, query.features)
    the_plan = plan(catalog)
    payloads = [
        {
            "query": layout.query_features_key(sha),
            "batch": batch,
            "k": k,
            "ranking": ranking,
            "exclude": sorted({*the_plan.exclude, *exclude}),
        }
        for batch in the_plan.batches
    ]
    answers = invoker.map(payloads)
    good = [a for a in answers if not isinstance(a, ScoringFailed)]
    failed = [
        {"batch": p["batch"], "error": str(a)}
        for p, a in zip(payloads, answers)
        if isinstance(a, ScoringFailed)
    ]
    merged = merge_topk(([Match.from_dict(m) for m in a["matches"]] for a in good), k)
    merged = [m for m in merged if m.score >= min_score]
    return {
        "query": {
            "sha256": sha,
            "format": info.format,
            "width": query.features.width,
            "height": query.features.height,
            "bytes": len(data),
            "s3_key": query_s3_key,
            "stored_url": catalog.store.presign_get(query_s3_key, config.presign_ttl),
        },
        "k": k,
        "ranking": ranking,
        "min_score": min_score,
        "results": [_result(catalog, rank, m) for rank, m in enumerate(merged, 1)],
        "counts": {
            "candidates": the_plan.candidates,
            "scored_candidates": sum(int(a.get("candidates", 0)) for a in good),
            "batches": len(payloads),
            "failed_batches": len(failed),
        },
        "partial": bool(failed),
        "failed_batches": failed,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _result(catalog: Catalog, rank: int, m: Match) -> dict:
    meta = m.meta
    stored = catalog.store.presign_get(meta["key"], catalog.config.presign_ttl) if meta.get("key") else ""
    return {
        "rank": rank,
        "id": m.id,
        "name": meta.get("name", ""),
        "image_url": meta.get("image_url") or stored,
        "stored_url": stored,
        "page_url": meta.get("page_url", ""),
        "score": round(m.score, 6),
        "scores": {name: round(v, 6) for name, v in m.scores.items()},
        "transform": m.transform,
    }
