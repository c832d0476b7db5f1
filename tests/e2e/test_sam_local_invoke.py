"""Every function, built by `sam build`, run by `sam local invoke` in its Lambda container.

Each step invokes one function with its event from events/ and checks what it
returns and what it wrote, in the order a user's requests would come:

    host test ──127.0.0.1──▶ AWS stand-in container (S3 :5000, Lambda Invoke :9001)
                                   ▲ internal Docker network (no route off the host)
    sam local invoke <Fn> ──▶ Lambda container (stand-in Lambda image + built layers)

The stand-in container (tests/e2e/aws_standin/serve.py) runs moto's S3 and the
local Lambda Invoke endpoint, which serves the scoring fan-out that ApiFunction
and SearchTriggerFunction make from inside their containers. The host reaches
it only through ports published on 127.0.0.1, to create the bucket, drop
objects and read what the functions wrote.

The steps share one bucket and depend on each other: each test names the
steps it needs and fails at once, saying which, if one of them did not pass.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import boto3
import botocore.config
import pytest

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
STANDIN_DIR = HERE / "aws_standin"
EVENTS = HERE.parents[1] / "events"
COFFEE = (EVENTS / "coffee-small.jpg").read_bytes()
QUERY = (EVENTS / "coffee-query.jpg").read_bytes()
COFFEE_ID = hashlib.sha256(COFFEE).hexdigest()
QUERY_ID = hashlib.sha256(QUERY).hexdigest()
# The object the S3 events name (URL-encoded there, as S3 sends keys).
DROPPED_KEY = "catalog/demo/coffee small.jpg"
INCOMING_KEY = "incoming/query.jpg"

# What moto[server] needs, as CPython 3.13 manylinux wheels for the container.
WHEEL_OPTIONS = (
    "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.13",
    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
    "--platform", "manylinux2014_x86_64",
)
# Variables the host test environment may carry (the in-process local stack
# sets some) that must not leak into SAM's view of the template's defaults.
LEAKY_PREFIXES = ("AWS_ENDPOINT_URL", "PICTRACE_", "POWERTOOLS_")
LEAKY_NAMES = ("BUCKET_NAME", "SCORE_FUNCTION_NAME", "LOG_LEVEL")


def load_local_env() -> ModuleType:
    """Import tests/e2e/aws_standin/local_env.py (also a command-line script)."""
    spec = importlib.util.spec_from_file_location("aws_standin_local_env", STANDIN_DIR / "local_env.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


local_env = load_local_env()


def event_bucket() -> str:
    """The bucket the S3 events name; the test's bucket has the same name."""
    record = json.loads((EVENTS / "index-object-created.json").read_text())["Records"][0]
    return record["s3"]["bucket"]["name"]


BUCKET = event_bucket()


# --- the stand-in's Python packages ------------------------------------------


def cache_root() -> Path:
    """Where downloaded packages are kept between runs (same root as the Lambda image's)."""
    override = os.environ.get("PICTRACE_E2E_CACHE")
    if override:
        return Path(override)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pictrace" / "e2e"


@pytest.fixture(scope="session")
def standin_site(sam_env: dict[str, str], run_cmd) -> Path:
    """A folder with moto[server] and its dependencies for CPython 3.13, built once and cached.

    Keyed by the requirements file and the wheel options, so a change to
    either installs afresh; older folders are removed.
    """
    requirements = STANDIN_DIR / "requirements.txt"
    key = hashlib.sha256(requirements.read_bytes() + " ".join(WHEEL_OPTIONS).encode()).hexdigest()[:16]
    root = cache_root() / "aws-standin"
    root.mkdir(parents=True, exist_ok=True)
    site = root / f"site-{key}"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be filling the cache
        if not site.is_dir():
            partial = root / f"partial-{os.getpid()}"
            shutil.rmtree(partial, ignore_errors=True)
            run_cmd(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "--no-warn-conflicts", "--no-compile", *WHEEL_OPTIONS,
                 "--target", str(partial), "-r", str(requirements)],
                env=sam_env, timeout=900,
            )
            partial.rename(site)
        for stale in root.iterdir():
            if stale.is_dir() and stale != site:
                shutil.rmtree(stale, ignore_errors=True)
    return site


