"""Phase 1 at a million rows, and a model of the serverless fan-out from measured costs.

    python -m benchmarks.fanout_model --store benchmarks/.cache/features/<fingerprint>

Measured here, in one process: phase 2 of real searches (the benchmark's
catalog and distractors, up to 10k real rows, with their real shortlists):
CPU seconds per search and the shortlist size; phase 1 over one full
partition (65,536 rows) and over 1M rows.  The 1M rows are synthetic: the
real index rows reused under fresh ids until the count is reached, so their
layouts, colours and word statistics are those of real rows.  CPU time
(``time.process_time``) stands for a one-vCPU Lambda's duration.

Assumed, and stated in the output: S3 read rates and latencies, the share
of invocations that start cold and what a cold start costs, Lambda and S3
prices.  The model gives invocations, bytes read warm and cold, p50/p95
latency and dollars per 1,000 searches at 10k-10M images, for the
two-phase plan and for the earlier one (a scoring invocation per 5,000
images reading every shard and reranking 48 candidates per shard, from
the figures measured for that design).  Writes benchmarks/fanout-results.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import resource
import time
from pathlib import Path

import numpy as np

from benchmarks.store import FeatureStore
from pictrace.api import LocalIndex, candidate_query
from pictrace.core import compact
from pictrace.core.candidates import candidates, shortlist
from pictrace.core.features import ImageFeatures
from pictrace.core.partition import MAX_ROWS, Partition
from pictrace.core.rerank import rerank
from pictrace.core.scoring import Query

OUT = Path(__file__).resolve().parent / "fanout-results.json"
PER_SIGNAL = 32
RERANK_BATCH = 48
ASSUMED = {
    "usd_per_gb_s": 0.0000166667,  # Lambda x86
    "lambda_gb": 1.769,  # one full vCPU
    "usd_per_request": 0.0000002,
    "usd_per_s3_get": 0.0000004,
    "usd_per_s3_put": 0.000005,
    "s3_read_mb_s": 90.0,  # one object, one stream
    "s3_get_ms": 25.0,  # first byte of a small object
    "parallel_gets": 16,  # detail reads in flight per rerank invocation
    "invoke_ms": 20.0,  # one synchronous Lambda hop, warm
    "cold_start_s": 1.5,  # init of a scoring container (Python, numpy, OpenCV)
    "cold_share": 0.02,  # of scoring invocations
    "detail_kb": 62.0,  # one detail-features object
    "query_prep_s": 0.08,  # decode, features and embedding of the query in the API function
    "query_put_ms": 40.0,
}
# The earlier design, as measured for it: per 5,000-image shard 0.285 s of
# scoring and 33 MB read cold, 48 reranks per shard.
OLD = {"shard_images": 5000, "shard_s": 0.285, "shard_mb": 33.0, "reranks_per_shard": 48}


def real_index(store: FeatureStore, limit: int) -> LocalIndex:
    index = LocalIndex()
    for path in sorted(glob.glob(str(store.root / "*.npz"))):
        name = os.path.basename(path)[:-4]
        if name.startswith(("distractors", "catalog")):
            for blob in store.load(name).blobs:
                if len(index) < limit:
                    index.add_features(ImageFeatures.from_bytes(blob))
    return index


def queries_from(store: FeatureStore, n: int) -> list[Query]:
    names = sorted(os.path.basename(p)[:-4] for p in glob.glob(str(store.root / "queries*.npz")))
    out = []
    for name in names:
        out += [Query(features=ImageFeatures.from_bytes(b)) for b in store.load(name).blobs[::17]]
    return out[:: max(1, len(out) // n)][:n]


def synthetic(rows: list[compact.IndexRow], count: int, start: int) -> Partition:
    return Partition.build(
        compact.IndexRow(f"{start + i:064x}", r.layout, r.colour, r.words, r.semantic) for i, r in zip(range(count), _cycle(rows))
    )


def _cycle(rows):
    while True:
        yield from rows


def _cpu(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=24)
    ap.add_argument("--real", type=int, default=10_000, help="real rows for the phase-2 measurement")
    args = ap.parse_args()
    store = FeatureStore(args.store)
    index = real_index(store, args.real)
    queries = queries_from(store, args.queries)
    parts_real = index.partitions()

    # Phase 2 of real searches.
    rerank_cpu, shortlist_sizes = [], []
    for q in queries:
        cq = candidate_query(q)
        short = shortlist([c for p in parts_real for c in candidates(cq, p, per_signal=PER_SIGNAL)], PER_SIGNAL)
        details = index._details.get_many(c.id for c in short)
        shortlist_sizes.append(len(short))
        rerank_cpu.append(_cpu(lambda: rerank(q, short, details, k=5))[1])
    cqs = [candidate_query(q) for q in queries]

    # Phase 1 at a million synthetic rows.
    real_rows = [p.rows() for p in parts_real]
    real_rows = [r for rows in real_rows for r in rows]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    parts = [synthetic(real_rows, min(MAX_ROWS, args.rows - s), s) for s in range(0, args.rows, MAX_ROWS)]
    full = parts[0]
    blob = len(full.to_bytes())
    candidates(cqs[0], full, per_signal=PER_SIGNAL)  # the first call builds the warm caches
    one = [_cpu(lambda: candidates(cq, full, per_signal=PER_SIGNAL)) for cq in cqs]
    for p in parts:
        candidates(cqs[0], p, per_signal=PER_SIGNAL)
    million = [
        _cpu(lambda: shortlist([c for p in parts for c in candidates(cq, p, per_signal=PER_SIGNAL)], PER_SIGNAL))[0]
        for cq in cqs
    ]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    a = ASSUMED
    p1_cpu = float(np.median([c for _, c in one]))
    p2_cpu = float(np.median(rerank_cpu))
    short_mean = float(np.mean(shortlist_sizes))
    measured = {
        "real_rows": len(index),
        "queries": len(queries),
        "shortlist_mean": round(short_mean, 1),
        "rerank_cpu_s_per_search_p50": round(p2_cpu, 4),
        "partition_rows": MAX_ROWS,
        "partition_file_bytes": blob,
        "bytes_per_row": round(blob / len(full), 1),
        "phase1_one_partition_cpu_ms_p50": round(1000 * p1_cpu, 1),
        "phase1_one_partition_wall_ms_p50": round(1000 * float(np.median([w for w, _ in one])), 1),
        "phase1_1M_in_one_process_ms_p50": round(1000 * float(np.median(million)), 1),
        "phase1_1M_in_one_process_ms_p95": round(1000 * float(np.percentile(million, 95)), 1),
        "synthetic_rows": args.rows,
        "peak_rss_mib": round(rss, 0),
        "rss_before_partitions_mib": round(rss0, 0),
    }
    out = {"measured": measured, "assumed": a, "earlier_design_measured": OLD, "model": []}
    for n in (10_000, 100_000, 1_000_000, 10_000_000):
        out["model"].append({"images": n, "two_phase": two_phase(n, measured, a), "per_shard_plan": per_shard(n, a)})
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


def _any_cold(invocations: int, share: float) -> float:
    return 1 - (1 - share) ** invocations


def two_phase(n: int, m: dict, a: dict) -> dict:
    """Invocations, bytes, latency and dollars of one search over ``n`` images, two-phase plan."""
    parts = math.ceil(n / MAX_ROWS)
    rows = min(n, MAX_ROWS)
    p1_s = m["phase1_one_partition_cpu_ms_p50"] / 1000 * rows / MAX_ROWS
    part_mb = m["partition_file_bytes"] * rows / MAX_ROWS / 1e6
    cold_extra = a["cold_start_s"] + part_mb / a["s3_read_mb_s"]
    shortlist = m["shortlist_mean"]
    reranks = math.ceil(shortlist / RERANK_BATCH)
    per_batch = shortlist / reranks
    read_s = math.ceil(per_batch / a["parallel_gets"]) * (a["s3_get_ms"] / 1000 + a["detail_kb"] / 1000 / a["s3_read_mb_s"])
    p2_s = m["rerank_cpu_s_per_search_p50"] / reranks + read_s
    api_s = a["query_prep_s"] + a["query_put_ms"] / 1000 + 2 * a["invoke_ms"] / 1000
    p50 = api_s + p1_s + p2_s
    # A search waits for its slowest invocation: past 5% chance of a cold one, p95 carries a cold start.
    p95 = p50 + (cold_extra if _any_cold(parts + reranks, a["cold_share"]) >= 0.05 else 0.0)
    gb_s = a["lambda_gb"] * (
        p50  # the API function waits for both phases
        + parts * (p1_s + a["cold_share"] * cold_extra)
        + reranks * (p2_s + a["cold_share"] * a["cold_start_s"])
    )
    gets = math.ceil(shortlist) + parts * a["cold_share"] + 2  # details, cold partition reads, query features
    usd = 1000 * (gb_s * a["usd_per_gb_s"] + (parts + reranks + 1) * a["usd_per_request"] + gets * a["usd_per_s3_get"] + a["usd_per_s3_put"])
    return {
        "invocations": parts + reranks,
        "phase1_invocations": parts,
        "rerank_invocations": reranks,
        "read_warm_mb": round(shortlist * a["detail_kb"] / 1000, 1),
        "read_cold_mb": round(shortlist * a["detail_kb"] / 1000 + parts * part_mb, 1),
        "p50_s": round(p50, 2),
        "p95_s": round(p95, 2),
        "p_any_cold": round(_any_cold(parts + reranks, a["cold_share"]), 3),
        "usd_per_1000": round(usd, 3),
    }


def per_shard(n: int, a: dict) -> dict:
    """The same for the earlier plan: every shard scored and reranked in its own invocation."""
    shards = math.ceil(n / OLD["shard_images"])
    cold_extra = a["cold_start_s"] + OLD["shard_mb"] / a["s3_read_mb_s"]
    api_s = a["query_prep_s"] + a["query_put_ms"] / 1000 + a["invoke_ms"] / 1000
    p50 = api_s + OLD["shard_s"]
    p95 = p50 + (cold_extra if _any_cold(shards, a["cold_share"]) >= 0.05 else 0.0)
    gb_s = a["lambda_gb"] * (p50 + shards * (OLD["shard_s"] + a["cold_share"] * cold_extra))
    gets = shards * a["cold_share"] + 1  # a shard held everything; warm containers kept theirs
    usd = 1000 * (gb_s * a["usd_per_gb_s"] + (shards + 1) * a["usd_per_request"] + gets * a["usd_per_s3_get"] + a["usd_per_s3_put"])
    return {
        "invocations": shards,
        "reranks": shards * OLD["reranks_per_shard"],
        "read_cold_mb": round(shards * OLD["shard_mb"], 0),
        "p50_s": round(p50, 2),
        "p95_s": round(p95, 2),
        "usd_per_1000": round(usd, 2),
    }


if __name__ == "__main__":
    main()
