"""Invoking the scoring function once per batch: bounded, retried, timed out.

A batch that still fails after its retries is returned as a
:class:`ScoringFailed` in its place, never as an empty result, so the caller
can say which batches are missing.
"""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

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
    """Client settings for scoring calls: our own retry loop, a read timeout per batch."""
    return botocore.config.Config(
        read_timeout=timeout,
        connect_timeout=5,
        # botocore reads "max_attempts" as retries after the first call; one
        # call in total leaves every retry (and its count) to LambdaInvoker.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=64,
    )


class LambdaInvoker:
    """Calls a Lambda function synchronously (``RequestResponse``) with retries."""

    def __init__(
        self,
        client,
        function_name: str,
        *,
        retries: int = 3,
        concurrency: int = 16,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.function_name = function_name
        self.retries = retries
        self.concurrency = concurrency
        self.backoff = backoff
        self.sleep = sleep

    def invoke(self, payload: dict) -> dict:
        """One batch; raises ScoringFailed once the retries are spent or on a final error."""
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                # Full jitter keeps a throttled fan-out from retrying in lockstep.
                self.sleep(random.uniform(0, self.backoff * 2 ** (attempt - 1)))
            try:
                resp = self.client.invoke(
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

    def map(self, payloads: Sequence[dict]) -> list[dict | ScoringFailed]:
        """All batches at once (at most ``concurrency`` in flight), results in input order."""
        if not payloads:
            return []

        def one(payload: dict) -> dict | ScoringFailed:
            try:
                return self.invoke(payload)
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