# --- the stand-in container --------------------------------------------------


@dataclass
class Standin:
    """The running stand-in container and the host's S3 client for it."""

    name: str
    s3: Any
    logs: Callable[[], str]


def docker_out(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, check=False)
    return proc.stdout + proc.stderr


def published_port(name: str, port: int, env: dict[str, str], run_cmd) -> int:
    """The 127.0.0.1 host port Docker published for container port `port`."""
    lines = run_cmd(["docker", "port", name, f"{port}/tcp"], env=env).stdout.split()
    for mapping in lines:
        host, _, number = mapping.rpartition(":")
        if host == "127.0.0.1":
            return int(number)
    pytest.fail(f"{name}: port {port} is not published on 127.0.0.1: {lines}")


def host_s3(port: int) -> Any:
    """A boto3 S3 client for the stand-in's published port, with dummy credentials."""
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="standin",
        aws_secret_access_key="standin",
        region_name=local_env.REGION,
        config=botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=30),
    )


def wait_ready(name: str, env: dict[str, str], timeout: float = 90) -> None:
    """Wait for the entry script's "ready" line; fail with the logs if the container dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "aws-standin ready" in docker_out(["logs", name], env):
            return
        if docker_out(["inspect", "-f", "{{.State.Running}}", name], env).strip() != "true":
            break
        time.sleep(0.5)
    pytest.fail(f"AWS stand-in {name} did not come up:\n{docker_out(['logs', name], env)[-4000:]}")


@pytest.fixture(scope="module")
def standin(lambda_image: str, docker_network: str, project_build: Path, standin_site: Path,
            sam_env: dict[str, str], run_cmd) -> Iterator[Standin]:
    """Start the AWS stand-in on the test network, with the bucket created; remove it afterwards.

    It starts on Docker's default bridge, the only kind of network on which
    Docker publishes ports (not on an --internal one), with its ports bound
    to 127.0.0.1 only, and then joins the internal test network, where the
    function containers find it by name. SAM attaches its Lambda containers
    the same way.
    """
    name = f"pictrace-aws-{os.getpid()}-{secrets.token_hex(3)}"
    mounts = {
        standin_site: "/opt/standin/site",
        project_build / "PicTraceLayer" / "python": "/opt/standin/pictrace",
        project_build / "OpenCvLayer" / "python": "/opt/standin/opencv",
        # The built ScoreFunction, byte for byte functions/score/app.py.
        project_build / "ScoreFunction": "/var/task",
        STANDIN_DIR: "/opt/standin/bin",
    }
    environment = {
        # Layers first, as in Lambda; then moto and its dependencies; then the
        # image's runtime packages.
        "PYTHONPATH": "/opt/standin/pictrace:/opt/standin/opencv:/opt/standin/site:/var/runtime",
        # The scoring handler in this container reads S3 from its neighbour thread.
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{local_env.S3_PORT}",
        "BUCKET_NAME": BUCKET,
        "AWS_ACCESS_KEY_ID": "standin",
        "AWS_SECRET_ACCESS_KEY": "standin",
        "AWS_REGION": local_env.REGION,
        "AWS_DEFAULT_REGION": local_env.REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "pictrace",
        "POWERTOOLS_METRICS_NAMESPACE": "PicTrace",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = ["docker", "create", "--name", name, "--network", "bridge",
           "-p", f"127.0.0.1::{local_env.S3_PORT}", "-p", f"127.0.0.1::{local_env.LAMBDA_PORT}",
           "--entrypoint", "/usr/bin/python3"]
    for source, target in mounts.items():
        cmd += ["-v", f"{source}:{target}:ro"]
    for key, value in environment.items():
        cmd += ["-e", f"{key}={value}"]
    run_cmd([*cmd, lambda_image, "/opt/standin/bin/serve.py"], env=sam_env)
    try:
        run_cmd(["docker", "network", "connect", docker_network, name], env=sam_env)
        run_cmd(["docker", "start", name], env=sam_env)
        wait_ready(name, sam_env)
        s3 = host_s3(published_port(name, local_env.S3_PORT, sam_env, run_cmd))
        s3.create_bucket(Bucket=BUCKET)
        yield Standin(name, s3, lambda: docker_out(["logs", name], sam_env))
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True,
                       stdin=subprocess.DEVNULL, check=False)


# --- sam local invoke --------------------------------------------------------


@dataclass
class Flow:
    """Runs `sam local invoke` against the stand-in and tracks which steps passed."""

    template: Path
    env_vars: Path
    network: str
    image: str
    env: dict[str, str]
    standin: Standin
    run_cmd: Callable[..., subprocess.CompletedProcess[str]]
    passed: set[str] = field(default_factory=set)
    # Values a later step compares with (e.g. the search's top score).
    seen: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def needs(self, *steps: str) -> None:
        """Fail now, naming the step, unless every earlier step in `steps` passed."""
        missing = [s for s in steps if s not in self.passed]
        if missing:
            pytest.fail(f"needs earlier step(s) {', '.join(missing)}, which did not pass")

    def command(self, function: str, event: str) -> list[str]:
        return [
            "sam", "local", "invoke", function,
            "-t", str(self.template),
            "-e", str(EVENTS / event),
            "--invoke-image", self.image,
            "--skip-pull-image",
            "--docker-network", self.network,
            "--env-vars", str(self.env_vars),
            "--container-host", "127.0.0.1",
            "--container-host-interface", "127.0.0.1",
        ]

    def invoke(self, function: str, event: str) -> dict[str, Any]:
        """Invoke `function` with events/`event` in its container; return the decoded reply.

        `sam local invoke` writes the function's reply to stdout (possibly
        without a final newline) and its own messages and the function's logs
        to stderr; a handler exception comes back as an errorType/errorMessage
        reply with exit status 0.

        Each call takes 15 to 25 s, most of it SAM re-tarring the 200 MB of
        layers into a fresh image: it rebuilds whenever a layer is defined in
        the template, and no `sam local invoke` option turns that off (warm
        containers exist only for `sam local start-lambda`/`start-api`).
        """
        started = time.monotonic()
        proc = self.run_cmd(self.command(function, event), env=self.env,
                            cwd=self.template.parent, timeout=600)
        self.timings[f"{function} {event}"] = time.monotonic() - started
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        context = f"stderr:\n{proc.stderr[-4000:]}\nstand-in:\n{self.standin.logs()[-2000:]}"
        assert lines, f"{function}: no reply on stdout\n{context}"
        reply = json.loads(lines[-1])
        assert not (isinstance(reply, dict) and "errorType" in reply), f"{function} raised: {reply}\n{context}"
        return reply

    def api(self, event: str) -> tuple[int, dict[str, Any]]:
        """Invoke ApiFunction with an API Gateway event; return (status, decoded JSON body)."""
        reply = self.invoke("ApiFunction", event)
        return reply["statusCode"], json.loads(reply["body"])

    def done(self, step: str) -> None:
        self.passed.add(step)


def invoke_environment(sam_env: dict[str, str]) -> dict[str, str]:
    """SAM's environment without variables that would shadow the template's defaults."""
    return {
        k: v for k, v in sam_env.items()
        if k not in LEAKY_NAMES and not k.startswith(LEAKY_PREFIXES)
    }


@pytest.fixture(scope="module")
def flow(lambda_image: str, standin: Standin, docker_network: str, project_build: Path,
         sam_env: dict[str, str], run_cmd) -> Iterator[Flow]:
    """The step runner; the image fixture comes first so missing tools skip (or fail) early."""
    template, env_vars = local_env.write_local_files(project_build, standin.name, BUCKET)
    started = time.monotonic()
    flow = Flow(template, env_vars, docker_network, lambda_image, invoke_environment(sam_env), standin, run_cmd)
    yield flow
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in flow.timings.items())
    print(f"\nsam local invoke: {len(flow.timings)} invocations in {time.monotonic() - started:.1f}s ({timings})")


# --- helpers for what the functions wrote ------------------------------------


def keys(s3: Any, prefix: str = "") -> dict[str, str]:
    """Every object key under `prefix` with its ETag."""
    found: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["ETag"]
    return found


def read_json(s3: Any, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


# --- the steps, in order -----------------------------------------------------


def test_01_api_health_reports_the_bucket_from_env_vars(flow: Flow) -> None:
    status, body = flow.api("api-health.json")
    assert status == 200 and body["status"] == "ok"
    # The template's own BUCKET_NAME is derived from the stack id; this value
    # can only have come from the --env-vars file.
    assert body["bucket"] == BUCKET
    flow.done("health")


def test_02_api_add_image_writes_the_catalog_objects(flow: Flow) -> None:
    status, body = flow.api("api-add-image.json")
    assert status == 201, body
    assert body["ids"] == [COFFEE_ID] and body["failed"] == []
    image = body["images"][0]
    assert image["created"] is True and (image["width"], image["format"]) == (160, "jpeg")
    written = keys(flow.standin.s3)
    for key in (image["key"], f"index/records/{COFFEE_ID}.json",
                f"index/features/{COFFEE_ID}.npz", f"index/pending/{COFFEE_ID}.npz"):
        assert key in written, f"{key} missing; bucket holds {sorted(written)}"
    stored = flow.standin.s3.get_object(Bucket=BUCKET, Key=image["key"])["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == COFFEE_ID
    assert read_json(flow.standin.s3, f"index/records/{COFFEE_ID}.json")["id"] == COFFEE_ID
    flow.done("add")


def test_03_api_get_image(flow: Flow) -> None:
    flow.needs("add")
    status, body = flow.api("api-get-image.json")
    assert status == 200, body
    assert body["id"] == COFFEE_ID and body["width"] == 160
    # Presigned for the endpoint the function was given, not for AWS, and
    # signed with the dummy key from --env-vars rather than the host's.
    url = body["stored_url"]
    assert url.startswith(f"http://{flow.standin.name}:{local_env.S3_PORT}/{BUCKET}/")
    assert f"X-Amz-Credential={local_env.standin_variables('', '')['AWS_ACCESS_KEY_ID']}%2F" in url


def test_04_api_list_images(flow: Flow) -> None:
    flow.needs("add")
    status, body = flow.api("api-list-images.json")
    assert status == 200, body
    assert body["total"] == 1 and [i["id"] for i in body["images"]] == [COFFEE_ID]


def test_05_api_search_fans_out_to_the_standin_endpoint(flow: Flow) -> None:
    flow.needs("add")
    status, body = flow.api("api-search.json")
    assert status == 200, body
    assert body["query"]["sha256"] == QUERY_ID
    top = body["results"][0]
    assert top["id"] == COFFEE_ID and top["transform"] == "rot90"
    # One pending batch, scored through the stand-in's Invoke endpoint; a
    # failed call would make the answer partial instead.
    assert body["counts"]["batches"] == 1 and body["counts"]["failed_batches"] == 0
    assert body["partial"] is False and body["failed_batches"] == []
    assert f"queries/{QUERY_ID}.features.npz" in keys(flow.standin.s3, "queries/")
    flow.seen["search_score"] = top["score"]
    flow.done("search")


def test_06_score_function_runs_both_phases(flow: Flow) -> None:
    flow.needs("search")  # the search stored the query features these events name
    found = flow.invoke("ScoreFunction", "score-pending-batch.json")
    assert [c["id"] for c in found["candidates"]] == [COFFEE_ID]
    assert found["rows"] == 1 and found["vanished"] == 0
    reply = flow.invoke("ScoreFunction", "score-rerank.json")
    assert [m["id"] for m in reply["matches"]] == [COFFEE_ID]
    assert reply["work"]["candidates"] == 1 and reply["vanished"] == 0
    assert reply["matches"][0]["score"] == pytest.approx(flow.seen["search_score"], abs=1e-6)


def test_07_api_search_with_bad_k_is_a_400(flow: Flow) -> None:
    status, body = flow.api("api-search-bad-k.json")
    assert status == 400 and body["error"] == "bad_request" and "k must be" in body["message"]


def test_08_api_add_of_a_metadata_url_is_blocked(flow: Flow) -> None:
    before = keys(flow.standin.s3)
    status, body = flow.api("api-add-url-blocked.json")
    assert status == 400 and body["error"] == "blocked_url", body
    assert keys(flow.standin.s3) == before


def test_09_index_function_indexes_a_dropped_catalog_object(flow: Flow) -> None:
    flow.needs("add")
    flow.standin.s3.put_object(Bucket=BUCKET, Key=DROPPED_KEY, Body=QUERY)
    reply = flow.invoke("IndexFunction", "index-object-created.json")
    assert reply["indexed"] == [{"key": DROPPED_KEY, "id": QUERY_ID}]
    assert reply["rejected"] == [] and reply["duplicates"] == []
    record = read_json(flow.standin.s3, f"index/records/{QUERY_ID}.json")
    assert record["key"] == DROPPED_KEY and record["name"] == "demo/coffee small.jpg"
    flow.done("index-created")


def test_10_index_function_forgets_a_removed_catalog_object(flow: Flow) -> None:
    flow.needs("index-created")
    flow.standin.s3.delete_object(Bucket=BUCKET, Key=DROPPED_KEY)
    reply = flow.invoke("IndexFunction", "index-object-removed.json")
    assert reply["removed"] == [{"key": DROPPED_KEY, "id": QUERY_ID}]
    left = keys(flow.standin.s3, "index/")
    assert f"index/records/{QUERY_ID}.json" not in left
    assert f"index/pending/{QUERY_ID}.npz" not in left
    assert f"index/tombstones/{QUERY_ID}" in left
    flow.done("index-removed")


def test_11_search_trigger_writes_results_for_a_dropped_query(flow: Flow) -> None:
    flow.needs("add", "index-removed")
    flow.standin.s3.put_object(Bucket=BUCKET, Key=INCOMING_KEY, Body=QUERY)
    reply = flow.invoke("SearchTriggerFunction", "search-trigger-object-created.json")
    assert reply == {"results": ["results/query.jpg.json"]}
    result = read_json(flow.standin.s3, "results/query.jpg.json")
    assert result["source_key"] == INCOMING_KEY
    assert result["results"][0]["id"] == COFFEE_ID
    assert result["partial"] is False and result["counts"]["failed_batches"] == 0


def test_12_pack_function_folds_pending_rows_into_a_partition(flow: Flow) -> None:
    from pictrace.core.partition import Partition

    flow.needs("add", "index-removed")
    reply = flow.invoke("PackFunction", "pack-scheduled.json")
    # Only the coffee image is pending: the dropped one was removed again.
    assert reply["packed"] == 1 and reply["partitions_written"] == 1 and reply["swapped"] is True
    manifest = read_json(flow.standin.s3, "index/manifest.json")
    [entry] = manifest["partitions"]
    part = Partition.from_bytes(flow.standin.s3.get_object(Bucket=BUCKET, Key=entry["key"])["Body"].read())
    assert part.id_list() == [COFFEE_ID]
