"""Peak memory of scoring one batch, measured in a fresh process.

``python -m benchmarks.memprobe partition DIR RANKING`` runs both phases of
the query in ``DIR/query.npz`` against the partition in ``DIR/partition.bin``,
reading detail features from ``DIR/details/<id>.npz`` only for the
shortlist, as the scoring function does with S3. ``python -m benchmarks.memprobe localindex DIR
RANKING`` instead holds every image's features in a LocalIndex. An optional
last argument is a directory to import pictrace from (the run's frozen copy).
Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from pathlib import Path


def _rss_mb() -> float:
    """Peak resident set size (VmHWM) since start or the last reset, in MiB.

    ru_maxrss is not used: Linux carries it over from the parent across
    fork + exec, so a child of a big process reports the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_peak() -> None:
    """Restart VmHWM from the current RSS (Linux >= 4.0), so a later peak is that of the next step."""
    Path("/proc/self/clear_refs").write_text("5")


def probe(mode: str, root: Path, ranking: str) -> dict:
    """Load the batch, score the query once untraced and once under tracemalloc."""
    from pictrace.api import LocalIndex
    from pictrace.core.features import ImageFeatures
    from pictrace.core.candidates import candidates, query_side, shortlist
    from pictrace.core.partition import Partition
    from pictrace.core.rerank import rerank
    from pictrace.core.scoring import Query

    after_imports = _rss_mb()
    query = Query(features=ImageFeatures.from_bytes((root / "query.npz").read_bytes()))
    details = root / "details"

    def load(ids):
        return {i: ImageFeatures.from_bytes((details / f"{i}.npz").read_bytes()) for i in ids}

    if mode == "partition":
        partition = Partition.from_bytes((root / "partition.bin").read_bytes())
        n = len(partition)

        def run():
            short = shortlist(candidates(query_side(query), partition), 32)
            return rerank(query, short, load(c.id for c in short), k=5, ranking=ranking)
    else:
        index = LocalIndex()
        for path in sorted(details.glob("*.npz")):
            index.add_features(ImageFeatures.from_bytes(path.read_bytes()))
        n = len(index)

        def run():
            return index.search(query, k=5, ranking=ranking)

    loaded = _rss_mb()
    _reset_peak()
    current_before = _rss_mb()
    t = time.perf_counter()
    run()
    seconds = time.perf_counter() - t
    peak = _rss_mb()
    tracemalloc.start()
    run()
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {
        "mode": mode,
        "ranking": ranking,
        "images": n,
        "peak_rss_imports_mb": round(after_imports, 1),
        "peak_rss_loading_mb": round(loaded, 1),
        "peak_rss_mb": round(max(peak, loaded), 1),
        "scoring_rss_increase_mb": round(max(0.0, peak - current_before), 1),
        "traced_scoring_peak_mb": round(traced_peak, 1),
        "seconds": round(seconds, 3),
    }


if __name__ == "__main__":
    if len(sys.argv) > 4:
        sys.path.insert(0, sys.argv[4])
    print(json.dumps(probe(sys.argv[1], Path(sys.argv[2]), sys.argv[3])))
