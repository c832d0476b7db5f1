"""Speed, throughput, memory and storage measurements (all single runs reported as medians)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import cv2
import numpy as np

from benchmarks import engine, seed_baseline
from benchmarks.data import CatalogImage, decode_bgr
from benchmarks.store import Batch

INGEST_PROCESSES = 2
# Directory holding the frozen pictrace package the run imports (set by run.py).
ENGINE_PATH: Path | None = None
INGEST_MIN_MP, INGEST_MAX_MP = 2.0, 5.0


def percentile(values: list[float], q: float) -> float:
    """``q``-th percentile (0-100), linear interpolation."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def stats(values: list[float]) -> dict[str, float]:
    """Median, p95, min, max and count of a list of durations in seconds."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "median_s": median(values), "p95_s": percentile(values, 95),
            "min_s": min(values), "max_s": max(values)}


class Clock:
    """Wall and process-CPU seconds of repeated calls.

    CPU time (all threads of this process) is kept beside wall time because
    the machine may be shared: under load, wall time grows, CPU time mostly
    does not.
    """

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __call__(self, fn, *args):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.wall.append(time.perf_counter() - w)
        self.cpu.append(time.process_time() - c)
        return out

    def stats(self) -> dict[str, float]:
        """:func:`stats` of the wall times plus the median CPU time."""
        out = stats(self.wall)
        if self.cpu:
            out["cpu_median_s"] = median(self.cpu)
        return out


def load_average() -> float:
    """1-minute load average (other processes competing for the 2 cores)."""
    return os.getloadavg()[0]


def original_per_pair(pairs: list[tuple[bytes, bytes]]) -> Clock:
    """Times of the original per-pair pipeline (decode, resize, 3 signals) for each pair."""
    seed_baseline.compare_bytes(*pairs[0])  # first call pays OpenCV/scikit-image warm-up
    clock = Clock()
    for q, c in pairs:
        clock(seed_baseline.compare_bytes, q, c)
    return clock


def search_seconds(index, query_blobs: list[bytes], ranking: str, budget_s: float | None = None) -> Clock:
    """Search times with query features already extracted (a fresh query object each time).

    With ``budget_s``, stops once the budget is spent (at least two are timed).
    """
    if budget_s is None:
        engine.search(index, engine.load_query(query_blobs[0]), 5, ranking)  # warm-up
    clock = Clock()
    start = time.perf_counter()
    for blob in query_blobs:
        if budget_s is not None and len(clock.wall) >= 2 and time.perf_counter() - start > budget_s:
            break
        clock(engine.search, index, engine.load_query(blob), 5, ranking)
    return clock


def latency_seconds(index, queries: list[bytes]) -> Clock:
    """End-to-end query times from image bytes (decode + features + search), default ranking."""
    engine.search(index, queries[0], 5, "default")
    clock = Clock()
    for data in queries:
        clock(engine.search, index, data, 5, "default")
    return clock


def ingest_images(sources: list[CatalogImage], count: int, seed: int) -> list[bytes]:
    """``count`` JPEGs (quality 90) of 2-5 megapixels, downscaled from the largest photos."""
    big = [s for s in sources if s.megapixels >= INGEST_MIN_MP]
    rng = np.random.default_rng([seed, 7])
    out: list[bytes] = []
    decoded: dict[str, np.ndarray] = {}
    for i in range(count):
        src = big[i % len(big)]
        if src.name not in decoded:
            decoded = {src.name: decode_bgr(src.data)}
        img = decoded[src.name]
        target = min(rng.uniform(INGEST_MIN_MP, INGEST_MAX_MP), src.megapixels) * 1e6
        scale = (target / (img.shape[0] * img.shape[1])) ** 0.5
        if scale < 1:
            img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(buf.tobytes())
    return out


def ingest_rate(images: list[bytes]) -> dict[str, float]:
    """Images/s of feature extraction + serialisation on a Pool of 2 warm processes."""
    megapixels = [_megapixels(b) for b in images]
    with mp.get_context("spawn").Pool(INGEST_PROCESSES) as pool:
        pool.map(engine.catalog_blob, images[:INGEST_PROCESSES * 2], chunksize=1)  # imports, warm-up
        load = load_average()
        t = time.perf_counter()
        pool.map(engine.catalog_blob, images, chunksize=1)
        elapsed = time.perf_counter() - t
    single = Clock()
    for b in images[: min(10, len(images))]:
        single(engine.catalog_blob, b)
    return {
        "images": len(images),
        "processes": INGEST_PROCESSES,
        "megapixels_median": median(megapixels),
        "megapixels_range": [min(megapixels), max(megapixels)],
        "jpeg_bytes_median": median(len(b) for b in images),
        "seconds": elapsed,
        "images_per_s": len(images) / elapsed,
        "single_process_median_s": median(single.wall),
        "single_process_cpu_median_s": median(single.cpu),
        "load_average_before": load,
    }


def _megapixels(data: bytes) -> float:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    return img.shape[0] * img.shape[1] * 64 / 1e6


def storage(batch: Batch) -> dict[str, float]:
    """Median bytes per catalog image: index part, detail part (in memory) and the compressed features file."""
    idx, det = zip(*(engine.stored_sizes(engine.load_features(b)) for b in batch.blobs))
    return {
        "images": len(batch),
        "index_bytes_median": median(idx),
        "detail_bytes_median": median(det),
        "features_file_bytes_median": median(len(b) for b in batch.blobs),
    }


def write_memory_fixture(root: Path, batch: Batch, query_blob: bytes) -> None:
    """Lay out a partition, per-image detail files and a query for :mod:`benchmarks.memprobe`."""
    from pictrace.core.compact import index_row
    from pictrace.core.partition import Partition

    marker = root / f".done-{len(batch)}"
    if marker.exists():
        return
    details = root / "details"
    details.mkdir(parents=True, exist_ok=True)
    feats = []
    for name, blob in zip(batch.names, batch.blobs):
        f = engine.load_features(blob)
        (details / f"{f.sha256}.npz").write_bytes(blob)
        feats.append(index_row(f))
    (root / "partition.bin").write_bytes(Partition.build(feats).to_bytes())
    (root / "query.npz").write_bytes(query_blob)
    marker.touch()


def memory_probe(root: Path, mode: str, ranking: str) -> dict:
    """Run :mod:`benchmarks.memprobe` in a fresh interpreter and return its report."""
    extra = [str(ENGINE_PATH)] if ENGINE_PATH else []
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memprobe", mode, str(root), ranking, *extra],
                          capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_info() -> dict[str, str]:
    """Cores, CPU model and library versions."""
    import platform

    import skimage

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "scikit-image": skimage.__version__,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "cv2_threads": str(cv2.getNumThreads()),
    }
