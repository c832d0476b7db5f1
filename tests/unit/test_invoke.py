"""The scoring fan-out keeps to the time its caller has left.

A fake clock stands in for time: a fake Lambda client "takes" as long as its
batch is slow, and fails with a read timeout when that is longer than the
timeout of the client it was called through, the way botocore does.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from pictrace import runtime
from pictrace.adapters.invoke import ClientsByTimeout, LambdaInvoker, lambda_client_config
from pictrace.errors import ScoringFailed


@dataclass
class FakeTime:
    now: float = 1000.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


@dataclass
class FakeLambda:
    """Answers each batch after ``seconds[batch]`` of fake time (0 if not listed)."""

    time: FakeTime
    seconds: dict[str, float] = field(default_factory=dict)
    calls: list[tuple[str, float]] = field(default_factory=list)

    def client(self, timeout: float) -> "FakeClient":
        return FakeClient(self, timeout)


@dataclass
class FakeClient:
    service: FakeLambda
    timeout: float

    def invoke(self, FunctionName: str, InvocationType: str, Payload: bytes) -> dict:
        batch = json.loads(Payload)["batch"]
        self.service.calls.append((batch, self.timeout))
        took = self.service.seconds.get(batch, 0.0)
        if took > self.timeout:
            self.service.time.sleep(self.timeout)
            raise ReadTimeoutError(endpoint_url="http://127.0.0.1/")
        self.service.time.sleep(took)
        return {"Payload": io.BytesIO(json.dumps({"matches": [], "batch": batch}).encode())}


def invoker(service: FakeLambda, left: float | None, **kw) -> LambdaInvoker:
    t = service.time
    start = t.now
    settings = {"timeout": 25.0, "margin": 1.5, "backoff": 0.0, **kw}
    return LambdaInvoker(
        service.client,
        "score",
        time_left=(lambda: None) if left is None else (lambda: start + left - t.now),
        sleep=t.sleep,
        clock=t.clock,
        **settings,
    )


def test_attempt_timeout_shrinks_to_the_time_left_minus_the_margin() -> None:
    service = FakeLambda(FakeTime())
    [answer] = invoker(service, left=10.0).map([{"batch": "a"}])
    assert answer == {"matches": [], "batch": "a"}
    assert service.calls == [("a", 8.5)]


def test_no_deadline_uses_the_full_timeout() -> None:
    service = FakeLambda(FakeTime())
    invoker(service, left=None).map([{"batch": "a"}])
    assert service.calls == [("a", 25.0)]


def test_a_slow_batch_fails_within_the_time_left_and_the_rest_answer() -> None:
    t = FakeTime()
    service = FakeLambda(t, seconds={"slow": 60.0})
    start = t.now
    answers = invoker(service, left=12.0, concurrency=1).map([{"batch": "fast"}, {"batch": "slow"}])
    assert answers[0] == {"matches": [], "batch": "fast"}
    assert isinstance(answers[1], ScoringFailed)
    assert "no time left" in str(answers[1])
    # Every attempt ended before the caller's deadline less the margin.
    assert t.now - start <= 12.0 - 1.5
    # One attempt, cut to the time left; no retry started with less than a second.
    assert service.calls == [("fast", 10.5), ("slow", 10.5)]


def test_no_retry_starts_that_has_less_than_min_attempt_left() -> None:
    t = FakeTime()
    service = FakeLambda(t, seconds={"a": 3.0})
    start = t.now
    # 9.5 s to spend: 3 s attempts would fit three times, but each is cut to what is left.
    inv = invoker(service, left=11.0, retries=5, min_attempt=2.0, timeout=2.5)
    [answer] = inv.map([{"batch": "a"}])
    assert isinstance(answer, ScoringFailed)
    assert [timeout for _, timeout in service.calls] == [2.5, 2.5, 2.5, 2.0]
    assert t.now - start == pytest.approx(9.5)


def test_retries_still_heal_a_transient_failure_within_the_time() -> None:
    t = FakeTime()
    service = FakeLambda(t)
    throttled = {"left": 2}

    class Throttling(FakeClient):
        def invoke(self, **kw) -> dict:
            if throttled["left"]:
                throttled["left"] -= 1
                raise ClientError(
                    {"Error": {"Code": "TooManyRequestsException"}, "ResponseMetadata": {"HTTPStatusCode": 429}},
                    "Invoke",
                )
            return super().invoke(**kw)

    inv = invoker(service, left=20.0)
    inv.clients = lambda timeout: Throttling(service, timeout)
    [answer] = inv.map([{"batch": "a"}])
    assert answer == {"matches": [], "batch": "a"}


def test_clients_by_timeout_round_down_and_are_reused() -> None:
    made: list[float] = []

    def make(cfg):
        made.append(cfg.connect_timeout + cfg.read_timeout)
        return object()

    clients = ClientsByTimeout(make, ceiling=25.0)
    assert clients(30.0) is clients(25.0)
    assert clients(7.9) is clients(7.1)
    assert clients(0.3) is clients(1.0)
    assert made == [25.0, 7.0, 1.0]


def test_a_call_cannot_outlast_its_timeout() -> None:
    cfg = lambda_client_config(25.0)
    assert cfg.connect_timeout + cfg.read_timeout == pytest.approx(25.0)
    assert cfg.connect_timeout <= 5.0


def test_keeps_time_publishes_the_contexts_time_left_to_the_fan_out() -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 7_000

    seen: list[float | None] = []

    @runtime.keeps_time
    def handler(event: dict, context) -> dict:
        seen.append(runtime.time_left())
        return {}

    assert runtime.time_left() is None
    handler({}, Context())
    assert seen[0] is not None and 6.0 < seen[0] <= 7.0
    assert runtime.time_left() is None


def test_a_batch_that_cannot_start_in_time_is_not_started() -> None:
    service = FakeLambda(FakeTime())
    [answer] = invoker(service, left=2.0).map([{"batch": "a"}])
    assert isinstance(answer, ScoringFailed) and "no time left" in str(answer)
    assert service.calls == []
