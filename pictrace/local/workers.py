"""Execution environments for a function: worker processes, as Lambda runs them.

Lambda serves concurrent invocations in separate execution environments,
each with its own copy of the handler's module state (Powertools' resolver
keeps the current event there, the scoring function its shard cache).  The
local stack does the same with a pool of worker processes, each importing
the function once and serving one invocation at a time, so a slow search
does not hold up other requests and searches use every core.

For the API function, routes that must stay quick whatever the load
(``GET /health``, the web page, CORS preflights) have an environment of
their own, the way reserved concurrency keeps a function available on AWS;
everything else waits for the first free environment of the pool.

A worker that dies (killed, or a crash in native code) fails only the
invocation it was serving, which the gateway answers with a 502, and is
replaced.  Workers exit when the stack stops, or when their parent dies
(their pipe closes), after finishing the invocation they are serving.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from multiprocessing.connection import Connection

LIGHT_ROUTES = frozenset({("GET", "/health"), ("GET", "/"), ("GET", "")})
START_TIMEOUT = 300.0
# The pools' environments yield the CPU to the gateway's process and the light
# lane, so a machine busy with searches still answers /health at once.
HEAVY_NICE = 5  # importing OpenCV and Powertools on a busy machine is slow


class WorkerDied(Exception):
    """The execution environment serving an invocation exited before answering."""


class Worker:
    def __init__(self, ctx, folder: str, name: str, nice: int) -> None:
        self.lane = "pool"
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, folder, name, nice), daemon=True)
        self.process.start()
        child.close()

    def ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            raise OSError("an API worker did not start in time")
        status, detail = self.conn.recv()
        if status != "ready":
            raise OSError(f"an API worker failed to start: {detail}")

    def call(self, event: dict, request_id: str) -> dict:
        try:
            self.conn.send((event, request_id))
            status, value = self.conn.recv()
        except (EOFError, OSError):
            raise WorkerDied("the function's execution environment exited") from None
        if status == "error":
            raise RuntimeError(value)
        return value

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
        self.conn.close()


class WorkerPool:
    """``size`` environments for the function in ``functions/<folder>/``; the API has one more for light routes."""

    def __init__(self, size: int, folder: str = "api", name: str = "ApiFunction") -> None:
        self._folder, self._name = folder, name
        self._light = folder == "api"
        self._ctx = multiprocessing.get_context("spawn")  # never fork a process running threads
        self._lanes: dict[str, queue.Queue[Worker]] = {"pool": queue.Queue(), "light": queue.Queue()}
        self._all: list[Worker] = []
        self._lock = threading.Lock()
        self._stopped = False
        self._size = size

    def start(self) -> "WorkerPool":
        lanes = (["light"] if self._light else []) + ["pool"] * self._size
        started = [(lane, self._spawn(lane)) for lane in lanes]
        for lane, worker in started:
            worker.ready(START_TIMEOUT)
            self._lanes[lane].put(worker)
        return self

    def __call__(self, event: dict, context) -> dict:
        """Invoke the function in a free environment (a handler for the gateway or the Lambda endpoint)."""
        lane = self._lanes["light" if self._light and _is_light(event) else "pool"]
        worker = lane.get()
        try:
            return worker.call(event, context.aws_request_id)
        except WorkerDied:
            worker = self._replace(worker)
            raise
        finally:
            lane.put(worker)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            workers = list(self._all)
        for worker in workers:
            worker.stop()

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._all if w.process.pid is not None]

    def _spawn(self, lane: str) -> Worker:
        worker = Worker(self._ctx, self._folder, self._name, 0 if lane == "light" else HEAVY_NICE)
        worker.lane = lane
        with self._lock:
            self._all.append(worker)
        return worker

    def _replace(self, dead: Worker) -> Worker:
        with self._lock:
            if dead in self._all:
                self._all.remove(dead)
            if self._stopped:
                return dead
        dead.stop(timeout=1)
        fresh = self._spawn(dead.lane)
        fresh.ready(START_TIMEOUT)
        return fresh


def _is_light(event: dict) -> bool:
    route = (event.get("httpMethod", ""), (event.get("path") or "").rstrip("/"))
    return route in LIGHT_ROUTES or route[0] == "OPTIONS"


def _serve(conn: Connection, folder: str, name: str, nice: int) -> None:
    """A worker's life: import the function, then serve invocations until told to stop.

    The environment (bucket or store folder, endpoints) is the stack's,
    inherited when the process was spawned.
    """
    import signal
    import traceback

    from pictrace.local.lambda_endpoint import LambdaContext

    # Ctrl-C reaches the whole process group; the stack decides when workers stop,
    # after the requests in flight are answered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice:
        os.nice(nice)

    try:
        from pictrace.local.stack import load_handler

        handler = load_handler(folder)
    except BaseException as exc:  # report why, rather than leave the parent waiting
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return  # the stack is gone
        if message is None:
            return
        event, request_id = message
        try:
            reply = ("ok", handler(event, LambdaContext(name, request_id)))
        except Exception:
            reply = ("error", traceback.format_exc())
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return
