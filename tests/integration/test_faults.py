"""Faults in the scoring fan-out, injected at the local Lambda endpoint.

The catalog is split into many small batches (partitions of 4, pending batches
of 2) so that one search makes several ScoreFunction invocations, and
``stack.lambdas.hook`` makes chosen invocations fail the ways Lambda can
fail: throttled (429), a service error (500/502), an exception in the
function (an "Unhandled" function error), or no answer within the
invoker's read timeout.  Settings are read from the environment whenever
the process-wide services are rebuilt, so the module sets them with
monkeypatch and clears ``runtime.services``.

What must hold:

* the search always answers 200;
* a transient failure is retried away: results equal the fault-free run's;
* a batch that keeps failing is reported (``partial``, ``failed_batches``,
  ``counts.failed_batches``) and only its candidates are missing: every
  candidate of the fault-free run is either in the results with the same
  score or in a listed failed batch -- never dropped or scored 0 silently.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest

from pictrace import runtime
from pictrace.catalog import layout
from pictrace.core.partition import Partition
from pictrace.local.lambda_endpoint import InvokeError
from tests.conftest import Client
from tests.hostile.corpus import jpeg, photo

SCORE_TIMEOUT = 2.0
RETRIES = 3
SETTINGS = {
    "PICTRACE_PENDING_BATCH": "2",
    "PICTRACE_PARTITION_ROWS": "4",
    "PICTRACE_SCORE_TIMEOUT": str(SCORE_TIMEOUT),
    "PICTRACE_SCORE_RETRIES": str(RETRIES),
}
PACKED = ["astronaut", "camera", "cat", "clock", "coffee", "coins", "colorwheel", "grass"]
PENDING = ["gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "brick", "logo"]


class Boom(RuntimeError):
    """An exception raised inside the function."""


def fail(kind: str) -> None:
    """Make the current invocation fail the way ``kind`` names."""
    if kind == "throttle":
        raise InvokeError(429, "TooManyRequestsException", "Rate exceeded")
    if kind == "service":
        raise InvokeError(500, "ServiceException", "internal failure")
    if kind == "bad-gateway":
        raise InvokeError(502, "ServiceException", "bad gateway")
    if kind == "unhandled":
        raise Boom("the function crashed")
    if kind == "timeout":
        time.sleep(SCORE_TIMEOUT + 1.5)
        return
    if kind == "refused":
        raise InvokeError(400, "InvalidRequestContentException", "not retryable")
    raise ValueError(kind)


RETRYABLE = ["throttle", "service", "bad-gateway", "unhandled", "timeout"]


def batch_name(event: dict) -> str:
    return json.dumps(event.get("batch"), sort_keys=True)


class Faults:
    """A hook for ``stack.lambdas.hook`` that counts attempts per (query, batch) and fails some.

    ``decide(query, batch, attempt) -> kind or None`` picks the failure; attempts count from 0.
    """

    def __init__(self, decide: Callable[[str, str, int], str | None]) -> None:
        self.decide = decide
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, function: str, event: dict) -> None:
        if function != "ScoreFunction":
            return
        key = (str(event.get("query")), batch_name(event))
        with self._lock:
            attempt = self.attempts[key]
            self.attempts[key] += 1
            kind = self.decide(*key, attempt)
            if kind:
                self.injected[kind] += 1
        if kind:
            fail(kind)

    def attempts_of(self, batch: dict) -> int:
        name = json.dumps(batch, sort_keys=True)
        return sum(n for (_, b), n in self.attempts.items() if b == name)


@pytest.fixture(scope="module")
def catalog(stack) -> Iterator[dict]:
    """Eight packed images (two partitions of four) and ten pending ones (five batches of two).

    Yields {"ids": {name: id}, "images": {name: bytes}}.
    """
    with pytest.MonkeyPatch.context() as mp:
        for k, v in SETTINGS.items():
            mp.setenv(k, v)
        runtime.services.cache_clear()
        cat = stack.services.catalog
        for image_id in list(cat.ids()):
            cat.delete(image_id)
        stack.pack_now()
        api = Client(stack.api_url)
        images = {name: jpeg(photo(name, 160, 120)) for name in PACKED + PENDING}

        def add(name: str) -> str:
            reply = api.post("/images", images[name], "image/jpeg")
            assert reply.status == 201, reply.body
            return reply.body["ids"][0]

        ids = {name: add(name) for name in PACKED}
        stack.pack_now()
        ids.update({name: add(name) for name in PENDING})
        yield {"ids": ids, "images": images}
        stack.lambdas.hook = None
        for image_id in ids.values():
            cat.delete(image_id)
    runtime.services.cache_clear()


@pytest.fixture
def faults(stack, catalog) -> Iterator[Callable[[Callable], Faults]]:
    """``faults(decide)`` installs a fault hook for this test; it is removed afterwards."""

    def install(decide: Callable[[str, str, int], str | None]) -> Faults:
        hook = Faults(decide)
        stack.lambdas.hook = hook
        return hook

    yield install
    stack.lambdas.hook = None


QUERIES = {
    "coffee-cropped": lambda: photo("coffee", 400, 300)[30:270, 40:360],
    "rocket-mirrored": lambda: np.ascontiguousarray(photo("rocket", 160, 120)[:, ::-1]),
    "moon-rotated": lambda: cv2.rotate(photo("moon", 160, 120), cv2.ROTATE_90_CLOCKWISE),
    "unrelated-horse": lambda: photo("horse", 200, 160),
}


def search(api: Client, name: str) -> dict:
    reply = api.post("/search?k=50", jpeg(QUERIES[name]()), "image/jpeg")
    assert reply.status == 200, reply.body
    return reply.body


def ranked(body: dict) -> list[tuple]:
    """Results without their presigned URLs (which carry the signing time)."""
    return [(r["id"], r["score"], r["scores"], r["transform"]) for r in body["results"]]


@pytest.fixture(scope="module")
def baseline(stack, catalog) -> dict[str, dict]:
    """Fault-free answers to every query."""
    stack.lambdas.hook = None
    api = Client(stack.api_url)
    return {name: search(api, name) for name in QUERIES}


def batch_ids(stack, batch: dict) -> set[str]:
    """The image ids a batch scores."""
    if "partition" in batch:
        return set(Partition.from_bytes(stack.services.store.get(batch["partition"])).id_list())
    return {layout.id_from(k, layout.PENDING) for k in batch["pending"]}


def plan_batches(stack) -> list[dict]:
    from pictrace.catalog.search import plan

    return plan(stack.services.catalog).batches


def test_the_catalog_makes_many_batches(stack, catalog, baseline):
    batches = plan_batches(stack)
    assert sum("partition" in b for b in batches) == 2
    assert sum("pending" in b for b in batches) == 5
    for body in baseline.values():
        assert body["counts"]["batches"] == 7 and body["counts"]["rerank_batches"] == 1 and not body["partial"]
        # k exceeds the catalog, so every candidate is ranked: the full picture to compare against.
        assert {r["id"] for r in body["results"]} == set(catalog["ids"].values())


@pytest.mark.slow
@pytest.mark.parametrize("kind", RETRYABLE)
def test_a_first_attempt_failing_everywhere_is_retried_away(kind, api, stack, baseline, faults):
    hook = faults(lambda query, batch, attempt: kind if attempt == 0 else None)
    for name in ("coffee-cropped", "rocket-mirrored"):
        body = search(api, name)
        assert not body["partial"] and body["failed_batches"] == [] and body["counts"]["failed_batches"] == 0
        assert ranked(body) == ranked(baseline[name])
        assert body["counts"] == baseline[name]["counts"]
    # Every batch of both searches (seven of candidates, one rerank) failed once
    # and succeeded on its second attempt.
    assert hook.injected[kind] == 2 * 8
    assert set(hook.attempts.values()) == {2}


@pytest.mark.slow
def test_random_faults_with_a_fixed_seed_change_nothing(api, baseline, faults):
    """About 10% of invocations fail, of every retryable kind; retries hide all of it."""

    def decide(query: str, batch: str, attempt: int) -> str | None:
        digest = hashlib.sha256(f"seed-7|{query}|{batch}|{attempt}".encode()).digest()
        if digest[0] >= 26:  # 26/256: about 10%
            return None
        return RETRYABLE[digest[1] % len(RETRYABLE)]

    hook = faults(decide)
    for _ in range(3):
        for name in QUERIES:
            body = search(api, name)
            assert not body["partial"], body["failed_batches"]
            assert ranked(body) == ranked(baseline[name])
    assert sum(hook.injected.values()) > 0  # the seed does inject faults


def expect_partial(stack, body: dict, base: dict, failing: list[dict]) -> None:
    """Only the failing batches' candidates are missing, and they are all accounted for."""
    assert body["partial"] is True
    assert [f["batch"] for f in body["failed_batches"]] == failing
    assert all(f["error"] for f in body["failed_batches"])
    assert body["counts"]["failed_batches"] == len(failing)
    assert body["counts"]["batches"] == base["counts"]["batches"]
    assert body["counts"]["candidates"] == base["counts"]["candidates"]
    lost = set().union(*(batch_ids(stack, b) for b in failing)) if failing else set()
    assert ranked(body) == [r for r in ranked(base) if r[0] not in lost]
    assert body["counts"]["scored_candidates"] == base["counts"]["scored_candidates"] - len(lost)
    # Nothing dropped silently: every candidate is ranked or sits in a failed batch.
    assert {r[0] for r in ranked(body)} | lost == {r[0] for r in ranked(base)}


