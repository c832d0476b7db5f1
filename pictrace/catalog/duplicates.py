"""Duplicate groups: one job over the whole index, its result kept in the bucket, read a page at a time.

The job (the ``DuplicatesFunction``: on demand through ``POST /duplicates``,
and once a day on a schedule) loads every live image's detail features into
a :class:`~pictrace.api.LocalIndex` and searches it once per image with the
engine's own two phases (phase 1 over every compact row, then the rerank of
a shortlist of at most ``4 x per_signal`` candidates), keeping each pair
that scores at least ``floor``.  It stores those pairs, not groups: a read
with any ``min_score`` at or above the floor makes the groups from them
(connected components of the pairs that reach it), so a stricter threshold
needs no new scan.

What a scan costs, for N live images and a shortlist of S candidates per
image (S <= 4 x ``duplicates_shortlist``, 32 by default):

* N reads of a detail-features object (30-60 KB each, kept on local disk);
* N phase-1 passes over N rows (N^2 cheap row scores, under 1 KB of memory
  per row) and at most N x S reranked candidates;
* one write of the result.

The job keeps time: when its invocation is about to end it stores its
progress (``work.json``: the images, how many were searched, the pairs so
far) and invokes itself to go on from there, up to :data:`MAX_HOPS`
invocations; a scan that still has images left then is stored as it is,
marked ``complete: false`` with the number of images searched.

Bookkeeping sits in two objects (see :mod:`~pictrace.catalog.layout`):
``status.json`` (queued, running, done or failed, with the run's id) and
``groups.json`` (the last finished scan).  A read names each group's images
with their records, so an image deleted since the scan drops out of its
group (and a group left with one image, out of the answer).
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from pictrace.adapters.s3 import S3Store
from pictrace.catalog import layout
from pictrace.catalog.catalog import Catalog
from pictrace.errors import BadRequest, CorruptShard, DamagedRecord, NotFound

RESULT_FORMAT = "pictrace-duplicates"
RESULT_VERSION = 1
# A queued or running scan not heard of for this long is taken to have died
# (an invocation lasts at most 15 minutes, and each one of a scan says it is
# alive as it starts), so a new one may start.
STALE_AFTER = 20 * 60
# Seconds of the invocation kept back to store the result.
SAVE_MARGIN = 20.0
# Invocations one scan may chain, each continuing where the last ran out of
# time: 50 x 15 minutes, about 25,000 images at the measured speed (the
# phase-1 passes grow with N^2); a larger catalog's scan ends incomplete.
MAX_HOPS = 50
DEFAULT_MIN_SCORE = 0.8
_THREADS = 16

Invoke = Callable[[dict], None]
TimeLeft = Callable[[], "float | None"]


def status(store: S3Store) -> dict:
    """The job's status; ``{"state": "none"}`` before the first scan."""
    try:
        return json.loads(store.get(layout.DUPLICATES_STATUS))
    except (NotFound, ValueError):
        return {"state": "none"}


def _put(store: S3Store, key: str, body: dict) -> None:
    store.put(key, json.dumps(body, sort_keys=True).encode(), content_type="application/json")


def start(catalog: Catalog, invoke: Invoke, now: Callable[[], float] = time.time) -> tuple[dict, bool]:
    """Queue a scan unless one is queued or running; returns (its status, whether this call started it)."""
    current = status(catalog.store)
    # A scan over several invocations says it is alive at the start of each.
    since = current.get("updated_at") or current.get("started_at") or current.get("queued_at") or 0
    if current.get("state") in ("queued", "running") and now() - since < STALE_AFTER:
        return current, False
    queued = {"state": "queued", "run": uuid.uuid4().hex, "queued_at": now()}
    _put(catalog.store, layout.DUPLICATES_STATUS, queued)
    invoke({"run": queued["run"]})
    return queued, True


