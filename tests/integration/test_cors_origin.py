"""The API function's own responses carry the origin the stack allows (CorsAllowOrigin).

The resolver reads it once, when ``pictrace.http.app`` is imported, so each
case imports it afresh in a child interpreter with the variable set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

RESOLVE = """
import json, sys
from pictrace.http.app import app
event = json.load(open("events/api-health.json"))
event["headers"]["Origin"] = sys.argv[1]
reply = app.resolve(event, None)
print(json.dumps({"status": reply["statusCode"], "headers": reply.get("multiValueHeaders") or reply.get("headers") or {}}))
"""


def allow_origin(configured: str | None, origin: str) -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "PICTRACE_CORS_ALLOW_ORIGIN"}
    # /health reads no storage, but the services it names need a bucket and a region.
    env.update(BUCKET_NAME="pictrace-test", AWS_DEFAULT_REGION="us-east-1")
    if configured is not None:
        env["PICTRACE_CORS_ALLOW_ORIGIN"] = configured
    proc = subprocess.run(
        [sys.executable, "-c", RESOLVE, origin], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout.strip().splitlines()[-1])
    value = reply["headers"].get("Access-Control-Allow-Origin", [])
    return reply["status"], value if isinstance(value, list) else [value]


def test_a_configured_origin_is_the_only_one_allowed() -> None:
    assert allow_origin("https://app.example.org", "https://app.example.org") == (200, ["https://app.example.org"])
    status, allowed = allow_origin("https://app.example.org", "https://elsewhere.example.net")
    assert status == 200 and allowed == []


def test_without_configuration_any_origin_is_allowed() -> None:
    status, allowed = allow_origin(None, "https://elsewhere.example.net")
    assert status == 200 and allowed in (["*"], ["https://elsewhere.example.net"])
