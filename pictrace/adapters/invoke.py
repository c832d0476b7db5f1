"""Invoking the scoring function once per batch: bounded, retried, timed out.

A batch that still fails after its retries is returned as a
:class:`ScoringFailed` in its place, never as an empty result, so the caller
can say which batches are missing.

Every attempt keeps to the time the calling function has left (its
``time_left``, minus a margin for merging and answering): an attempt's read
timeout shrinks to what is left, and an attempt that would have less than
``min_attempt`` seconds is not started.  A slow batch therefore becomes a
failed batch of a partial answer, not a caller killed by its own timeout
(for the API function, a 504 from API Gateway).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import botocore.config
from botocore.exceptions import BotoCoreError, ClientError

from pictrace.errors import ScoringFailed

RETRYABLE_CODES = {
    "TooManyRequestsException",
    "ServiceException",
    "ResourceNotReadyException",
    "EC2ThrottledException",
    "Throttling",
    "ThrottlingException",
}


def lambda_client_config(timeout: float) -> botocore.config.Config:
    """Client settings for scoring calls: our own retry loop, at most ``timeout`` seconds a call.

    The connect and read timeouts share ``timeout`` so that their sum, the
    longest a call can take, stays within it.
    """
    connect = min(5.0, timeout / 5)
    return botocore.config.Config(
        read_timeout=timeout - connect,
        connect_timeout=connect,
        # botocore reads "max_attempts" as retries after the first call; one
        # call in total leaves every retry (and its count) to LambdaInvoker.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=64,
    )


class ClientsByTimeout:
    """Lambda clients by read timeout, made on first use and kept.

    botocore fixes a client's timeouts when it is made, so a shorter timeout
    needs another client.  Timeouts are rounded down to whole seconds (at
    least one), which bounds how many clients a process makes and never
    lets an attempt wait longer than it was given.
    """

    def __init__(self, make: Callable[[botocore.config.Config], Any], ceiling: float) -> None:
        self.make = make
        self.ceiling = ceiling
        self._clients: dict[float, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, timeout: float) -> Any:
        seconds = self.ceiling if timeout >= self.ceiling else float(max(1, math.floor(timeout)))
        with self._lock:
            if seconds not in self._clients:
                self._clients[seconds] = self.make(lambda_client_config(seconds))
            return self._clients[seconds]


def no_deadline() -> float | None:
    """The ``time_left`` of a caller that has no deadline of its own."""
    return None


class LambdaInvoker:
    """Calls a Lambda function synchronously (``RequestResponse``) with retries.

    ``clients`` maps a read timeout in seconds to a client that honours it
    (see :class:`ClientsByTimeout`); ``time_left`` says how many seconds the
    caller has left, or ``None`` when it has no deadline.
    """

    def __init__(
        self,
        clients: Callable[[float], Any],
        function_name: str,
        *,
        retries: int = 3,
        concurrency: int = 16,
        backoff: float = 0.2,
        timeout: float = 25.0,
        margin: float = 1.5,
        min_attempt: float = 1.0,
        time_left: Callable[[], float | None] = no_deadline,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.function_name = function_name
        self.retries = retries
        self.concurrency = concurrency
        self.backoff = backoff
        self.timeout = timeout
        self.margin = margin
        self.min_attempt = min_attempt
        self.time_left = time_left
        self.sleep = sleep
        self.clock = clock

    def deadline(self) -> float | None:
        """The ``clock`` reading by which every attempt of this fan-out must be over."""
        left = self.time_left()
        return None if left is None else self.clock() + left - self.margin

    def invoke(self, payload: dict, deadline: float | None = None) -> dict:
        """One batch; raises ScoringFailed once the retries or the time are spent, or on a final error."""
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            # Full jitter keeps a throttled fan-out from retrying in lockstep.
            delay = random.uniform(0, self.backoff * 2 ** (attempt - 1)) if attempt else 0.0
            budget = self._budget(deadline, delay)
            if budget is None:
                if not attempt:
                    raise ScoringFailed("no time left to start scoring this batch")
                raise ScoringFailed(f"scoring stopped after {attempt} attempt(s): no time left for another ({last})")
            if delay:
                self.sleep(delay)
            try:
                resp = self.clients(budget).invoke(
                    FunctionName=self.function_name,
                    InvocationType="RequestResponse",
                    Payload=json.dumps(payload).encode(),
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                last = f"{code or 'error'} (HTTP {status})"
                if code in RETRYABLE_CODES or status >= 500 or status == 429:
                    continue
                raise ScoringFailed(f"scoring call refused: {last}") from None
            except BotoCoreError as exc:  # timeouts, connection resets
                last = type(exc).__name__
                continue
            body = resp["Payload"].read()
            if resp.get("FunctionError"):
                last = _describe_error(body)
                continue
            try:
                result = json.loads(body)
            except ValueError:
                last = "scoring returned a body that is not JSON"
                continue
            if isinstance(result, dict) and "error" in result:
                # A deliberate error (corrupt shard, bad request) will not heal on retry.
                raise ScoringFailed(f"{result['error']}: {result.get('message', '')}")
            return result
        raise ScoringFailed(f"scoring failed after {self.retries + 1} attempts: {last}")

    def _budget(self, deadline: float | None, delay: float) -> float | None:
        """Seconds the next attempt may take after waiting ``delay``; ``None`` if too few are left."""
        if deadline is None:
            return self.timeout
        left = deadline - self.clock() - delay
        if left < self.min_attempt:
            return None
        return min(self.timeout, left)

    def map(self, payloads: Sequence[dict], reserve: float = 0.0) -> list[dict | ScoringFailed]:
        """All batches at once (at most ``concurrency`` in flight), results in input order.

        ``reserve`` seconds of the caller's time left (at most half of it)
        are kept back for what it does after this fan-out (a search's second
        phase).
        """
        if not payloads:
            return []
        # Read once, in the caller's thread: the time left belongs to the
        # invocation being served, which the pool's threads know nothing of.
        deadline = self.deadline()
        if deadline is not None and reserve > 0:
            deadline -= min(reserve, max(0.0, (deadline - self.clock()) / 2))

        def one(payload: dict) -> dict | ScoringFailed:
            try:
                return self.invoke(payload, deadline)
            except ScoringFailed as exc:
                return exc

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(payloads))) as pool:
            return list(pool.map(one, payloads))


def _describe_error(body: bytes) -> str:
    try:
        err = json.loads(body)
        return f"{err.get('errorType', 'error')}: {err.get('errorMessage', '')}"[:300]
    except (ValueError, AttributeError):
        return "function error"