def run(
    catalog: Catalog,
    event: dict | None = None,
    time_left: TimeLeft = lambda: None,
    invoke: Invoke | None = None,
) -> dict:
    """The job: scan, store the pairs, record the outcome in the status; returns the status.

    ``event`` is ``{"run": id}`` from ``POST /duplicates`` (a scheduled run
    has none and makes one), or ``{"run": id, "resume": n}`` from the run's
    own previous invocation.  When time runs out before every image was
    searched, the pairs so far and the list of images go to ``work.json``
    and ``invoke`` (an asynchronous invocation of this job) continues from
    there; without ``invoke``, or after :data:`MAX_HOPS` invocations, the
    result is stored as it is, ``complete: false``.
    """
    store, event = catalog.store, event or {}
    run_id = event.get("run") or uuid.uuid4().hex
    resume = event.get("resume")
    work = _work(store, run_id) if resume is not None else None
    if resume is not None and work is None:
        return status(store)  # a continuation of a run that is gone or was replaced: nothing to do
    started = work["started_at"] if work else time.time()
    hops = work["hops"] + 1 if work else 1
    running = {"state": "running", "run": run_id, "started_at": started, "updated_at": time.time(), "hops": hops}
    _put(store, layout.DUPLICATES_STATUS, running)
    try:
        result = scan(catalog, time_left=time_left, work=work)
        if not result["complete"] and invoke is not None and hops < MAX_HOPS:
            _put(store, layout.DUPLICATES_WORK, {**result, "run": run_id, "started_at": started, "hops": hops})
            invoke({"run": run_id, "resume": result["searched"]})
            return {**running, "searched": result["searched"]}
    except Exception as exc:
        _put(store, layout.DUPLICATES_STATUS, {
            "state": "failed", "run": run_id, "started_at": started, "finished_at": time.time(),
            "error": exc.__class__.__name__, "message": str(exc)[:500],
        })
        raise
    result.pop("ids", None)
    result.update(run=run_id, started_at=started, finished_at=time.time(), invocations=hops)
    _put(store, layout.DUPLICATES_GROUPS, result)
    done = {"state": "done", "run": run_id, "started_at": started, "finished_at": result["finished_at"]}
    _put(store, layout.DUPLICATES_STATUS, done)
    store.delete(layout.DUPLICATES_WORK)
    return done


def _work(store: S3Store, run_id: str) -> dict | None:
    """The stored progress of run ``run_id``, None if there is none (or it is another run's)."""
    try:
        work = json.loads(store.get(layout.DUPLICATES_WORK))
    except (NotFound, ValueError):
        return None
    return work if isinstance(work, dict) and work.get("run") == run_id else None


def scan(catalog: Catalog, *, time_left: TimeLeft = lambda: None, work: dict | None = None) -> dict:
    """Every pair of live images scoring at least the floor, found by one search per image.

    With ``work`` (what an earlier invocation of the same scan stored), the
    images are those it listed, less any deleted since, and the searches
    resume after the ones it did; the pairs it found are kept.
    """
    from pictrace.api import LocalIndex  # the engine's in-process search; only the job needs it

    config = catalog.config
    if work is None:
        live = sorted(set(catalog.ids()) - catalog.tombstones())
    else:
        live = list(work["ids"])
    index = LocalIndex(partition_rows=config.partition_rows)
    damaged: list[str] = list(work["damaged"]) if work else []

    def read(sha: str):
        try:
            return catalog.features(sha)
        except (NotFound, CorruptShard):
            return None

    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        for sha, features in zip(live, pool.map(read, live)):
            if features is not None:
                index.add_features(features)
            elif work is None:
                damaged.append(layout.features_key(sha))
    pairs: dict[tuple[str, str], float] = {(a, b): s for a, b, s in (work["pairs"] if work else [])}
    searched = int(work["searched"]) if work else 0
    for sha in live[searched:]:
        left = time_left()
        if left is not None and left < SAVE_MARGIN:
            break
        if sha in index:
            matches = index.similar(
                sha, k=config.duplicates_neighbours, min_score=config.duplicates_floor, shortlist=config.duplicates_shortlist
            )
            for m in matches:
                pair = (min(sha, m.id), max(sha, m.id))
                pairs[pair] = max(pairs.get(pair, 0.0), m.score)  # scores differ a little by direction
        searched += 1
    return {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "images": len(live),
        "searched": searched,
        "complete": searched == len(live),
        "floor": config.duplicates_floor,
        "neighbours": config.duplicates_neighbours,
        "shortlist": config.duplicates_shortlist,
        "damaged": damaged,
        "ids": live,
        "pairs": [[a, b, round(score, 6)] for (a, b), score in sorted(pairs.items())],
    }


