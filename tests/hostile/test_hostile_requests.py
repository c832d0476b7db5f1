"""Hostile requests at the HTTP boundary: integer spellings, ids with a trailing newline,
RFC 2231 file names, metadata URLs with private URLs allowed, and one request's fetch budget.

Same rules as the image corpus (``test_hostile_input.py``): a refused request
changes nothing in the bucket and answers ``{"error", "message"}``; an add
writes exactly its images' objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import quote

import pytest

from pictrace.adapters.fetch import FetchBudget, addresses
from pictrace.catalog import layout, sources
from tests.conftest import Client, Reply
from tests.hostile import corpus as c
from tests.hostile import network
from tests.hostile.network import ORIGIN_ADDRESS, Origin, StubResolver, TrustOrigin
from tests.hostile.snapshots import changed_keys

PHOTO = c.photo("chelsea", 160, 120)
SHA = "ab" * 32
BOUNDARY = "hostile-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart_file(disposition: str, content: bytes) -> bytes:
    return (
        f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n".encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


# --- k, limit, ids, cursors and upload keys ---------------------------------------------

INTEGER_SPELLINGS = [
    ("fullwidth", "\uff15"),
    ("arabic-indic", "\u0663"),
    ("devanagari", "\u0967\u0966"),
    ("underscore", "1_0"),
    ("plus", "+5"),
    ("leading-space", " 5"),
    ("trailing-newline", "5\n"),
]


@pytest.mark.parametrize("name, raw", INTEGER_SPELLINGS, ids=[n for n, _ in INTEGER_SPELLINGS])
@pytest.mark.parametrize("path", ["/search?k=", "/images?limit="])
def test_integers_are_ascii_decimal_digits_only(path: str, name: str, raw: str, api: Client, bucket) -> None:
    method, body, ctype = ("POST", c.jpeg(PHOTO), "image/jpeg") if path.startswith("/search") else ("GET", None, None)
    refused(api, bucket, method, path + quote(raw), body, ctype, 400, "bad_request")


def test_a_cursor_with_a_trailing_newline_is_refused(api: Client, bucket) -> None:
    refused(api, bucket, "GET", f"/images?cursor={SHA}%0A", None, None, 400, "bad_request")


def test_an_upload_key_with_a_trailing_newline_is_refused(api: Client, bucket) -> None:
    key = layout.new_upload_key() + "\n"
    for path in ("/images", "/search"):
        refused(api, bucket, "POST", path, {"s3_key": key}, None, 400, "bad_request")


def test_a_query_id_with_a_trailing_newline_is_refused(api: Client, bucket) -> None:
    refused(api, bucket, "GET", f"/images/{SHA}/matches?query={SHA}%0A", None, None, 400, "bad_request")


def test_an_id_with_a_trailing_newline_deletes_nothing(api: Client, stack, bucket) -> None:
    added = api.post("/images", c.png(c.photo("rocket", 90, 70)), "image/png")
    assert added.status == 201, added.body
    image_id = added.body["ids"][0]
    try:
        for method in ("GET", "DELETE"):
            refused(api, bucket, method, f"/images/{image_id}%0A", None, None, 404, "not_found")
        assert api.get(f"/images/{image_id}").status == 200
    finally:
        stack.services.catalog.delete(image_id)


# --- multipart file names -----------------------------------------------------------------

NAMES = [
    ("utf8", c.rfc2231_disposition("€ rates.png"), "€ rates.png"),
    ("latin1", c.rfc2231_disposition("café.png", charset="iso-8859-1"), "café.png"),
    ("over-ascii-fallback", c.rfc2231_disposition("Kätzchen.png", fallback="Katzchen.png"), "Kätzchen.png"),
    ("traversal", c.rfc2231_disposition("../../index/manifest.json"), "manifest.json"),
    ("windows-path", 'form-data; name="file"; filename="C:\\\\Users\\\\me\\\\cat.png"', "cat.png"),
    ("bidi-override", c.rfc2231_disposition("a\u202egnp.exe\n"), "agnp.exe"),
]


@pytest.mark.parametrize("disposition, name", [(d, n) for _, d, n in NAMES], ids=[i for i, _, _ in NAMES])
def test_multipart_file_names_are_decoded_and_sanitised(disposition: str, name: str, api: Client, stack) -> None:
    reply = api.post("/images", multipart_file(disposition, c.png(c.photo("coffee", 80, 60))), MULTIPART)
    assert reply.status == 201, reply.body
    try:
        assert reply.body["images"][0]["name"] == name
        assert api.get(f"/images/{reply.body['ids'][0]}").body["name"] == name
    finally:
        stack.services.catalog.delete(reply.body["ids"][0])


# --- metadata URLs with private URLs allowed ------------------------------------------------


class PrivateURLsAllowed(TrustOrigin):
    """What ``--allow-private-urls`` gives, plus the test origin."""

    def check_address(self, ip: IPv4Address | IPv6Address) -> None:
        if ip != IPv4Address(ORIGIN_ADDRESS):
            addresses.check_address(ip, allow_private=True)


METADATA_NAMES = {
    "imds6.example.test": ["fd00:ec2::254"],
    "ecs-credentials.example.test": ["169.254.170.2"],
    "mapped-imds.example.test": ["::ffff:169.254.169.254"],
}


@pytest.fixture
def private_allowed(monkeypatch: pytest.MonkeyPatch) -> StubResolver:
    resolver = StubResolver({**network.DNS, **METADATA_NAMES})
    monkeypatch.setattr(sources, "RESOLVE", resolver)
    monkeypatch.setattr(sources, "POLICY", PrivateURLsAllowed)
    return resolver


def metadata_targets(origin: Origin) -> list[str]:
    names = [f"http://{name}/latest/meta-data/" for name in METADATA_NAMES]
    redirects = [origin.url("/redirect?to=" + quote(url, safe="")) for url in ("http://[fd00:ec2::254]/", "http://[::ffff:a9fe:aa02]/")]
    return [*c.METADATA_URLS, *names, *redirects]


def test_metadata_urls_are_refused_with_private_urls_allowed(api: Client, bucket, origin: Origin, private_allowed, network_guard) -> None:
    for url in metadata_targets(origin):
        for path in ("/search", "/images"):
            reply = refused(api, bucket, "POST", path, {"url": url}, None, 400, "blocked_url")
            assert reply.body.get("reason") == "metadata" or "metadata" in reply.body["message"], (url, reply.body)
    assert network_guard.forbidden == []


def test_a_list_of_metadata_urls_adds_nothing(api: Client, bucket, origin: Origin, private_allowed) -> None:
    reply = refused(api, bucket, "POST", "/images", {"urls": metadata_targets(origin)}, None, 400, "bad_request")
    assert {f["error"] for f in reply.body["failed"]} == {"blocked_url"}


# --- one request's fetch budget ---------------------------------------------------------------

GALLERY = c.distinct_pngs(6)


@pytest.fixture
def gallery(monkeypatch: pytest.MonkeyPatch, stub_dns) -> Iterator[None]:
    """/gallery shows /g0.png../g5.png (six different images) and /logo.png twice."""
    for i, data in enumerate(GALLERY):
        monkeypatch.setitem(network.PAGES, f"/g{i}.png", (200, "image/png", data))
    page = c.gallery_page([f"/g{i}.png" for i in range(len(GALLERY))], extra='<img src="/g0.png">')
    monkeypatch.setitem(network.PAGES, "/gallery", (200, "text/html", page))
    yield


def with_budget(monkeypatch: pytest.MonkeyPatch, **limits: float) -> None:
    values = {"max_bytes": 64 * c.MB, "max_images": 100, "seconds": 15.0, **limits}
    monkeypatch.setattr(sources, "request_budget", lambda config: FetchBudget(**values))


def test_identical_images_from_several_urls_are_added_once(api: Client, stack, bucket, origin: Origin, stub_dns) -> None:
    # Every other *.png of the origin is the same image.
    urls = [origin.url("/a.png"), origin.url("/b.png"), origin.url("/c.png")]
    reply = added(api, stack, bucket, {"urls": urls})
    assert len(reply.body["ids"]) == 1
    assert [(s["url"], s["reason"], s["same_as"]) for s in reply.body["skipped"]] == [
        (urls[1], "duplicate", urls[0]),
        (urls[2], "duplicate", urls[0]),
    ]


def test_a_page_past_the_image_budget_is_truncated_and_says_so(
    api: Client, stack, bucket, origin: Origin, gallery, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_budget(monkeypatch, max_images=4)
    origin.hits.clear()
    reply = added(api, stack, bucket, {"url": origin.url("/gallery")})
    assert len(reply.body["ids"]) == 4
    assert [(s["url"], s["reason"]) for s in reply.body["skipped"]] == [
        (origin.url(f"/g{i}.png"), "request_images") for i in (4, 5)
    ]
    # The repeated image was fetched once; the skipped ones never.
    assert sorted(origin.hits) == ["/g0.png", "/g1.png", "/g2.png", "/g3.png", "/gallery"]


def test_images_past_the_byte_budget_are_skipped(api: Client, stack, bucket, origin: Origin, gallery, monkeypatch) -> None:
    largest = max(len(data) for data in GALLERY[:3])
    with_budget(monkeypatch, max_bytes=2 * largest + largest // 2)
    reply = added(api, stack, bucket, {"urls": [origin.url(f"/g{i}.png") for i in range(3)]})
    assert len(reply.body["ids"]) == 2
    assert [s["reason"] for s in reply.body["skipped"]] == ["request_bytes"]


def test_nothing_fetched_in_time_is_refused_and_nothing_is_fetched(api: Client, bucket, origin: Origin, gallery, monkeypatch) -> None:
    with_budget(monkeypatch, seconds=0)
    origin.hits.clear()
    urls = [origin.url("/g1.png"), origin.url("/g2.png")]
    reply = refused(api, bucket, "POST", "/images", {"urls": urls}, None, 413, "request_budget_exceeded")
    assert [s["reason"] for s in reply.body["skipped"]] == ["request_time", "request_time"]
    # One URL out of time is a slow upstream, as a timeout is, on either route.
    for path in ("/search", "/images"):
        refused(api, bucket, "POST", path, {"url": urls[0]}, None, 502, "fetch_failed")
    assert origin.hits == []


# --- helpers ----------------------------------------------------------------------------------


def refused(api: Client, bucket, method: str, path: str, body, ctype, status: int, code: str) -> Reply:
    before = bucket()
    reply = api.request(method, path, body, ctype)
    assert reply.status == status, (path, body if not isinstance(body, bytes) else "...", reply.body)
    assert reply.body.get("error") == code and reply.body.get("message"), reply.body
    assert changed_keys(before, bucket()) == set(), "a refused request changed the bucket"
    return reply


def added(api: Client, stack, bucket, body: dict) -> Reply:
    """POST /images that must create images and write only theirs; they are deleted afterwards."""
    before = bucket()
    reply = api.post("/images", body)
    assert reply.status == 201, reply.body
    try:
        expected = set()
        for record in reply.body["images"]:
            sha = record["id"]
            expected |= {
                record["key"], layout.by_key_key(record["key"]), layout.features_key(sha), layout.thumb_key(sha),
                layout.record_key(sha), layout.pending_key(sha),
            }
            if layout.tombstone_key(sha) in before:
                expected.add(layout.tombstone_key(sha))
        assert changed_keys(before, bucket()) == expected
    except BaseException:
        for image_id in reply.body["ids"]:
            stack.services.catalog.delete(image_id)
        raise
    _cleanup.append((stack, reply.body["ids"]))
    return reply


_cleanup: list[tuple[object, list[str]]] = []


@pytest.fixture(autouse=True)
def _delete_added() -> Iterator[None]:
    yield
    while _cleanup:
        stack, ids = _cleanup.pop()
        for image_id in ids:
            stack.services.catalog.delete(image_id)
