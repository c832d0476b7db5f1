"""The local stack in the foreground, as ``pictrace serve`` runs it.

The catalog lives in a data folder (:func:`default_data_dir` unless told
otherwise), locked so that two stacks never share one, and the API function
runs in :data:`WORKERS` worker processes.

S3 notifications are polled every second (so images dropped under
``catalog/`` are indexed promptly) and packing runs every 30 seconds, which
folds recent adds into shards as the hourly schedule does on AWS.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import threading
import time
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Iterator

from pictrace.local.stack import PARTS, LocalStack

POLL_INTERVAL = 1.0
PACK_INTERVAL = 30.0
# Execution environments for the API function: enough that a slow search does
# not hold up the others on a small machine, few enough to fit its memory.
WORKERS = 4


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
    data_dir: str | None = None,
    workers: int = WORKERS,
) -> Iterator[LocalStack]:
    """A started :class:`LocalStack` with background polling and packing; stopped on exit.

    ``data_dir`` keeps the catalog there across runs (None: in memory); one
    stack at a time may use a folder.
    """
    check_port(host, port)
    held = _hold(data_dir) if data_dir is not None else None
    try:
        with _started(host, port, api_key, allow_private_urls, data_dir, workers) as stack:
            yield stack
    finally:
        if held is not None:
            held.close()


@contextmanager
def _started(
    host: str, port: int, api_key: str | None, allow_private_urls: bool, data_dir: str | None, workers: int
) -> Iterator[LocalStack]:
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
        data_dir=data_dir,
        workers=workers,
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


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/pictrace``, else ``~/.local/share/pictrace``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "pictrace"


def _hold(data_dir: str) -> IO[bytes]:
    """Lock the data folder for this process (released when it exits, however it exits)."""
    folder = Path(data_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / "serve.lock", "a+b")
    except OSError as exc:
        raise CannotServe(f"cannot use the data folder {folder}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise CannotServe(f"the data folder {folder} is in use by another `pictrace serve`") from None
    return lock


def _abandon(stack: LocalStack) -> None:
    """Stop whatever parts of a half-started stack are running."""
    for part in PARTS:
        server = getattr(stack, part, None)
        if server is not None:
            with suppress(Exception):
                server.stop()


def catch_stop_signals() -> None:
    """Make Ctrl-C and SIGTERM raise KeyboardInterrupt from now on (main thread only).

    A process started in the background by a shell without job control
    inherits SIGINT ignored; "press Ctrl-C to stop" must hold anyway.  Called
    before the stack announces its address: a signal sent as soon as the
    address is read must not find it still ignored.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def wait() -> None:
    """Block until Ctrl-C or SIGTERM; both return normally."""
    catch_stop_signals()
    try:
        while True:
            # Short naps: the kernel may hand the signal to another thread, and Python
            # runs its handler only when the main thread next wakes up.
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
