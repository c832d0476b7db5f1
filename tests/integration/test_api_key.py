"""API key enforcement at the gateway, and short-lived presigned URLs.

The session stack's gateway reads its ``api_key`` on every request, so a
fixture sets a key for one test and removes it afterwards; no second stack
(which would fight the first over the process environment) is needed.
"""

from __future__ import annotations

import base64
import calendar
import json
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import Client
from tests.hostile.corpus import jpeg, photo
from tests.hostile.snapshots import snapshot

KEY = "test-key-5b0c1f"
MAX_TTL = 300


@pytest.fixture
def keyed(stack) -> Iterator[str]:
    """The session stack's gateway requires ``X-Api-Key: KEY`` for the duration of the test."""
    stack.gateway.api_key = KEY
    try:
        yield KEY
    finally:
        stack.gateway.api_key = None


@pytest.fixture
def added(stack, empty_catalog) -> dict:
    """One catalog image; {"id", "data"}."""
    data = jpeg(photo("coffee", 200, 150))
    reply = Client(stack.api_url, api_key=stack.gateway.api_key).post("/images", data, "image/jpeg")
    assert reply.status == 201, reply.body
    return {"id": reply.body["ids"][0], "data": data}


REQUESTS = [
    ("GET", "/images", None, None),
    ("GET", "/images/" + "0" * 64, None, None),
    ("DELETE", "/images/" + "0" * 64, None, None),
    ("POST", "/search", b"\xff\xd8\xff", "image/jpeg"),
    ("POST", "/images", b"\xff\xd8\xff", "image/jpeg"),
    ("POST", "/uploads", b'{"content_type": "image/png"}', "application/json"),
    ("GET", "/duplicates", None, None),
    ("POST", "/duplicates", None, None),
]


@pytest.mark.parametrize("method, path, body, ctype", REQUESTS, ids=lambda v: str(v)[:20])
@pytest.mark.parametrize("sent", [None, "", "wrong-key", KEY.upper(), KEY + "x", KEY[:-1]], ids=["none", "empty", "wrong", "upper", "longer", "shorter"])
def test_requests_without_the_right_key_are_forbidden(stack, keyed, method, path, body, ctype, sent) -> None:
    before = snapshot(stack.s3, stack.bucket)
    headers = {} if sent is None else {"X-Api-Key": sent}
    reply = Client(stack.api_url).request(method, path, body, ctype, headers=headers)
    assert reply.status == 403
    assert reply.body == {"message": "Forbidden"}
    assert snapshot(stack.s3, stack.bucket) == before


def test_the_page_and_health_need_no_key(stack, keyed) -> None:
    # As the template declares them: the web page must load before a key is typed in.
    for path in ("/", "/health"):
        assert Client(stack.api_url).get(path).status == 200, path


def test_the_right_key_is_let_through(stack, keyed, added) -> None:
    api = Client(stack.api_url, api_key=KEY)
    assert api.get("/health").status == 200
    assert api.get(f"/images/{added['id']}").status == 200
    search = api.post("/search?k=1", added["data"], "image/jpeg")
    assert search.status == 200 and search.body["results"][0]["id"] == added["id"]
    # Header names are case-insensitive.
    lower = Client(stack.api_url).request("GET", "/health", headers={"x-api-key": KEY})
    assert lower.status == 200


def test_cors_preflight_needs_no_key(stack, keyed) -> None:
    reply = Client(stack.api_url).request(
        "OPTIONS",
        "/search",
        headers={"Origin": "https://example.test", "Access-Control-Request-Method": "POST"},
    )
    assert reply.status in (200, 204)
    allowed = {k.lower(): v for k, v in reply.headers.items()}.get("access-control-allow-headers", "")
    assert "x-api-key" in allowed.lower()


def expires_in(url: str) -> float:
    """Seconds until a presigned URL expires (SigV4 X-Amz-Expires or SigV2 Expires)."""
    query = parse_qs(urlsplit(url).query)
    if "X-Amz-Expires" in query:
        return float(query["X-Amz-Expires"][0])
    if "Expires" in query:
        return float(query["Expires"][0]) - time.time()
    raise AssertionError(f"not a presigned URL: {url[:120]}")


def presigned_urls(value: object) -> list[str]:
    """Every presigned S3 URL anywhere in a JSON body."""
    if isinstance(value, dict):
        return [u for v in value.values() for u in presigned_urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in presigned_urls(v)]
    if isinstance(value, str) and ("X-Amz-Signature=" in value or "Signature=" in value):
        return [value]
    return []


def upload_expires_in(ticket: dict) -> float:
    """Seconds until an upload ticket expires: a POST policy's expiration, or a presigned PUT URL's."""
    if ticket["method"] == "PUT":
        return expires_in(ticket["url"])
    policy = json.loads(base64.b64decode(ticket["fields"]["policy"]))
    expiration = time.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    return calendar.timegm(expiration) - time.time()


def test_presigned_urls_live_at_most_five_minutes(stack, api, added) -> None:
    bodies = {
        "get": api.get(f"/images/{added['id']}").body,
        "list": api.get("/images").body,
        "search": api.post("/search?k=1", added["data"], "image/jpeg").body,
    }
    for name, body in bodies.items():
        urls = presigned_urls(body)
        assert urls, f"{name} carries no presigned URL"
        for url in urls:
            assert 0 < expires_in(url) <= MAX_TTL, (name, url)
    assert 0 < bodies["get"]["expires_in"] <= MAX_TTL
    upload = api.post("/uploads", {"content_type": "image/jpeg"}).body
    assert 0 < upload["expires_in"] <= MAX_TTL
    # The policy is what storage enforces; a second of slack for its whole-second rounding.
    assert 0 < upload_expires_in(upload) <= MAX_TTL + 1
    # The short-lived URL does give the original back.
    import urllib.request

    with urllib.request.urlopen(bodies["get"]["stored_url"], timeout=30) as resp:
        assert resp.read() == added["data"]
