"""What the duplicate-groups job costs per image as the catalog grows.

The job (``pictrace.catalog.duplicates.scan``) searches a LocalIndex of the
whole catalog once per image.  This times that loop, with the job's
settings (10 neighbours, 8 candidates per phase-1 signal, pairs at 0.5 or
more), on catalogs of distractors (tiles and mosaics of scikit-image's
samples, as the main benchmark pads with) plus one re-encoded copy of every
tenth image, so there are duplicates to find.  Reading the features from
the bucket is not included (the job does it with 16 threads before the loop).

    python -m benchmarks.duplicates --sizes 250 1000 --out benchmarks/duplicates-results.json
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
from skimage import data as samples

from benchmarks.distractors import encode_distractor, make_distractor
from pictrace.api import LocalIndex
from pictrace.config import Config
from pictrace.core.features import extract_features

SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "horse", "immunohistochemistry")


def sources() -> list[np.ndarray]:
    out = []
    for name in SOURCES:
        img = getattr(samples, name)()
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        out.append(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR))
    return out


def catalog(n: int) -> tuple[LocalIndex, float]:
    """A LocalIndex of ``n`` images (a tenth of them copies); and the seconds its features took."""
    src, index = sources(), LocalIndex()
    started = time.perf_counter()
    for i in range(n):
        if i % 10 == 9:  # a copy of the image before, cropped and re-encoded harder
            img = make_distractor(src, 7, i - 1)
            h, w = img.shape[:2]
            data = cv2.imencode(".jpg", img[h // 16 :, w // 20 :], [cv2.IMWRITE_JPEG_QUALITY, 50])[1].tobytes()
        else:
            data = encode_distractor(make_distractor(src, 7, i), i)
        index.add_features(extract_features(data))
    return index, time.perf_counter() - started


def time_scan(index: LocalIndex, config: Config) -> dict:
    started = time.perf_counter()
    pairs = set()
    ids = sorted(index._rows)
    for sha in ids:
        for m in index.similar(sha, k=config.duplicates_neighbours, min_score=config.duplicates_floor, shortlist=config.duplicates_shortlist):
            pairs.add((min(sha, m.id), max(sha, m.id)))
    seconds = time.perf_counter() - started
    return {"images": len(ids), "seconds": round(seconds, 2), "ms_per_image": round(1000 * seconds / len(ids), 2), "pairs": len(pairs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    config, rows = Config(), []
    for n in args.sizes:
        index, features_s = catalog(n)
        row = {**time_scan(index, config), "features_seconds": round(features_s, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"settings": {"neighbours": config.duplicates_neighbours, "shortlist": config.duplicates_shortlist,
                                    "floor": config.duplicates_floor}, "runs": rows}, f, indent=2)


if __name__ == "__main__":
    main()
