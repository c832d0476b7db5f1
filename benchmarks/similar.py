"""Looks-like benchmark: does an image's nearest neighbour show the same kind of thing?

    python -m benchmarks.similar --data DIR [--json OUT]

DIR holds one sub-folder per class (``DIR/<class>/<image>``); every image is
a query against all the others (leave-one-out). Reported in one run, for
the same images: precision@1 (the nearest other image has the query's class)
and mAP@10 (mean average precision of the ten nearest) of

- ``embedding``: cosine of the float32 EfficientNet-Lite0 vectors,
- ``embedding_int8``: the same from int8 codes (1280 bytes per image),
- ``projected256_int8``: a fixed seeded projection to 256 dims, int8 (256 bytes),
- ``colour_histogram``: pictrace.core.features.coarse_histogram,
- ``layout``: pictrace.core.features.gist_vector,

plus milliseconds per image for embedding on one core (median, after one
warm-up). Classes with a single image are skipped as queries.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from pictrace.core.features import THUMB_SIDE, canonical_square, coarse_histogram, gist_vector
from pictrace.model import embedding

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def load_labelled(root: Path) -> list[tuple[str, Path]]:
    """(class, path) for every image under ``root/<class>/``, in a stable order."""
    items = [(d.name, p) for d in sorted(root.iterdir()) if d.is_dir()
             for p in sorted(d.rglob("*")) if p.suffix.lower() in SUFFIXES]
    if not items:
        raise SystemExit(f"similar: no images under {root}/<class>/")
    return items


def ranking_metrics(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> dict[str, float]:
    """precision@1 and mAP@k of cosine ranking (rows must be unit vectors), leave-one-out."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    p1, aps = [], []
    for i in range(len(labels)):
        relevant = int((labels == labels[i]).sum()) - 1
        if relevant == 0:
            continue
        order = np.argsort(-sims[i], kind="stable")
        order = order[order != i][:k]  # never the query itself, even when fewer than k others exist
        hits = labels[order] == labels[i]
        p1.append(float(hits[0]))
        precisions = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append(float((precisions * hits).sum() / min(relevant, k)))
    return {"precision_at_1": round(float(np.mean(p1)), 4), "map_at_10": round(float(np.mean(aps)), 4), "queries": len(p1)}


def _unit_rows(m: np.ndarray) -> np.ndarray:
    m = m.astype(np.float32)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def run(root: Path) -> dict[str, object]:
    cv2.setNumThreads(1)  # "ms per image on one core"
    items = load_labelled(root)
    labels = np.array([c for c, _ in items])
    emb, hist, gist, times = [], [], [], []
    for i, (_, path) in enumerate(items):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"similar: cannot decode {path}")
        t0 = time.perf_counter()
        emb.append(embedding.embed(bgr).vector)
        if i:  # the first call loads the net
            times.append((time.perf_counter() - t0) * 1000)
        square = canonical_square(bgr)
        thumb = cv2.resize(cv2.cvtColor(square, cv2.COLOR_BGR2GRAY), (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA)
        hist.append(coarse_histogram(square))
        gist.append(gist_vector(thumb))
    e = np.stack(emb)
    signals = {
        "embedding": e,
        "embedding_int8": _unit_rows(embedding.dequantise(embedding.quantise(e))),
        "projected256_int8": _unit_rows(embedding.dequantise(embedding.quantise(np.stack([embedding.project(v) for v in e])))),
        "colour_histogram": _unit_rows(np.stack(hist)),
        "layout": _unit_rows(np.stack(gist)),
    }
    return {
        "data": str(root), "images": len(items), "classes": len(set(labels)),
        "bytes_per_image": {"embedding": 4 * embedding.DIMS, "embedding_int8": embedding.DIMS, "projected256_int8": 256},
        "embed_ms_per_image_median": round(float(np.median(times)), 2) if times else None,
        "results": {name: ranking_metrics(v, labels) for name, v in signals.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.similar", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of <class>/<image> files")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = run(args.data)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