def load_result(store: S3Store) -> dict | None:
    """The last finished scan, None if there is none; CorruptShard if it cannot be read."""
    try:
        body = json.loads(store.get(layout.DUPLICATES_GROUPS))
    except NotFound:
        return None
    except ValueError:
        raise CorruptShard(f"{layout.DUPLICATES_GROUPS} is not JSON; POST /duplicates makes it again") from None
    if not isinstance(body, dict) or body.get("format") != RESULT_FORMAT or body.get("version") != RESULT_VERSION:
        raise CorruptShard(f"{layout.DUPLICATES_GROUPS} is not a duplicates result of this version; POST /duplicates makes it again")
    return body


def groups(pairs: list[list], min_score: float) -> list[dict]:
    """The connected components of the pairs scoring at least ``min_score``, largest and closest first.

    Each group has its ``ids`` (sorted), ``size``, ``best_score`` and the
    ``pairs`` that joined it; a chain (A like B, B like C) is one group
    even when A and C are not alike, which its pairs show.
    """
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    kept = [(a, b, s) for a, b, s in pairs if s >= min_score]
    for a, b, _ in kept:
        parent[root(a)] = root(b)
    members: dict[str, list] = {}
    for a, b, s in kept:
        members.setdefault(root(a), []).append([a, b, s])
    out = []
    for edges in members.values():
        ids = sorted({x for a, b, _ in edges for x in (a, b)})
        edges.sort(key=lambda e: (-e[2], e[0], e[1]))
        out.append({"ids": ids, "size": len(ids), "best_score": edges[0][2], "pairs": edges})
    out.sort(key=lambda g: (-g["size"], -g["best_score"], g["ids"][0]))
    return out


def page(catalog: Catalog, *, min_score: float, limit: int, cursor: str | None) -> dict:
    """The ``GET /duplicates`` answer: one page of groups at ``min_score``, with the job's status."""
    store = catalog.store
    result = load_result(store)
    answer = {"job": status(store), "min_score": min_score}
    if result is None:
        return {**answer, "scan": None, "groups": [], "count": 0, "total_groups": 0, "next_cursor": None}
    floor = float(result["floor"])
    if min_score < floor:
        raise BadRequest(f"min_score must be at least {floor:g}: the scan kept only pairs scoring that much")
    offset = _offset(cursor, result["run"])
    found = groups(result["pairs"], min_score)
    chosen = found[offset : offset + limit]
    more = offset + limit < len(found)
    scan_info = {k: result[k] for k in ("run", "started_at", "finished_at", "images", "searched", "complete", "floor")}
    return {
        **answer,
        "scan": scan_info,
        "groups": _named(catalog, chosen),
        "count": len(chosen),
        "total_groups": len(found),
        "next_cursor": f"{result['run']}.{offset + limit}" if more else None,
    }


def _offset(cursor: str | None, run_id: str) -> int:
    if not cursor:
        return 0
    run_part, _, number = cursor.partition(".")
    if not number.isascii() or not number.isdigit() or len(number) > 9:
        raise BadRequest("cursor must be a next_cursor of GET /duplicates")
    if run_part != run_id:
        raise BadRequest("cursor belongs to an earlier scan; start again without a cursor")
    return int(number)


def _named(catalog: Catalog, chosen: list[dict]) -> list[dict]:
    """The groups with each image's name and links; images deleted since the scan drop out."""
    ids = sorted({i for g in chosen for i in g["ids"]})

    def record(sha: str):
        try:
            return catalog.find(sha)
        except DamagedRecord:
            return None

    with ThreadPoolExecutor(max_workers=max(1, min(_THREADS, len(ids)))) as pool:
        records = dict(zip(ids, pool.map(record, ids)))
    out = []
    for g in chosen:
        present = [records[i] for i in g["ids"] if records.get(i) is not None]
        if len(present) < 2:
            continue
        alive = {r.id for r in present}
        images = [{"id": r.id, "name": r.name, "width": r.width, "height": r.height, **catalog.urls(r)} for r in present]
        pairs = [p for p in g["pairs"] if p[0] in alive and p[1] in alive]
        if pairs:
            out.append({"size": len(images), "best_score": pairs[0][2], "images": images, "pairs": pairs})
    return out
