"""Feature extraction for catalog images, queries and distractors, on 2 processes, cached.

Workers rebuild query and distractor images themselves from the source
photos (both are deterministic), so only small feature blobs cross process
boundaries.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import time
from pathlib import Path
from typing import Callable, Sequence

from benchmarks import distractors, engine
from benchmarks.data import CatalogImage, decode_bgr
from benchmarks.store import Batch, FeatureStore
from benchmarks.transforms import FAMILIES, make_query

PROCESSES = 2
DISTRACTOR_CHUNK = 1000

_state: dict = {}


def _init(sources: list[bytes], seed: int) -> None:
    """Worker setup: source photos for queries and distractors."""
    _state.update(sources=sources, seed=seed, decoded={}, shrunk=None)


def _source_pixels(i: int):
    """Decoded source photo ``i``; only the latest one is kept (tasks come grouped by source)."""
    cache = _state["decoded"]
    if i not in cache:
        cache.clear()
        cache[i] = decode_bgr(_state["sources"][i])
    return cache[i]


def _distractor_sources():
    if _state["shrunk"] is None:
        _state["shrunk"] = [distractors.shrink(decode_bgr(b)) for b in _state["sources"]]
    return _state["shrunk"]


def query_bytes(sources: Sequence[CatalogImage], source_index: int, family: str, seed: int,
                pixels=None) -> bytes:
    """The encoded query of ``family`` made from ``sources[source_index]``."""
    src = sources[source_index]
    img = decode_bgr(src.data) if pixels is None else pixels
    return make_query(img, family, src.name, source_index, seed).data


def _timed(fn: Callable[[bytes], bytes], data: bytes) -> tuple[bytes, float]:
    t = time.perf_counter()
    blob = fn(data)
    return blob, time.perf_counter() - t


def _query_task(task: tuple[int, str, str]) -> tuple[str, bytes, float]:
    i, family, name = task
    data = make_query(_source_pixels(i), family, name, i, _state["seed"]).data
    blob, secs = _timed(engine.query_blob, data)
    return f"{family}|{name}", blob, secs


def _distractor_task(index: int) -> tuple[str, bytes, float]:
    img = distractors.make_distractor(_distractor_sources(), _state["seed"], index)
    blob, secs = _timed(engine.catalog_blob, distractors.encode_distractor(img, index))
    return f"distractor/{index:06d}", blob, secs


def _catalog_task(item: tuple[str, bytes]) -> tuple[str, bytes, float]:
    name, data = item
    blob, secs = _timed(engine.catalog_blob, data)
    return name, blob, secs


def _pool(sources: list[CatalogImage], seed: int):
    ctx = mp.get_context("spawn")
    return ctx.Pool(PROCESSES, initializer=_init, initargs=([s.data for s in sources], seed))


def _collect(results) -> Batch:
    batch = Batch([], [], [])
    for name, blob, secs in results:
        batch.extend(Batch([name], [blob], [secs]))
    return batch


class FeatureJobs:
    """Computes (or loads) every feature batch the benchmark needs."""

    def __init__(self, store: FeatureStore, sources: list[CatalogImage], seed: int, log=print):
        self.store, self.sources, self.seed, self.log = store, sources, seed, log
        self._pool = None

    def pool(self):
        if self._pool is None:
            self._pool = _pool(self.sources, self.seed)
        return self._pool

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None

    @staticmethod
    def catalog_key(images: list[CatalogImage]) -> str:
        """Store key of the real catalog's features."""
        return "catalog_" + engine_hash([im.sha256 for im in images])

    def distractor_key(self, start: int) -> str:
        """Store key of the distractor chunk starting at ``start``."""
        sources = engine_hash([s.sha256 for s in self.sources])
        return f"distractors_s{self.seed}_v{distractors.VERSION}_{sources}_{start:06d}"

    def catalog(self, images: list[CatalogImage]) -> Batch:
        """Features of the real catalog images (one batch, keyed by their hashes)."""
        key = self.catalog_key(images)
        batch = self.store.load(key)
        if batch is None:
            self.log(f"  extracting features of {len(images)} catalog images")
            batch = _collect(self.pool().imap(_catalog_task, [(im.name, im.data) for im in images]))
            self.store.save(key, batch)
        return batch

    def queries(self, source_indices: list[int]) -> Batch:
        """Query features for the given sources, every family; cached per source."""
        out = Batch([], [], [])
        missing = [i for i in source_indices if self.store.load(self._qkey(i)) is None]
        if missing:
            self.log(f"  extracting query features for {len(missing)} sources x {len(FAMILIES)} families")
            tasks = [(i, f, self.sources[i].name) for i in missing for f in FAMILIES]
            results = list(self.pool().imap(_query_task, tasks, chunksize=len(FAMILIES)))
            for n, i in enumerate(missing):
                part = results[n * len(FAMILIES) : (n + 1) * len(FAMILIES)]
                self.store.save(self._qkey(i), _collect(part))
        for i in source_indices:
            out.extend(self.store.load(self._qkey(i)))
        return out

    def _qkey(self, i: int) -> str:
        return f"queries_s{self.seed}_{self.sources[i].sha256[:16]}"

    def distractors(self, count: int) -> Batch:
        """The first ``count`` distractors' features (cached in chunks of 1000)."""
        out = Batch([], [], [])
        for start in range(0, count, DISTRACTOR_CHUNK):
            key = self.distractor_key(start)
            batch = self.store.load(key)
            if batch is None:
                t = time.perf_counter()
                batch = _collect(self.pool().imap(_distractor_task, range(start, start + DISTRACTOR_CHUNK), chunksize=25))
                self.store.save(key, batch)
                self.log(f"  distractors {start}-{start + DISTRACTOR_CHUNK - 1}: {time.perf_counter() - t:.0f} s")
            take = min(DISTRACTOR_CHUNK, count - start)
            out.extend(Batch(batch.names[:take], batch.blobs[:take], batch.seconds[:take]))
        return out


def engine_hash(parts: list[str]) -> str:
    """Short stable hash of a list of strings."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def store_for(cache: Path) -> FeatureStore:
    """The feature store of the current engine source."""
    return FeatureStore(cache / "features" / engine.fingerprint())
