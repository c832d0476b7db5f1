"""Looks-like benchmark: does an image's nearest neighbour show the same kind of thing?

    python -m benchmarks.similar [--data DIR] [--json OUT] [--no-ingest-rate]

DIR holds one sub-folder per class (``DIR/<class>/<image>``; default: the
set :mod:`benchmarks.similar_data` builds from Debian packages, made on first
use). Every image is added to a :class:`pictrace.api.LocalIndex` (the real
ingest: features, embedding, codes, labels) and is then a query against all
the others (leave-one-out). Reported in one run, for the same images:
precision@1 (the nearest other image has the query's class) and mAP@10
(mean average precision of the ten nearest) of

- ``mode_similar``: ``LocalIndex.similar(id, k=10, mode="similar")``, the two
  phases exactly as a search runs them (96 int8 codes per row, then the full
  embedding's cosine over the shortlist),
- ``embedding``: exhaustive cosine of the float EfficientNet-Lite0 vectors
  (what the two phases approximate),
- ``semantic_codes``: exhaustive cosine of the 96 int8 index-row codes alone,
- ``colour_histogram``: pictrace.core.features.coarse_histogram (the baseline),
- ``layout``: pictrace.core.features.gist_vector (the other baseline),

each overall and per source (the first part of a file name), plus the cost
per image at ingest (with and without the model, one process) and per
search, and ingest throughput on 2 processes for 2-5 MP JPEGs (the copy
benchmark's ingest set), and whether the codes would add anything to copy
detection's shortlist (:func:`copy_shortlist`). Classes with a single image
are skipped as queries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from pictrace.api import LocalIndex
from pictrace.core.features import extract_features
from pictrace.model import embedding

# benchmarks.similar_data names every file after its package.
_SOURCES = ("gcompris-qt-data", "scratch", "dataset-fashion-mnist")
RESULTS = Path(__file__).resolve().parent / "similar-results.json"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def load_labelled(root: Path) -> list[tuple[str, Path]]:
    """(class, path) for every image under ``root/<class>/``, in a stable order."""
    items = [(d.name, p) for d in sorted(root.iterdir()) if d.is_dir()
             for p in sorted(d.rglob("*")) if p.suffix.lower() in SUFFIXES]
    if not items:
        raise SystemExit(f"similar: no images under {root}/<class>/")
    return items


def ranking_metrics(vectors: np.ndarray, labels: np.ndarray, k: int = 10, only: np.ndarray | None = None) -> dict[str, float]:
    """precision@1 and mAP@k of cosine ranking (rows must be unit vectors), leave-one-out.

    ``only`` (bool per row) restricts the queries, not the images searched.
    """
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    rankings = []
    for i in range(len(labels)):
        order = np.argsort(-sims[i], kind="stable")
        rankings.append(order[order != i][:k])  # never the query itself, even when fewer than k others exist
    return ranked_metrics(rankings, labels, k, only)


def ranked_metrics(rankings: list[np.ndarray], labels: np.ndarray, k: int = 10, only: np.ndarray | None = None) -> dict[str, float]:
    """precision@1 and mAP@k of given rankings (row indices, best first, the query left out), one per image."""
    p1, aps = [], []
    for i, order in enumerate(rankings):
        relevant = int((labels == labels[i]).sum()) - 1
        if relevant == 0 or (only is not None and not only[i]):
            continue
        hits = labels[np.asarray(order, np.int64)[:k]] == labels[i]
        p1.append(float(hits[0]) if len(hits) else 0.0)
        precisions = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append(float((precisions * hits).sum() / min(relevant, k)))
    return {"precision_at_1": round(float(np.mean(p1)), 4), "map_at_10": round(float(np.mean(aps)), 4), "queries": len(p1)}


def _unit_rows(m: np.ndarray) -> np.ndarray:
    m = m.astype(np.float32)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def run(root: Path, ingest_rate: bool = True) -> dict[str, object]:
    cv2.setNumThreads(1)  # "ms per image on one core"
    items = load_labelled(root)
    labels = np.array([c for c, _ in items])
    sources = np.array([next((s for s in _SOURCES if p.name.startswith(s + "-")), "other") for _, p in items])
    index = LocalIndex()
    ids, emb, codes, hist, gist, ingest_ms = [], [], [], [], [], []
    for _, path in items:
        data = path.read_bytes()
        t0 = time.perf_counter()
        features = extract_features(data)
        ids.append(index.add_features(features, {"name": path.name}))
        ingest_ms.append((time.perf_counter() - t0) * 1000)
        if features.embedding is None:
            raise SystemExit(f"similar: no embedding model; build it with: {embedding.BUILD_COMMAND}")
        emb.append(features.embedding.astype(np.float32))
        codes.append(features.semantic.astype(np.float32))
        hist.append(features.chist.astype(np.float32))
        gist.append(features.gist.astype(np.float32))
    row = {sha: i for i, sha in enumerate(ids)}
    rankings, search_ms = [], []
    for sha in ids:
        t0 = time.perf_counter()
        found = index.similar(sha, k=10, mode="similar")
        search_ms.append((time.perf_counter() - t0) * 1000)
        rankings.append(np.array([row[m.id] for m in found], np.int64))
    signals = {
        "embedding": _unit_rows(np.stack(emb)),
        "semantic_codes": _unit_rows(np.stack(codes)),
        "colour_histogram": _unit_rows(np.stack(hist)),
        "layout": _unit_rows(np.stack(gist)),
    }
    groups = {"all": None, **{src: sources == src for src in sorted(set(sources))}}
    results = {
        name: {"mode_similar": ranked_metrics(rankings, labels, only=only),
               **{s: ranking_metrics(v, labels, only=only) for s, v in signals.items()}}
        for name, only in groups.items()
    }
    p1 = results["all"]["mode_similar"]["precision_at_1"]
    base = results["all"]["colour_histogram"]["precision_at_1"]
    report = {
        "data": str(root), "images": len(items), "classes": len(set(labels)),
        "images_per_source": {src: int((sources == src).sum()) for src in sorted(set(sources))},
        "bytes_per_image": {"index_row_codes": embedding.SEMANTIC_DIMS, "detail_embedding": 2 * embedding.DIMS},
        "results": results,
        "cost": _costs(items, ingest_ms, search_ms, root),
        "targets": [
            {"target": "mode=similar precision@1 >= 0.75", "measured": p1, "pass": p1 >= 0.75},
            {"target": "mode=similar precision@1 >= 1.6x the colour histogram's", "measured": round(p1 / base, 2) if base else None,
             "pass": base > 0 and p1 >= 1.6 * base},
        ],
    }
    report["copy_shortlist"] = copy_shortlist(index, ids, items)
    if ingest_rate:
        report["ingest_2_processes"] = _ingest_rate()
        rate = report["ingest_2_processes"]["with_model"]["images_per_s"]
        report["targets"].append({"target": "ingest >= 40 images/s of 2-5 MP JPEGs on 2 processes", "measured": round(rate, 1), "pass": rate >= 40})
    return report


def copy_shortlist(index: LocalIndex, ids: list[str], items, per_source: int = 40) -> dict:
    """Would the looks-like codes help copy detection's shortlist? Edited copies of catalog photos as queries.

    For every family of :mod:`benchmarks.transforms` and ``per_source``
    colour photos of the set: is the original in the default shortlist
    (phase 1's four signals), in the best ``SHORTLIST`` rows by the codes,
    and how often only the codes find it.
    """
    from benchmarks.transforms import FAMILIES, make_query
    from pictrace.api import candidate_query, prepare_query
    from pictrace.core.decode import decode
    from pictrace.core.candidates import DEFAULT_PER_SIGNAL, candidates, shortlist

    photos = [i for i, (_, p) in enumerate(items) if not p.name.startswith("dataset-fashion-mnist-")][:per_source]
    parts = index.partitions()
    out: dict[str, dict] = {}
    for family in FAMILIES:
        default = semantic = only = n = 0
        for k, i in enumerate(photos):
            # PicTrace's decoder, as ingest saw the photo (it flattens transparency on white; imread would not).
            bgr = decode(items[i][1].read_bytes())
            q = prepare_query(make_query(bgr, family, items[i][1].name, k, 0).data)
            cq = candidate_query(q)
            found = [c for p in parts for c in candidates(cq, p)]
            in_default = ids[i] in {c.id for c in shortlist(found, DEFAULT_PER_SIGNAL)}
            sem = [c for p in parts for c in candidates(cq, p, mode="similar")]
            in_semantic = ids[i] in {c.id for c in shortlist(sem, DEFAULT_PER_SIGNAL, "similar")}
            n += 1
            default += in_default
            semantic += in_semantic
            only += in_semantic and not in_default
        out[family] = {"queries": n, "default_shortlist_recall": round(default / n, 4),
                       "semantic_top_recall": round(semantic / n, 4), "found_only_by_semantic": only}
    total = sum(v["queries"] for v in out.values())
    return {"catalog": len(ids), "per_signal": DEFAULT_PER_SIGNAL, "families": out,
            "default_shortlist_recall": round(sum(v["default_shortlist_recall"] * v["queries"] for v in out.values()) / total, 4),
            "found_only_by_semantic": sum(v["found_only_by_semantic"] for v in out.values()), "queries": total}


def _costs(items, ingest_ms: list[float], search_ms: list[float], root: Path) -> dict:
    """Milliseconds per image at ingest (features + embedding, and the embedding alone) and per search."""
    sample = [p for _, p in items[:: max(1, len(items) // 60)]]
    embed_ms, bytes_ms = [], []
    index = LocalIndex()
    for path in sample:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        t0 = time.perf_counter()
        embedding.embed(bgr)
        embed_ms.append((time.perf_counter() - t0) * 1000)
        index.add(path.read_bytes())
    for path in sample:  # a search from image bytes: decode, features, embedding, both phases
        t0 = time.perf_counter()
        index.search(path.read_bytes(), k=10, mode="similar")
        bytes_ms.append((time.perf_counter() - t0) * 1000)
    med = lambda v: round(float(np.median(v)), 2)  # noqa: E731
    return {
        "ingest_ms_per_image_median": med(ingest_ms[1:]),
        "embed_ms_per_image_median": med(embed_ms[1:]),
        "similar_search_ms_median_stored_query": med(search_ms),
        "similar_search_ms_median_from_bytes": med(bytes_ms),
        "search_catalog_images": len(items),
        "load_average": round(os.getloadavg()[0], 2),
    }


def _one_thread() -> None:
    cv2.setNumThreads(1)


def _ingest_rate() -> dict:
    """Images/s on 2 processes for the copy benchmark's 2-5 MP JPEGs, with and without the model.

    Each worker runs OpenCV on one thread, as a Lambda function at 1769 MB
    (one vCPU) does; with OpenCV's default of a thread per core, two workers
    on two cores oversubscribe them (measured too, as ``default_threads``).
    """
    import multiprocessing as mp

    from benchmarks import engine, timing
    from benchmarks.data import load_catalog

    images = timing.ingest_images(load_catalog().images, 100, 0)

    def rate() -> dict:
        with mp.get_context("spawn").Pool(2, initializer=_one_thread) as pool:
            pool.map(engine.catalog_blob, images[:4], chunksize=1)  # imports, the net, warm-up
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            pool.map(engine.catalog_blob, images, chunksize=1)
            return {"images_per_s": round(len(images) / (time.perf_counter() - t0), 1), "load_average_before": round(load, 2)}

    out = {"images": len(images), "with_model": rate(), "default_threads": timing.ingest_rate(images)}
    saved = os.environ.get("PICTRACE_MODEL_PATH")
    os.environ["PICTRACE_MODEL_PATH"] = "/nonexistent/efficientnet_lite0.onnx"  # the workers degrade: no embedding
    try:
        out["without_model"] = rate()
    finally:
        if saved is None:
            del os.environ["PICTRACE_MODEL_PATH"]
        else:
            os.environ["PICTRACE_MODEL_PATH"] = saved
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.similar", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="folder of <class>/<image> files (default: benchmarks.similar_data's set)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"also write the report here (default {RESULTS})")
    parser.add_argument("--no-ingest-rate", action="store_true", help="skip the 2-process ingest measurement")
    args = parser.parse_args(argv)
    data = args.data
    if data is None:
        from benchmarks import similar_data

        data = similar_data.OUT
        if not (data / "manifest.json").is_file():
            similar_data.build(data)
    report = run(data, ingest_rate=not args.no_ingest_rate)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
