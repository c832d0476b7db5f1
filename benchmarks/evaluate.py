"""Answering the query set on 2 worker processes, within a time budget.

Workers build their own index (from the cached feature batches) or their own
baseline catalog once, then answer queries. Queries are submitted in the
given order with a small window in flight; once the budget is spent no more
are submitted, so the answered set is a prefix of the order (callers order
queries source by source, every family per source, to keep families
balanced).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Callable, Iterable

from benchmarks import engine, seed_baseline
from benchmarks.data import CatalogImage, decode_bgr
from benchmarks.store import FeatureStore
from benchmarks.transforms import make_query

PROCESSES = 2
K = 5

_w: dict = {}


def _init_engine(ready, root: str, parts: list[tuple[str, int]]) -> None:
    """Worker: build a LocalIndex from cached batches [(key, how many items)], then report ready."""
    store = FeatureStore(Path(root))
    blobs, names = [], []
    for key, take in parts:
        batch = store.load(key)
        blobs += batch.blobs[:take]
        names += batch.names[:take]
    _w["index"], _w["names"] = engine.build_index(blobs, names)
    ready.put(True)


def answer_engine(task: tuple[str, bytes, str]) -> tuple[str, list[tuple[str, float]], float, str]:
    """Worker: search one query (name, feature blob, ranking); hits as (catalog name, score)."""
    qname, blob, ranking = task
    query = engine.load_query(blob)
    t = time.perf_counter()
    try:
        hits = engine.search(_w["index"], query, K, ranking)
    except Exception as exc:  # noqa: BLE001 - a crash is recorded as a failed query, not a dead run
        return qname, [], time.perf_counter() - t, f"{type(exc).__name__}: {exc}"
    secs = time.perf_counter() - t
    return qname, [(_w["names"][h.id], h.score) for h in hits], secs, ""


def _init_baseline(ready, items: list[tuple[str, bytes]], sources: list[tuple[str, bytes]], seed: int) -> None:
    """Worker: the original pipeline's catalog, plus query sources to rebuild queries from."""
    _w["catalog"] = seed_baseline.CachedCatalog(items, fast_ssim=True)
    _w["catalog"].warm()  # so the time budget is spent on queries, not on decoding the catalog
    _w["sources"], _w["seed"] = sources, seed
    ready.put(True)


def answer_baseline(task: tuple[int, str]) -> tuple[str, list[tuple[str, float]], float, str]:
    """Worker: rebuild query (source index, family) and run the original search on it."""
    i, family = task
    name, data = _w["sources"][i]
    query = make_query(decode_bgr(data), family, name, i, _w["seed"]).data
    t = time.perf_counter()
    try:
        hits = _w["catalog"].search(query, K)
    except Exception as exc:  # noqa: BLE001 - as above
        return f"{family}|{name}", [], time.perf_counter() - t, f"{type(exc).__name__}: {exc}"
    secs = time.perf_counter() - t
    return f"{family}|{name}", [(n, s["score"]) for n, s in hits], secs, ""


def run_budgeted(pool, fn: Callable, tasks: Iterable, budget_s: float | None, log=print, label: str = "") -> list:
    """Apply ``fn`` to tasks in order until ``budget_s`` is spent; return results in order."""
    tasks = list(tasks)
    start = time.perf_counter()
    pending, results = [], []
    it = iter(tasks)
    window = 2 * PROCESSES
    exhausted = False
    last_log = start
    while pending or not exhausted:
        while not exhausted and len(pending) < window:
            if budget_s is not None and time.perf_counter() - start > budget_s:
                exhausted = True
                break
            try:
                pending.append(pool.apply_async(fn, (next(it),)))
            except StopIteration:
                exhausted = True
        if pending:
            results.append(pending.pop(0).get())
        if time.perf_counter() - last_log > 60:
            last_log = time.perf_counter()
            log(f"    {label}: {len(results)}/{len(tasks)} queries, {last_log - start:.0f} s")
    return results


def _ready_pool(initializer, initargs: tuple):
    """A spawn Pool whose workers have all finished ``initializer`` when this returns."""
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    pool = ctx.Pool(PROCESSES, initializer=initializer, initargs=(ready, *initargs))
    for _ in range(PROCESSES):
        ready.get()
    return pool


def engine_pool(root: Path, parts: list[tuple[str, int]]):
    """Worker pool whose processes each hold the index made of ``parts``."""
    return _ready_pool(_init_engine, (str(root), parts))


def baseline_pool(catalog: list[CatalogImage], sources: list[CatalogImage], seed: int):
    """Worker pool running the original pipeline (SSIM via the checked OpenCV equivalent)."""
    return _ready_pool(_init_baseline, ([(im.name, im.data) for im in catalog], [(s.name, s.data) for s in sources], seed))


def engine_tasks(names: list[str], blobs: list[bytes], ranking: str) -> list[tuple[str, bytes, str]]:
    """Tasks for :func:`answer_engine`."""
    return [(n, b, ranking) for n, b in zip(names, blobs)]
