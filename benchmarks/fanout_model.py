"""Phase 1 at a million rows, and a model of the serverless fan-out from measured costs.

    python -m benchmarks.fanout_model --store benchmarks/.cache/features/exp

Synthetic rows: the benchmark catalog's real index rows (photos and
distractors), each reused under fresh ids until the count is reached, so
their layouts, colours and word statistics are those of real rows.  Measures
phase 1 over one full partition (65,536 rows) and over 1M rows in one
process, then models invocations, bytes, latency and dollars per search for
10k-10M images for today's two-phase plan and for the earlier plan (one
scoring invocation per 5,000 images, measured per-shard cost taken from
the README of that design: 0.57 s for two shards at 10k).  Writes
benchmarks/fanout-results.json.
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
from pictrace.core import compact
from pictrace.core.candidates import candidates, query_side, shortlist
from pictrace.core.features import ImageFeatures
from pictrace.core.partition import MAX_ROWS, Partition
from pictrace.core.scoring import Query

OUT = Path(__file__).resolve().parent / "fanout-results.json"
GB_S = 0.0000166667  # $ per GB-second (x86)
MEMORY_GB = 1.769
INVOKE = 0.0000002  # $ per request
S3_GET = 0.0000004  # $ per GET
S3_MBPS = 90.0  # assumed cold read rate of one object, MB/s
COLD_SHARE = 0.1  # assumed share of partition invocations that start cold
COLD_START_S = 1.5  # assumed init time of a cold scoring function (imports, OpenCV)
SHORTLIST = 128
RERANK_BATCH = 48
OLD_SHARD = 5000
OLD_SHARD_S = 0.57 / 2  # measured per-shard scoring at 10k with the earlier design
OLD_SHARD_MB = 33.0  # cold read per 5,000-image shard, earlier design


def rows_from(store: FeatureStore) -> list[compact.IndexRow]:
    rows = []
    for path in sorted(glob.glob(str(store.root / "*.npz"))):
        name = os.path.basename(path)[:-4]
        if name.startswith(("distractors", "catalog")):
            rows += [compact.index_row(ImageFeatures.from_bytes(b)) for b in store.load(name).blobs]
    return rows


def queries_from(store: FeatureStore, n: int) -> list[Query]:
    names = sorted(os.path.basename(p)[:-4] for p in glob.glob(str(store.root / "queries*.npz")))
    out = []
    for name in names:
        out += [Query(features=ImageFeatures.from_bytes(b)) for b in store.load(name).blobs[::17]]
    return out[:n]


def synthetic(rows: list[compact.IndexRow], count: int, start: int) -> Partition:
    return Partition.build(
        compact.IndexRow(f"{start + i:064x}", r.layout, r.colour, r.words) for i, r in zip(range(count), _cycle(rows))
    )


def _cycle(rows):
    while True:
        yield from rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--rerank-ms", type=float, required=True, help="measured phase-2 time per search (benchmarks.two_phase)")
    args = ap.parse_args()
    store = FeatureStore(args.store)
    real = rows_from(store)
    queries = [query_side(q) for q in queries_from(store, args.queries)]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    parts = [synthetic(real, min(MAX_ROWS, args.rows - s), s) for s in range(0, args.rows, MAX_ROWS)]
    full = parts[0]
    blob = len(full.to_bytes())
    one = []
    for cq in queries:
        t = time.perf_counter()
        candidates(cq, full, per_signal=32)
        one.append(time.perf_counter() - t)
    per_partition_s = float(np.median(one[1:]))  # the first call builds the warm caches
    million = []
    for cq in queries:
        t = time.perf_counter()
        shortlist([c for p in parts for c in candidates(cq, p, per_signal=32)], 32)
        million.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "synthetic_rows": args.rows,
        "partition_rows": MAX_ROWS,
        "partition_file_bytes": blob,
        "bytes_per_row": round(blob / len(full), 1),
        "phase1_one_partition_ms_p50": round(1000 * per_partition_s, 1),
        "phase1_1M_in_one_process_ms_p50": round(1000 * float(np.median(million[1:])), 1),
        "phase1_1M_in_one_process_ms_p95": round(1000 * float(np.percentile(million[1:], 95)), 1),
        "peak_rss_mib": round(rss, 0),
        "rss_before_partitions_mib": round(rss0, 0),
        "assumptions": {"s3_cold_read_MBps": S3_MBPS, "cold_share": COLD_SHARE, "cold_start_s": COLD_START_S,
                        "lambda_gb": MEMORY_GB, "usd_per_gb_s": GB_S, "rerank_ms": args.rerank_ms},
        "model": [],
    }
    mb = blob / 1e6
    for n in (10_000, 100_000, 1_000_000, 10_000_000):
        p = math.ceil(n / MAX_ROWS)
        rows_last = n - (p - 1) * MAX_ROWS
        warm = per_partition_s * min(n, MAX_ROWS) / MAX_ROWS
        cold = warm + COLD_START_S + mb * min(n, MAX_ROWS) / MAX_ROWS / S3_MBPS
        reranks = math.ceil(SHORTLIST / RERANK_BATCH)
        rerank_s = args.rerank_ms / 1000 / reranks * 2  # batches run in parallel; one thread each instead of two
        p50 = warm + rerank_s + 0.15  # API: plan, query features, merges
        p95 = (cold if p * COLD_SHARE >= 0.05 else warm) + rerank_s + 0.15
        gb_s = (p * (warm + COLD_SHARE * (cold - warm)) + reranks * rerank_s + 0.3) * MEMORY_GB
        usd = 1000 * (gb_s * GB_S + (p + reranks + 1) * INVOKE + (SHORTLIST + 8 + 3) * S3_GET)
        o = math.ceil(n / OLD_SHARD)
        old_gb_s = (o * (OLD_SHARD_S + COLD_SHARE * (COLD_START_S + OLD_SHARD_MB / S3_MBPS)) + 0.3) * MEMORY_GB
        old_usd = 1000 * (old_gb_s * GB_S + (o + 1) * INVOKE + o * 48 * 4 * S3_GET)
        out["model"].append({
            "images": n,
            "two_phase": {"invocations": p + reranks, "cold_read_mb_per_partition": round(mb * min(n, MAX_ROWS) / MAX_ROWS, 1),
                          "bytes_read_warm_mb": round(SHORTLIST * 0.045, 1), "p50_s": round(p50, 2), "p95_s": round(p95, 2),
                          "usd_per_1000": round(usd, 3)},
            "per_shard_plan": {"invocations": o, "bytes_read_cold_mb": round(o * OLD_SHARD_MB, 0), "usd_per_1000": round(old_usd, 2)},
        })
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
