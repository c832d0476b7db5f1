"""The local stack in the foreground, as ``pictrace serve`` runs it.

S3 notifications are polled every second (so images dropped under
``catalog/`` are indexed promptly) and packing runs every 30 seconds, which
folds recent adds into shards as the hourly schedule does on AWS.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
import warnings
from contextlib import contextmanager, suppress
from typing import Iterator

from pictrace.local.stack import LocalStack

POLL_INTERVAL = 1.0
PACK_INTERVAL = 30.0


class CannotServe(Exception):
    """The stack could not start (typically: the port is taken)."""


def check_port(host: str, port: int) -> None:
    """Raise :class:`CannotServe` unless ``host:port`` can be listened on now."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # The API server reuses addresses too, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CannotServe(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@contextmanager
def running(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    api_key: str | None = None,
    allow_private_urls: bool = False,
) -> Iterator[LocalStack]:
    """A started :class:`LocalStack` with background polling and packing; stopped on exit."""
    check_port(host, port)
    # Metrics are off locally; Powertools would still warn on every request.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    settings = {"PICTRACE_ALLOW_PRIVATE_URLS": "true"} if allow_private_urls else {}
    stack = LocalStack(
        host=host,
        port=port,
        api_key=api_key,
        poll_interval=POLL_INTERVAL,
        pack_interval=PACK_INTERVAL,
        settings=settings,
    )
    try:
        stack.start()
    except ImportError as exc:  # moto is an optional dependency
        _abandon(stack)
        raise CannotServe(f"the local stack needs {exc.name or 'the local extras'}: pip install 'pictrace[local]'") from None
    except OSError as exc:
        _abandon(stack)
        raise CannotServe(f"the local stack did not start: {exc.strerror or exc}") from None
    try:
        yield stack
    finally:
        stack.stop()


def _abandon(stack: LocalStack) -> None:
    """Stop whatever parts of a half-started stack are running."""
    for part in ("gateway", "lambdas", "s3_server"):
        server = getattr(stack, part, None)
        if server is not None:
            with suppress(Exception):
                server.stop()


def wait() -> None:
    """Block until Ctrl-C or SIGTERM; both return normally."""
    if threading.current_thread() is threading.main_thread():
        # A process started in the background by a shell without job control
        # inherits SIGINT ignored; "press Ctrl-C to stop" must hold anyway.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
