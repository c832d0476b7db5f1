"""In-process search latency from image bytes at several catalog sizes, in one run; LocalIndex memory.

    python -m benchmarks.latency                          # 1k, 10k and 100k, 60 queries
    python -m benchmarks.latency --sizes 1000,10000 --queries 120
    python -m benchmarks.latency --rss 100000            # resident memory of a LocalIndex of that size

One LocalIndex per size is built from the benchmark's cached features
(catalog images first, then distractors, each size a prefix of the next).
Every query is searched from its JPEG bytes in every index in turn, so
machine noise hits the sizes alike and the ratios between them hold even
on a busy machine; the figures are medians and 95th percentiles of
``LocalIndex.search(bytes, k=5)``, which decodes the query, extracts its
features, runs both phases and names the results.  Features missing from
the cache are computed first (``--store`` picks another cache folder).
Writes benchmarks/latency-results.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.data import CACHE_DIR, decode_bgr, load_catalog
from benchmarks.jobs import DISTRACTOR_CHUNK, FeatureJobs, store_for
from benchmarks.store import FeatureStore
from benchmarks.transforms import FAMILIES, make_query
from pictrace.api import LocalIndex
from pictrace.core.features import ImageFeatures

OUT = Path(__file__).resolve().parent / "latency-results.json"


def build(jobs: FeatureJobs, store: FeatureStore, catalog_batch, size: int) -> LocalIndex:
    """A LocalIndex of the first ``size`` images, reading the distractor cache a chunk at a time."""
    index = LocalIndex()
    for blob, name in zip(catalog_batch.blobs[:size], catalog_batch.names[:size]):
        index.add_features(ImageFeatures.from_bytes(blob), {"name": name})
    left = size - len(index)
    for start in range(0, max(0, left), DISTRACTOR_CHUNK):
        chunk = store.load(jobs.distractor_key(start))
        take = min(DISTRACTOR_CHUNK, left - start)
        for blob, name in zip(chunk.blobs[:take], chunk.names[:take]):
            index.add_features(ImageFeatures.from_bytes(blob), {"name": name})
    index.partitions()  # build the phase-1 partitions now, not in the first search
    return index


def rss_mib() -> tuple[float, float, float, float]:
    """(current, peak, anonymous, file-backed) resident memory of this process in MiB.

    File-backed pages are the memory-mapped detail files the index wrote
    or read: page cache the kernel reclaims under pressure, unlike
    anonymous memory.
    """
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mib = [int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM", "RssAnon", "RssFile")]
    return mib[0], mib[1], mib[2], mib[3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--queries", type=int, default=60, help="query images (sources x families, spread evenly)")
    ap.add_argument("--store", type=Path, help="feature cache folder (default: the engine's)")
    ap.add_argument("--rss", type=int, help="only report the memory of a LocalIndex of this size")
    args = ap.parse_args()

    store = FeatureStore(args.store) if args.store else store_for(CACHE_DIR)
    cat = load_catalog()
    sources = cat.query_sources()
    jobs = FeatureJobs(store, sources, 0)
    catalog_batch = jobs.catalog(cat.images)
    sizes = [args.rss] if args.rss else [int(s) for s in args.sizes.split(",")]
    needed = max(0, max(sizes) - len(catalog_batch.names))
    for start in range(0, needed, DISTRACTOR_CHUNK):  # compute what the cache lacks, one chunk at a time
        if not store.path(jobs.distractor_key(start)).exists():
            jobs.distractors(start + DISTRACTOR_CHUNK)
    jobs.close()

    if args.rss:
        before = rss_mib()[0]
        index = build(jobs, store, catalog_batch, args.rss)
        gc.collect()
        now, peak, anon, mapped = rss_mib()
        print(json.dumps({"size": len(index), "rss_mib": round(now, 1), "peak_rss_mib": round(peak, 1),
                          "anonymous_mib": round(anon, 1), "file_backed_mib": round(mapped, 1),
                          "rss_before_index_mib": round(before, 1)}))
        return

    indexes = {}
    for size in sizes:
        t = time.perf_counter()
        indexes[size] = build(jobs, store, catalog_batch, size)
        print(f"  index of {len(indexes[size])} images in {time.perf_counter() - t:.0f} s", flush=True)

    pairs = [(s, f) for s in range(len(sources)) for f in FAMILIES]
    pick = np.linspace(0, len(pairs) - 1, min(args.queries, len(pairs))).round().astype(int)
    queries = []
    for i in pick:
        s, family = pairs[i]
        img = decode_bgr(sources[s].data)
        queries.append(make_query(img, family, sources[s].name, s, 0).data)

    for index in indexes.values():  # warm caches (partitions' unit rows, the model) before timing
        index.search(queries[0], k=5)
    times: dict[int, list[float]] = {s: [] for s in sizes}
    for data in queries:
        for size in sizes:
            t = time.perf_counter()
            indexes[size].search(data, k=5)
            times[size].append(time.perf_counter() - t)
    base = float(np.median(times[sizes[0]]))
    out = {"queries": len(queries), "sizes": {}}
    for size in sizes:
        p50, p95 = float(np.median(times[size])), float(np.percentile(times[size], 95))
        out["sizes"][str(size)] = {
            "images": len(indexes[size]),
            "p50_ms": round(1000 * p50, 1),
            "p95_ms": round(1000 * p95, 1),
            "p50_vs_smallest": round(p50 / base, 2),
        }
        print(json.dumps({"size": size, **out["sizes"][str(size)]}), flush=True)
    if max(sizes) >= 10_000:
        cmd = [sys.executable, "-m", "benchmarks.latency", "--rss", str(max(sizes))]
        if args.store:
            cmd += ["--store", str(args.store)]
        out["localindex_memory"] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(json.dumps(out["localindex_memory"]))
    OUT.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
