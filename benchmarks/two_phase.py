"""The two-phase search on the benchmark catalog: shortlist recall, recall@1, latency, cascade work.

    python -m benchmarks.two_phase                       # 10k catalog, every query
    python -m benchmarks.two_phase --size 10000 --every 3 --per-signal 32,48

Uses the feature cache of ``python -m benchmarks.run`` (computing what is
missing), or ``--store DIR`` for another cache of the same layout.  Queries
are searched from their stored features, so latencies exclude decoding and
feature extraction of the query (about 30-60 ms on this machine).  Writes
benchmarks/two-phase-results.json (10k) or two-phase-<N>k-results.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.data import CACHE_DIR, load_catalog
from benchmarks.jobs import FeatureJobs, store_for
from benchmarks.store import FeatureStore
from pictrace.api import LocalIndex, candidate_query
from pictrace.core.candidates import candidates, shortlist
from pictrace.core.features import ImageFeatures
from pictrace.core.scoring import Query

OUT = Path(__file__).resolve().parent / "two-phase-results.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1, help="use every n-th query")
    ap.add_argument("--per-signal", default="32", help="comma-separated shortlist sizes per signal")
    ap.add_argument("--store", type=Path, help="feature cache folder (default: the engine's)")
    args = ap.parse_args()

    store = FeatureStore(args.store) if args.store else store_for(CACHE_DIR)
    cat = load_catalog()
    sources = cat.query_sources()
    jobs = FeatureJobs(store, sources, 0)
    cb = jobs.catalog(cat.images)
    qb = jobs.queries(list(range(len(sources))))
    db = jobs.distractors(max(0, args.size - len(cb)))
    jobs.close()

    index = LocalIndex()
    for blob, name in zip(cb.blobs + db.blobs, cb.names + db.names):
        index.add_features(ImageFeatures.from_bytes(blob), {"name": name})
    parts = index.partitions()
    rows = len(index)
    bytes_per_row = sum(len(p.to_bytes()) for p in parts) / rows
    by_name = {f: n for f, n in zip(qb.names, qb.blobs)}
    names = qb.names[:: args.every]
    group = cat.group_of
    out = {"size": rows, "queries": len(names), "partition_bytes_per_row": round(bytes_per_row, 1), "runs": {}}
    print(f"{rows} images, {len(names)} queries, {bytes_per_row:.0f} bytes per partition row")
    for per in [int(x) for x in args.per_signal.split(",")]:
        fam_hits: dict[str, list] = {}
        reached, first, t_all, t_one, work_full, work_cands = [], [], [], [], [], []
        for qn in names:
            family, source = qn.split("|", 1)
            relevant = {n for n, g in group.items() if g == group[source]}
            query = Query(features=ImageFeatures.from_bytes(by_name[qn]))
            t = time.perf_counter()
            cq = candidate_query(query)
            short = shortlist([c for p in parts for c in candidates(cq, p, per_signal=per)], per)
            t_one.append(time.perf_counter() - t)
            reached.append(any(index.meta(c.id)["name"] in relevant for c in short))
            t = time.perf_counter()
            hits = index.search(query, k=5, shortlist=per)
            t_all.append(time.perf_counter() - t)
            ok = bool(hits) and hits[0].meta["name"] in relevant
            first.append(ok)
            fam_hits.setdefault(family, []).append((reached[-1], ok))
            work_full.append(index.last_work.full)
            work_cands.append(index.last_work.candidates)
        run = {
            "shortlist_recall": round(float(np.mean(reached)), 4),
            "recall@1": round(float(np.mean(first)), 4),
            "search_ms_p50": round(1000 * float(np.median(t_all)), 1),
            "search_ms_p95": round(1000 * float(np.percentile(t_all, 95)), 1),
            "phase1_ms_p50": round(1000 * float(np.median(t_one)), 1),
            "reranked_mean": round(float(np.mean(work_cands)), 1),
            "fully_scored_mean": round(float(np.mean(work_full)), 1),
            "families": {
                f: {"shortlist_recall": round(float(np.mean([a for a, _ in v])), 3), "recall@1": round(float(np.mean([b for _, b in v])), 3)}
                for f, v in sorted(fam_hits.items())
            },
        }
        out["runs"][str(per)] = run
        print(json.dumps({k: v for k, v in run.items() if k != "families"}))
        for f, v in run["families"].items():
            print(f"  {f:28s} shortlist {v['shortlist_recall']:.3f}  recall@1 {v['recall@1']:.3f}")
    path = OUT if args.size == 10_000 else OUT.with_name(f"two-phase-{args.size // 1000}k-results.json")
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
