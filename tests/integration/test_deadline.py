"""A search keeps to the time its API invocation has left.

The API handler is called with a Lambda context that has a few seconds
left, and the local Lambda endpoint holds one scoring batch well past
them (but not past the invoker's own per-call timeout).  The answer is a 200
with that batch in ``failed_batches`` while the other batches are scored as
usual.  Without the deadline the invoker would wait for the slow batch and
answer whole, after the function's own time was up: on AWS, a 504 from API
Gateway.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from pictrace import runtime
from pictrace.catalog import layout
from pictrace.local.lambda_endpoint import LambdaContext
from tests.conftest import jpeg, sample_bgr

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"PICTRACE_PENDING_BATCH": "1"}  # one batch per image, so one can be slow alone


@dataclass
class ContextWithLittleTime(LambdaContext):
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def small_batches(stack, monkeypatch, empty_catalog):
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)
    runtime.services.cache_clear()
    yield runtime.services()
    monkeypatch.undo()
    runtime.services.cache_clear()


# Longer than the time the context has left, shorter than the invoker's
# 25 s timeout: only the deadline can make the invoker give up on it.
SLOW_SECONDS = 10


@dataclass
class SlowBatch:
    keys: set[str]
    attempts: list[str]


@pytest.fixture
def one_slow_batch(stack):
    """Scoring calls of batches naming one of ``keys`` take SLOW_SECONDS (or until the test ends)."""
    release = threading.Event()
    slow = SlowBatch(set(), [])

    def hook(name: str, event: dict) -> None:
        pending = event.get("batch", {}).get("pending", [])
        if name == "ScoreFunction" and slow.keys & set(pending):
            slow.attempts.append(pending[0])
            release.wait(timeout=SLOW_SECONDS)

    stack.lambdas.hook = hook
    yield slow
    release.set()
    stack.lambdas.hook = None


def search_event(data: bytes) -> dict:
    event = json.loads((REPO_ROOT / "events" / "api-search.json").read_text())
    event["body"] = base64.b64encode(data).decode()
    return event


def test_a_slow_batch_is_a_partial_answer_within_the_time_left(stack, small_batches, one_slow_batch) -> None:
    catalog = small_batches.catalog
    fast = catalog.add(jpeg(sample_bgr("coffee"))).record
    slow = catalog.add(jpeg(sample_bgr("astronaut"))).record
    one_slow_batch.keys.add(layout.pending_key(slow.id))

    api = stack.lambdas.handlers["ApiFunction"]
    reply = api(search_event(jpeg(sample_bgr("coffee"))), ContextWithLittleTime("ApiFunction", "req-1", remaining_ms=4_000))

    assert reply["statusCode"] == 200
    body = json.loads(reply["body"])
    assert body["partial"] is True
    assert [f["batch"] for f in body["failed_batches"]] == [{"pending": [layout.pending_key(slow.id)]}]
    assert "no time left" in body["failed_batches"][0]["error"]
    assert body["results"][0]["id"] == fast.id
    # The attempts stopped for want of time, before the retries ran out.
    assert 1 <= len(one_slow_batch.attempts) < small_batches.config.score_retries + 1