@pytest.mark.slow
@pytest.mark.parametrize("kind", [*RETRYABLE, "refused"])
@pytest.mark.parametrize("which", ["partition", "pending"])
def test_a_batch_that_keeps_failing_is_reported_not_hidden(kind, which, api, stack, baseline, faults):
    target = next(b for b in plan_batches(stack) if which in b)
    name = json.dumps(target, sort_keys=True)
    hook = faults(lambda query, batch, attempt: kind if batch == name else None)
    body = search(api, "coffee-cropped")
    expect_partial(stack, body, baseline["coffee-cropped"], [target])
    # Retryable failures are tried 1 + RETRIES times; a refusal is final at once.
    assert hook.attempts_of(target) == (1 if kind == "refused" else 1 + RETRIES)


@pytest.mark.slow
def test_every_batch_failing_is_still_a_200_with_no_results(api, stack, baseline, faults):
    faults(lambda query, batch, attempt: "service")
    body = search(api, "rocket-mirrored")
    batches = plan_batches(stack)
    assert body["results"] == []
    expect_partial(stack, body, baseline["rocket-mirrored"], batches)


def test_a_corrupt_pending_row_is_skipped_and_reported_not_retried(api, stack, catalog, baseline, faults):
    """A damaged object hides only its own image: the rest of its batch still scores."""
    hook = faults(lambda query, batch, attempt: None)
    target = next(b for b in plan_batches(stack) if "pending" in b)
    key = target["pending"][0]
    store = stack.services.store
    original = store.get(key)
    store.put(key, b"PK\x03\x04 this is not a partition")
    try:
        body = search(api, "moon-rotated")
    finally:
        store.put(key, original)
    lost = layout.id_from(key, layout.PENDING)
    assert body["partial"] is True and body["failed_batches"] == [] and body["damaged_objects"] == [key]
    assert ranked(body) == [r for r in ranked(baseline["moon-rotated"]) if r[0] != lost]
    assert hook.attempts_of(target) == 1
