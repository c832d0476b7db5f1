"""Wiring: the AWS clients and services a Lambda process uses, built once.

Endpoints come from boto3's own variables (``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL_LAMBDA``), which is how the local stack and tests point
the very same handlers at moto and at the local invoke endpoint.
"""

from __future__ import annotations

import json
import time
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any, Callable, TypeVar

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError, ClientError

from pictrace.adapters.folder_store import FolderStore
from pictrace.adapters.invoke import ClientsByTimeout, LambdaInvoker
from pictrace.adapters.s3 import S3Store
from pictrace.catalog.batch import ShardCache
from pictrace.catalog.catalog import Catalog
from pictrace.config import Config
from pictrace.errors import JobUnavailable


@dataclass(frozen=True)
class Services:
    config: Config
    store: S3Store | FolderStore
    catalog: Catalog
    invoker: LambdaInvoker
    cache: ShardCache
    start_duplicates: Callable[[dict], None]  # invokes the duplicate-groups job, without waiting


def build(config: Config) -> Services:
    if not config.bucket:
        raise RuntimeError("BUCKET_NAME is not set")
    store = _store(config)
    # A session of its own: shorter-timeout clients are made on first use,
    # on whichever thread needs one, and boto3's default session is not
    # safe to make clients from on several threads at once.
    session = boto3.session.Session()
    clients = ClientsByTimeout(lambda cfg: session.client("lambda", config=cfg), config.score_timeout)
    clients(config.score_timeout)  # the usual one, made now rather than in the first search
    invoker = LambdaInvoker(
        clients,
        config.score_function,
        retries=config.score_retries,
        concurrency=config.fanout_concurrency,
        timeout=config.score_timeout,
        margin=config.score_margin,
        time_left=time_left,
    )
    starter = _starter(lambda: session.client("lambda"), config.duplicates_function)
    return Services(config, store, Catalog(store, config), invoker, ShardCache(), starter)


def _starter(make_client: Callable[[], Any], function: str) -> Callable[[dict], None]:
    """``start(payload)``: an asynchronous (``Event``) invocation of ``function``; JobUnavailable if it fails."""

    def start(payload: dict) -> None:
        if not function:
            raise JobUnavailable("this deployment has no duplicates job (DUPLICATES_FUNCTION_NAME is not set)")
        try:
            make_client().invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode())
        except (BotoCoreError, ClientError) as exc:
            raise JobUnavailable(f"the duplicates job could not be started ({exc.__class__.__name__})") from None

    return start


def _store(config: Config) -> S3Store | FolderStore:
    """The bucket, or the local folder that stands in for it (``PICTRACE_STORE_DIR``)."""
    if config.store_dir:
        return FolderStore(config.store_dir, config.store_url)
    s3 = boto3.client(
        "s3", config=botocore.config.Config(max_pool_connections=64, signature_version="s3v4")
    )
    return S3Store(s3, config.bucket)


@lru_cache(maxsize=1)
def services() -> Services:
    """The process-wide services, from the environment (reused across warm invocations)."""
    return build(Config.from_env())


# The monotonic clock reading at which the invocation being served ends.  A
# context variable rather than a global: the local stack serves invocations
# on several threads of one process.
_deadline: ContextVar[float | None] = ContextVar("pictrace_deadline", default=None)

Handler = TypeVar("Handler", bound=Callable[..., Any])


def keeps_time(handler: Handler) -> Handler:
    """Make ``handler(event, context)`` publish the time its Lambda context has left.

    While it runs, :func:`time_left` counts down from the context's
    ``get_remaining_time_in_millis()``, and the scoring fan-out keeps to it.
    """

    @wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        token = _deadline.set(time.monotonic() + remaining() / 1000 if remaining else None)
        try:
            return handler(event, context)
        finally:
            _deadline.reset(token)

    return wrapper  # type: ignore[return-value]


def time_left() -> float | None:
    """Seconds left to the invocation being served, or ``None`` outside a :func:`keeps_time` handler."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()
