"""The embedded local stack: the same handlers, events and boto3 calls as on AWS.

* S3: moto's server on 127.0.0.1, which speaks the S3 protocol and keeps
  objects in memory; or, with ``data_dir``, a folder store there (the same
  interface, kept across restarts) and an endpoint for its presigned URLs;
* Lambda: a local Invoke endpoint dispatching to ``functions/*/app.py``;
* API Gateway: a REST proxy emulation in front of the API function, which
  runs in this process (one request at a time) or, with ``workers``, in that
  many worker processes at once plus one for the health check and web page
  (and the scoring function in as many more);
* S3 notifications: a poller that turns new and removed objects under
  ``catalog/`` and ``incoming/`` into the S3 events the template wires up;
* the schedule: packing runs every ``pack_interval`` seconds.

Only the local stack sets the process environment; handlers read it as they
would on AWS (``BUCKET_NAME``, ``AWS_ENDPOINT_URL_S3``...).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import boto3

from pictrace import runtime
from pictrace.catalog import layout
from pictrace.adapters.folder_store import FolderStore
from pictrace.local.api_gateway import ApiGateway
from pictrace.local.lambda_endpoint import LambdaEndpoint
from pictrace.local.objects import ObjectEndpoint
from pictrace.local.workers import WorkerPool

# The wheel ships the handlers inside the package; a source checkout has them at the top.
_PACKAGED = Path(__file__).resolve().parents[1] / "functions"
FUNCTIONS_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "functions"
# Logical id in template.yaml -> folder under functions/
FUNCTIONS = {
    "ApiFunction": "api",
    "ScoreFunction": "score",
    "IndexFunction": "index",
    "PackFunction": "pack",
    "SearchTriggerFunction": "search_trigger",
    "DuplicatesFunction": "duplicates",
}
# The template's Timeout of functions that run longer than the default 30 s.
TIMEOUTS = {"DuplicatesFunction": 900}
# Stopped in this order (see stop()).
PARTS = ("gateway", "pool", "lambdas", "score_pool", "objects", "s3_server")
TRIGGERS = {layout.CATALOG: "IndexFunction", layout.INCOMING: "SearchTriggerFunction"}


def load_handler(folder: str):
    """Import ``functions/<folder>/app.py`` under a unique name and return its handler."""
    path = FUNCTIONS_DIR / folder / "app.py"
    spec = importlib.util.spec_from_file_location(f"pictrace_functions_{folder}", path)
    module: ModuleType = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.lambda_handler


@dataclass
class LocalStack:
    host: str = "127.0.0.1"
    port: int = 0  # the API; 0 picks a free port
    bucket: str = "pictrace-local"
    api_key: str | None = None
    poll_interval: float = 1.0
    pack_interval: float = 30.0
    settings: dict[str, str] = field(default_factory=dict)  # extra PICTRACE_* variables
    data_dir: str | None = None  # keep the catalog in this folder; None: in memory (moto)
    workers: int = 0  # worker processes for the API and for scoring each; 0: both run in this process

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seen: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> "LocalStack":
        try:
            return self._start()
        except BaseException:
            self.stop()  # nothing half-started keeps running or keeps the environment
            raise

    def _start(self) -> "LocalStack":
        self.lambdas = LambdaEndpoint({}, host=self.host)
        self.lambdas.timeouts.update(TIMEOUTS)
        if self.data_dir is None:
            self._start_moto()
            store_env: dict[str, str] = {}
        else:
            self._start_folder()
            store_env = {"PICTRACE_STORE_DIR": str(self.folder.root), "PICTRACE_STORE_URL": self.s3_url}
        self._set_env(
            {
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_SESSION_TOKEN": "local",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL_S3": self.s3_url,
                "AWS_ENDPOINT_URL_LAMBDA": self.lambdas.url,
                "BUCKET_NAME": self.bucket,
                "SCORE_FUNCTION_NAME": "ScoreFunction",
                "DUPLICATES_FUNCTION_NAME": "DuplicatesFunction",
                "POWERTOOLS_SERVICE_NAME": "pictrace",
                "POWERTOOLS_METRICS_NAMESPACE": "PicTrace",
                "POWERTOOLS_TRACE_DISABLED": "true",
                # Metrics are CloudWatch EMF lines on stdout; locally they would only be noise.
                "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
                "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
                "PICTRACE_PACK_GRACE_SECONDS": "30",
                **store_env,
                **self.settings,
            }
        )
        # Handlers read the environment at import, as they do in a Lambda container.
        runtime.services.cache_clear()
        handlers = {name: load_handler(folder) for name, folder in FUNCTIONS.items()}
        self.lambdas.handlers.update(handlers)
        self.lambdas.start()
        if self.data_dir is None:
            self.s3.create_bucket(Bucket=self.bucket)
        self.store = runtime.services().store
        # Worker processes are spawned with the environment set above.
        api, one_at_a_time = handlers["ApiFunction"], True
        if self.workers:
            self.pool = WorkerPool(self.workers).start()
            self.score_pool = WorkerPool(self.workers, "score", "ScoreFunction").start()
            self.lambdas.handlers["ScoreFunction"] = self.score_pool
            api, one_at_a_time = self.pool, False
        self.gateway = ApiGateway(
            api, host=self.host, port=self.port, api_key=self.api_key, one_at_a_time=one_at_a_time
        ).start()
        self.lambda_client = boto3.client("lambda")
        self._seen = self._answered_drops()
        self._spawn(self._poll_notifications, self.poll_interval)
        self._spawn(self._pack, self.pack_interval)
        return self

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.s3_server = ThreadedMotoServer(ip_address=self.host, port=0, verbose=False)
        self.s3_server.start()
        s3_host, s3_port = self.s3_server.get_host_and_port()
        self.s3_url = f"http://{s3_host}:{s3_port}"
        self.s3 = boto3.client(
            "s3", endpoint_url=self.s3_url, region_name="us-east-1",
            aws_access_key_id="local", aws_secret_access_key="local",
        )

    def _start_folder(self) -> None:
        self.folder = FolderStore(Path(self.data_dir) / "store")
        self.objects = ObjectEndpoint(self.folder, host=self.host).start()
        self.s3_url = self.folder.url = self.objects.url

    @property
    def fresh(self) -> bool:
        """Whether the store holds nothing at all (so the demo may seed it)."""
        return next(iter(self.store.list("", limit=1)), None) is None

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        # The gateway first: it finishes the requests in flight, which need the rest.
        for part in PARTS:
            server = getattr(self, part, None)
            if server is not None:
                try:
                    server.stop()
                except Exception:  # stopping one part must not keep the others running
                    pass
        runtime.services.cache_clear()
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return self.gateway.url

    @property
    def services(self) -> runtime.Services:
        return runtime.services()

    def invoke(self, function: str, event: dict) -> dict:
        """Invoke a function through the local Lambda endpoint, as boto3 would on AWS."""
        import json

        resp = self.lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
        body = json.loads(resp["Payload"].read())
        if resp.get("FunctionError"):
            raise RuntimeError(f"{function} failed: {body}")
        return body

    # --- background work -------------------------------------------------------

    def _spawn(self, work, interval: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    work()
                except Exception as exc:  # keep the stack alive; the next tick retries
                    print(f"pictrace local stack: {work.__name__} failed: {exc}")

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        self._threads.append(t)

    def sync_notifications(self) -> int:
        """Deliver S3 events for what changed under the trigger prefixes; returns how many."""
        return self._poll_notifications()

    def _answered_drops(self) -> dict[str, str]:
        """Searches dropped under ``incoming/`` before a restart that already have their result.

        Everything else under the trigger prefixes is notified again after a
        restart, so what a killed stack had not got to is not lost: indexing
        a catalog drop twice changes nothing.
        """
        drops = self.store.list_etags(layout.INCOMING)
        results = set(self.store.list(layout.RESULTS)) if drops else set()
        return {k: e for k, e in drops.items() if layout.result_key(k) in results}

    def _poll_notifications(self) -> int:
        now: dict[str, str] = {}
        for prefix in TRIGGERS:
            now.update(self.store.list_etags(prefix))
        created = [k for k, e in now.items() if self._seen.get(k) != e]
        removed = [k for k in self._seen if k not in now]
        self._seen = now
        for key, name in [(k, "ObjectCreated:Put") for k in created] + [(k, "ObjectRemoved:Delete") for k in removed]:
            try:
                self._notify(key, name)
            except Exception as exc:  # one failing drop must not stop the rest of the poll
                print(f"pictrace local stack: {name} for {key} failed: {exc}")
        return len(created) + len(removed)

    def _notify(self, key: str, event_name: str) -> None:
        from urllib.parse import quote_plus

        function = next(f for p, f in TRIGGERS.items() if key.startswith(p))
        if function == "SearchTriggerFunction" and event_name.startswith("ObjectRemoved"):
            return  # the template subscribes the search trigger to creations only
        record = {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventName": event_name,
            "s3": {"bucket": {"name": self.bucket}, "object": {"key": quote_plus(key, safe="/")}},
        }
        self.invoke(function, {"Records": [record]})

    def pack_now(self) -> dict:
        return self.invoke("PackFunction", {"source": "pictrace.local"})

    def _pack(self) -> None:
        self.pack_now()

    def _set_env(self, values: dict[str, str]) -> None:
        for k, v in values.items():
            self._saved_env.setdefault(k, os.environ.get(k))
            os.environ[k] = v


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
