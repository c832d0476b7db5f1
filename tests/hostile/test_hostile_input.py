"""A corpus of hostile, broken and unusual requests against the local HTTP API.

Each case names its request and the status and error code it must get.  For
every case the bucket is snapshotted (keys and ETags) before and after:

* a refused request (any 4xx/5xx) changes nothing at all, not even queries/;
* a successful ``POST /images`` writes exactly the new image's objects;
* a successful ``POST /search`` writes only under ``queries/`` (the query
  and its features, kept so ``/images/{id}/matches`` can draw matches).

Decisions this corpus pins down (see docs/limits.md):

* What a body *is* comes from its magic bytes, not its Content-Type: a JPEG
  sent as image/png is a JPEG; an HTML file sent as image/png is refused (415).
* Polyglots are judged by their leading format.  A GIF that also parses as
  HTML is a GIF (accepted; stored and served as image/gif, decoded only as an
  image).  A JPEG with a ZIP archive appended is a JPEG: decoding stops at the
  end of the image, and the stored original keeps every byte that was sent.
* A JPEG whose entropy-coded data is damaged but still decodes (libjpeg
  recovers, as browsers do) is accepted; one cut short or with a broken frame
  header is refused as corrupt_image.
* The pixel cap is checked from the header: a 50000x50000 PNG header is
  refused as image_too_large before any pixel is decoded.
* URL fetching refuses every address that is not public, in every spelling,
  on the first hop and on redirects (400 blocked_url).  When the remote
  answers with an error or cannot be reached, that is the upstream's failure,
  502 fetch_failed -- the only 5xx any case here expects.
* ``POST /images`` with one URL answers that URL's failure, as ``POST
  /search`` does; with several it lists per-URL failures in ``failed``, and
  when none could be added the request is 400 bad_request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import pytest

from pictrace.catalog import layout
from tests.conftest import Client, Reply
from tests.hostile import corpus as c
from tests.hostile.network import ORIGIN_HOST, UNICODE_HOST, Origin, StubResolver
from tests.hostile.snapshots import changed_keys

MB = c.MB
PHOTO = c.photo("chelsea", 160, 120)
SECOND = c.photo("astronaut", 160, 120)


@dataclass
class Ctx:
    """What a case's body may refer to: the origin server and the stack's S3 endpoint."""

    origin: Origin
    s3_url: str
    stack: object
    api: Client


Body = Callable[[Ctx], "bytes | dict | list | None"]


@dataclass(frozen=True)
class Case:
    id: str
    path: str
    body: Body | None
    ctype: str | None
    status: int
    code: str | None = None  # the "error" field; None for successes and gateway answers
    method: str = "POST"
    failed_code: str | None = None  # POST /images with URLs: the error listed in "failed"
    no_decode: bool = False  # refused from the header alone: no pixel may be decoded
    check: Callable[[Ctx, Reply], None] | None = None


def const(value) -> Body:
    return lambda ctx: value


def both(
    id: str,
    body: Body,
    ctype: str | None,
    status: int | None = None,
    code: str | None = None,
    **kw,
) -> list[Case]:
    """The same request to POST /images and POST /search; ``status=None`` means success (201/200)."""
    images_check = kw.pop("check", None)
    return [
        Case(f"images-{id}", "/images", body, ctype, status or 201, code, check=images_check, **kw),
        Case(f"search-{id}", "/search", body, ctype, status or 200, code, **kw),
    ]


def url_case(id: str, url: Callable[[Ctx], str], status: int, code: str | None) -> list[Case]:
    """A JSON {"url": ...} body for both endpoints; one URL's failure is the request's answer."""
    return both(id, lambda ctx: {"url": url(ctx)}, None, status if status >= 300 else None, code)


def multipart(fields: dict[str, tuple[str, bytes]], boundary: str = "hostile-boundary") -> bytes:
    """A multipart/form-data body; ``fields`` maps a name to (filename or "", content)."""
    out = b""
    for name, (filename, content) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


MULTIPART = "multipart/form-data; boundary=hostile-boundary"


# --- checks on accepted images --------------------------------------------------------


def added_record(ctx: Ctx, reply: Reply) -> dict:
    assert len(reply.body["images"]) == 1 and reply.body["images"][0]["created"]
    return reply.body["images"][0]


def displayed_size(width: int, height: int) -> Callable[[Ctx, Reply], None]:
    def check(ctx: Ctx, reply: Reply) -> None:
        record = added_record(ctx, reply)
        assert (record["width"], record["height"]) == (width, height)

    return check


def found_upright(query: np.ndarray, ssim_above: float = 0.8) -> Callable[[Ctx, Reply], None]:
    """The added image is what ``query`` shows: its best match, with no transform."""

    def check(ctx: Ctx, reply: Reply) -> None:
        record = added_record(ctx, reply)
        hits = ctx.api.post("/search?k=5", c.png(query), "image/png")
        assert hits.status == 200, hits.body
        results = hits.body["results"]
        # Other cases add the same photograph in other formats (a GIF's first
        # frame is a palette-reduced copy of a photo the PNG cases store
        # exactly), so the added image must be found, not necessarily first.
        mine = next(r for r in results if r["id"] == record["id"])
        assert mine["transform"] == "identity"
        assert mine["scores"]["ssim"] > ssim_above

    return check


def oriented(orientation: int) -> Callable[[Ctx, Reply], None]:
    def check(ctx: Ctx, reply: Reply) -> None:
        displayed_size(160, 120)(ctx, reply)
        found_upright(PHOTO)(ctx, reply)

    return check


def stored_as(content_type: str, fmt: str, whole: Callable[[], bytes]) -> Callable[[Ctx, Reply], None]:
    """Stored under its leading format's type, with every byte that was sent."""

    def check(ctx: Ctx, reply: Reply) -> None:
        record = added_record(ctx, reply)
        assert record["format"] == fmt
        head = ctx.stack.s3.head_object(Bucket=ctx.stack.bucket, Key=record["key"])
        assert head["ContentType"] == content_type
        sent = whole()
        assert record["bytes"] == head["ContentLength"] == len(sent)

    return check


def fetched_from(path_suffix: str) -> Callable[[Ctx, Reply], None]:
    def check(ctx: Ctx, reply: Reply) -> None:
        record = added_record(ctx, reply)
        assert record["image_url"].endswith(path_suffix)
        assert ctx.origin.hits[-1].endswith(path_suffix)

    return check


# --- the corpus ---------------------------------------------------------------------------

JPEG = lambda: c.jpeg(PHOTO)  # noqa: E731
PNG = lambda: c.png(PHOTO)  # noqa: E731
WEBP = lambda: c.webp(PHOTO)  # noqa: E731
GIF = lambda: c.encode(PHOTO, ".gif")  # noqa: E731
POLYGLOT = lambda: c.gif_html_polyglot(PHOTO)  # noqa: E731
JPEG_ZIP = lambda: c.with_zip_appended(JPEG())  # noqa: E731


def lazy(build: Callable[[], bytes]) -> Body:
    return lambda ctx: build()


IMAGE_CASES: list[Case] = [
    *both("empty-body", const(b""), "image/jpeg", 400, "bad_request"),
    *both("random-bytes", lazy(c.random_bytes), "image/jpeg", 422, "invalid_image"),
    *both("random-octet-stream", lazy(c.random_bytes), "application/octet-stream", 422, "invalid_image"),
    *both("jpeg-truncated", lazy(lambda: c.cut(JPEG(), 0.6)), "image/jpeg", 422, "corrupt_image"),
    *both("jpeg-headers-only", lazy(lambda: c.cut(JPEG(), 0.1)), "image/jpeg", 422, "corrupt_image"),
    *both("jpeg-two-bytes", const(b"\xff\xd8"), "image/jpeg", 422, "corrupt_image"),
    *both("jpeg-no-components", lazy(lambda: c.jpeg_scan_damaged(JPEG())), "image/jpeg", 422, "corrupt_image"),
    *both("jpeg-damaged-scan-recovers", lazy(lambda: c.flip_bytes(JPEG(), 700, 200)), "image/jpeg"),
    *both("png-truncated", lazy(lambda: c.cut(PNG(), 0.6)), "image/png", 422, "corrupt_image"),
    *both("png-bad-idat-crc", lazy(lambda: c.png_bad_crc(PNG())), "image/png", 422, "corrupt_image"),
    *both("png-bad-ihdr-crc", lazy(lambda: c.png_bad_crc(PNG(), b"IHDR")), "image/png", 422, "corrupt_image"),
    *both("png-damaged-data", lazy(lambda: c.flip_bytes(PNG(), 100, 50)), "image/png", 422, "corrupt_image"),
    *both("webp-truncated", lazy(lambda: c.cut(WEBP(), 0.6)), "image/webp", 422, "corrupt_image"),
    *both("webp-damaged", lazy(lambda: c.flip_bytes(WEBP(), 40, 100)), "image/webp", 422, "corrupt_image"),
    *both("gif-truncated", lazy(lambda: c.cut(GIF(), 0.5)), "image/gif", 422, "corrupt_image"),
    *both("png-header-50000x50000", lazy(lambda: c.png_header_only(50000, 50000)), "image/png", 413, "image_too_large", no_decode=True),
    *both("jpeg-header-60000x60000", lazy(lambda: c.jpeg_header_only(60000, 60000)), "image/jpeg", 413, "image_too_large", no_decode=True),
    *both("gif-header-65535x65535", lazy(lambda: c.gif_header_only(65535, 65535)), "image/gif", 413, "image_too_large", no_decode=True),
    *both("webp-header-16383x16383", lazy(lambda: c.webp_header_only(16383, 16383)), "image/webp", 413, "image_too_large", no_decode=True),
    *both("bmp-header-100000x100000", lazy(lambda: c.bmp_header_only(100000, 100000)), "image/bmp", 413, "image_too_large", no_decode=True),
    *both("png-1x1", lazy(lambda: c.png(c.photo("coffee", 1, 1))), "image/png", check=displayed_size(1, 1)),
    *both("png-20000x20", lazy(lambda: c.png(c.photo("coffee", 20000, 20))), "image/png", check=displayed_size(20000, 20)),
    *both("jpeg-20x20000", lazy(lambda: c.jpeg(c.photo("rocket", 20, 20000))), "image/jpeg", check=displayed_size(20, 20000)),
    *both("gif-animated-first-frame", lazy(lambda: c.animated_gif(PHOTO, SECOND)), "image/gif", check=found_upright(PHOTO)),
    *both("jpeg-cmyk", lazy(lambda: c.cmyk_jpeg(PHOTO)), "image/jpeg", check=found_upright(PHOTO)),
    *both("png-16-bit", lazy(lambda: c.png(PHOTO.astype(np.uint16) * 257)), "image/png", check=found_upright(PHOTO, 0.95)),
    *both("png-alpha", lazy(lambda: c.png(cv2.cvtColor(PHOTO, cv2.COLOR_BGR2BGRA))), "image/png", check=found_upright(PHOTO, 0.95)),
    *[
        case
        for o in range(1, 9)
        for case in both(
            f"jpeg-exif-orientation-{o}",
            lazy(lambda o=o: c.jpeg_with_exif(c.jpeg(c.stored_for_orientation(PHOTO, o)), o)),
            "image/jpeg",
            check=oriented(o),
        )
    ],
    *both("png-exif-orientation-6", lazy(lambda: c.png_with_exif(c.stored_for_orientation(PHOTO, 6), 6)), "image/png", check=oriented(6)),
    *both("gif-html-polyglot", lazy(POLYGLOT), "image/gif", check=stored_as("image/gif", "gif", POLYGLOT)),
    *both("jpeg-with-zip-appended", lazy(JPEG_ZIP), "image/jpeg", check=stored_as("image/jpeg", "jpeg", JPEG_ZIP)),
    *both("jpeg-labelled-png", lazy(JPEG), "image/png", check=stored_as("image/jpeg", "jpeg", JPEG)),
    *both("jpeg-as-octet-stream", lazy(lambda: c.jpeg(PHOTO, 70)), "application/octet-stream"),
    *both("zip-archive", lazy(c.zip_archive), "image/jpeg", 415, "unsupported_format"),
    *both("svg", const(c.SVG), "image/svg+xml", 415, "unsupported_format"),
    *both("html-labelled-png", const(c.HTML), "image/png", 415, "unsupported_format"),
    *both("pdf-labelled-jpeg", const(c.PDF), "image/jpeg", 415, "unsupported_format"),
    *both("content-type-text-plain", lazy(JPEG), "text/plain", 415, "unsupported_format"),
    *both("content-type-xml", const(b"<?xml version='1.0'?><a/>"), "application/xml", 415, "unsupported_format"),
    *both("content-type-form-urlencoded", const(b"url=http%3A%2F%2F10.0.0.1%2F"), "application/x-www-form-urlencoded", 415, "unsupported_format"),
    *both("raw-image-over-6mb", lazy(lambda: JPEG()[:2] + c.random_bytes(6 * MB)), "image/jpeg", 413, "payload_too_large"),
    *both(
        "multipart-over-6mb",
        lazy(lambda: multipart({"file": ("big.jpg", JPEG() + c.random_bytes(6 * MB + 1024))})),
        MULTIPART,
        413,
        "payload_too_large",
    ),
    *both("json-over-6mb", lazy(lambda: json.dumps({"url": "http://x/" + "a" * (6 * MB)}).encode()), "application/json", 413, "payload_too_large"),
    # API Gateway itself refuses bodies over 10 MB, with its own message and no error code.
    *both("body-over-10mb", lazy(lambda: c.random_bytes(11 * MB)), "image/jpeg", 413),
    *both("json-malformed", const(b'{"url": "http://images.example.test/a.png"'), "application/json", 400, "bad_request"),
    *both("json-array", const(b'["http://images.example.test/a.png"]'), "application/json", 400, "bad_request"),
    *both("json-string", const(b'"http://images.example.test/a.png"'), "application/json", 400, "bad_request"),
    *both("json-null", const(b"null"), "application/json", 400, "bad_request"),
    *both("json-deeply-nested", const(b'{"url": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "application/json", 400, "bad_request"),
    # Text bodies reach the function as text: invalid UTF-8 becomes U+FFFD, which is no URL.
    *both("json-invalid-utf8-url", const(b'{"url": "\xff\xfe"}'), "application/json", 400, "blocked_url"),
    *both("json-empty-object", const({}), None, 400, "bad_request"),
    *both("json-url-not-string", const({"url": 5}), None, 400, "bad_request"),
    *both("json-url-empty", const({"url": ""}), None, 400, "bad_request"),
    *both("json-s3-key-traversal", const({"s3_key": "uploads/../index/manifest.json"}), None, 400, "bad_request"),
    *both("json-s3-key-not-string", const({"s3_key": ["uploads/x"]}), None, 400, "bad_request"),
    *both("json-s3-key-never-uploaded", const({"s3_key": "uploads/" + "0" * 32}), None, 404, "not_found"),
    *both("multipart-without-file", const(multipart({"note": ("", b"hello")})), MULTIPART, 400, "bad_request"),
    *both("multipart-without-boundary", lazy(lambda: multipart({"file": ("a.jpg", JPEG())})), "multipart/form-data", 400, "bad_request"),
    *both("multipart-without-parts", const(b"--hostile-boundary--\r\n"), MULTIPART, 400, "bad_request"),
    *both("multipart-part-without-headers", const(b"--hostile-boundary\r\nno blank line--hostile-boundary--\r\n"), MULTIPART, 400, "bad_request"),
    *both("multipart-random-file", lazy(lambda: multipart({"file": ("a.jpg", c.random_bytes())})), MULTIPART, 422, "invalid_image"),
    *both("multipart-corrupt-file", lazy(lambda: multipart({"file": ("a.png", c.cut(PNG(), 0.5))})), MULTIPART, 422, "corrupt_image"),
    *both(
        "multipart-good-file",
        lazy(lambda: multipart({"file": ("kitten.webp", WEBP())})),
        MULTIPART,
        check=lambda ctx, reply: added_record(ctx, reply)["name"] == "kitten.webp" or pytest.fail("name lost"),
    ),
]

PARAMETER_CASES: list[Case] = [
    *[
        Case(f"search-k-{name}", f"/search?k={raw}", lazy(JPEG), "image/jpeg", 400, "bad_request")
        for name, raw in [("0", "0"), ("minus-1", "-1"), ("51", "51"), ("abc", "abc"), ("1e9", "1e9"), ("huge", "9" * 40), ("nul", "%00")]
    ],
    Case("search-ranking-unknown", "/search?ranking=best", lazy(JPEG), "image/jpeg", 400, "bad_request"),
    Case("images-urls-empty", "/images", const({"urls": []}), None, 400, "bad_request"),
    Case("images-urls-not-list", "/images", const({"urls": "http://images.example.test/a.png"}), None, 400, "bad_request"),
    Case("images-urls-not-strings", "/images", const({"urls": [1, 2]}), None, 400, "bad_request"),
    Case("images-urls-101", "/images", const({"urls": [f"http://images.example.test/{i}.png" for i in range(101)]}), None, 400, "bad_request"),
    Case("list-limit-0", "/images?limit=0", None, None, 400, "bad_request", method="GET"),
    Case("list-limit-abc", "/images?limit=abc", None, None, 400, "bad_request", method="GET"),
    Case("list-limit-1001", "/images?limit=1001", None, None, 400, "bad_request", method="GET"),
    Case("list-cursor-garbage", "/images?cursor=../../etc", None, None, 400, "bad_request", method="GET"),
    Case("get-id-not-hex", "/images/not-an-id", None, None, 404, "not_found", method="GET"),
    Case("get-id-traversal", "/images/..%2F..%2Findex%2Fmanifest.json", None, None, 404, "not_found", method="GET"),
    Case("get-id-absent", "/images/" + "0" * 64, None, None, 404, "not_found", method="GET"),
    Case("delete-id-not-hex", "/images/not-an-id", None, None, 404, "not_found", method="DELETE"),
    Case("delete-id-absent", "/images/" + "0" * 64, None, None, 404, "not_found", method="DELETE"),
    Case("matches-query-garbage", "/images/" + "0" * 64 + "/matches?query=xyz", None, None, 400, "bad_request", method="GET"),
    Case("uploads-content-type-html", "/uploads", const({"content_type": "text/html"}), None, 400, "bad_request"),
    Case("uploads-content-type-number", "/uploads", const({"content_type": 5}), None, 400, "bad_request"),
    Case("uploads-json-array", "/uploads", const(b"[]"), "application/json", 400, "bad_request"),
    Case("unknown-route", "/admin", None, None, 404, "not_found", method="GET"),
    Case("unknown-method", "/search", lazy(JPEG), "image/jpeg", 404, "not_found", method="PUT"),
]


def origin_url(path: str, host: str = ORIGIN_HOST) -> Callable[[Ctx], str]:
    return lambda ctx: ctx.origin.url(path, host)


def redirect_to(target: Callable[[Ctx], str]) -> Callable[[Ctx], str]:
    from urllib.parse import quote

    return lambda ctx: ctx.origin.url("/redirect?to=" + quote(target(ctx), safe=""))


def literal(url: str) -> Callable[[Ctx], str]:
    return lambda ctx: url


URL_CASES: list[Case] = [
    *url_case("url-decimal-ip", literal("http://2130706433/"), 400, "blocked_url"),
    *url_case("url-octal-ip", literal("http://0177.0.0.1/"), 400, "blocked_url"),
    *url_case("url-hex-ip", literal("http://0x7f.0.0.1/"), 400, "blocked_url"),
    *url_case("url-short-ip", literal("http://127.1/"), 400, "blocked_url"),
    *url_case("url-zero-ip", literal("http://0.0.0.0/"), 400, "blocked_url"),
    *url_case("url-localhost", lambda ctx: f"http://localhost:{urlsplit(ctx.s3_url).port}/", 400, "blocked_url"),
    *url_case("url-localhost-subdomain", literal("http://api.localhost./"), 400, "blocked_url"),
    *url_case("url-ipv6-loopback", literal("http://[::1]/"), 400, "blocked_url"),
    *url_case("url-ipv4-mapped-ipv6", literal("http://[::ffff:127.0.0.1]/"), 400, "blocked_url"),
    *url_case("url-metadata", literal("http://169.254.169.254/latest/meta-data/"), 400, "blocked_url"),
    *url_case("url-private-10", literal("http://10.0.0.1/"), 400, "blocked_url"),
    *url_case("url-name-to-private", literal("http://internal.example.test/a.png"), 400, "blocked_url"),
    *url_case("url-name-to-metadata", literal("http://metadata.example.test/latest/meta-data/"), 400, "blocked_url"),
    *url_case("url-name-to-private-v4-and-v6", literal("http://mixed.example.test/a.png"), 400, "blocked_url"),
    *url_case("url-name-to-loopback-s3", lambda ctx: f"http://loopback.example.test:{urlsplit(ctx.s3_url).port}/", 400, "blocked_url"),
    *url_case("url-redirect-to-metadata", redirect_to(literal("http://169.254.169.254/latest/meta-data/")), 400, "blocked_url"),
    *url_case("url-redirect-to-local-s3", redirect_to(lambda ctx: ctx.s3_url + "/pictrace-local/index/manifest.json"), 400, "blocked_url"),
    *url_case("url-redirect-to-private-name", redirect_to(literal("http://internal.example.test/a.png")), 400, "blocked_url"),
    *url_case("url-redirect-to-file", redirect_to(literal("file:///etc/passwd")), 400, "blocked_url"),
    *url_case("url-redirect-to-gopher", redirect_to(literal("gopher://127.0.0.1:6379/_INFO")), 400, "blocked_url"),
    *url_case("url-file", literal("file:///etc/passwd"), 400, "blocked_url"),
    *url_case("url-gopher", literal("gopher://127.0.0.1:70/_GET%20/"), 400, "blocked_url"),
    *url_case("url-ftp", literal("ftp://images.example.test/a.png"), 400, "blocked_url"),
    *url_case("url-javascript", literal("javascript:alert(1)"), 400, "blocked_url"),
    *url_case("url-credentials", lambda ctx: f"http://user:pw@{ORIGIN_HOST}:{ctx.origin.port}/a.png", 400, "blocked_url"),
    *url_case("url-not-a-url", literal("not a url"), 400, "blocked_url"),
    *url_case("url-invalid-unicode-host", literal("http://☃.example.test/a.png"), 400, "blocked_url"),
    *url_case("url-unclosed-ipv6", literal("http://[::1/"), 400, "bad_request"),
    *url_case("url-longer-than-2048", lambda ctx: ctx.origin.url("/" + "a" * 2100 + ".png"), 400, "bad_request"),
    *url_case("url-text", origin_url("/notes.txt"), 415, "unsupported_format"),
    *url_case("url-svg", origin_url("/drawing.svg"), 415, "unsupported_format"),
    *url_case("url-page-without-images", origin_url("/empty-page"), 422, "invalid_image"),
    *url_case("url-page-over-2mb", origin_url("/huge-page"), 413, "payload_too_large"),
    *url_case("url-corrupt-image", origin_url("/corrupt.png"), 422, "corrupt_image"),
    *url_case("url-remote-404", origin_url("/gone"), 502, "fetch_failed"),
    *url_case("url-connection-refused", lambda ctx: f"http://{ORIGIN_HOST}:1/a.png", 502, "fetch_failed"),
    *both(
        "url-unicode",
        lambda ctx: {"url": ctx.origin.url("/фото/bild.png", UNICODE_HOST)},
        None,
        check=fetched_from("/bild.png"),
    ),
    Case(
        "images-urls-one-good-one-blocked",
        "/images",
        lambda ctx: {"urls": [ctx.origin.url("/mixed.png"), "http://169.254.169.254/latest/meta-data/"]},
        None,
        201,
        check=lambda ctx, reply: reply.body["failed"][0]["error"] == "blocked_url" or pytest.fail(str(reply.body)),
    ),
    Case(
        "images-urls-all-blocked",
        "/images",
        const({"urls": ["http://10.0.0.1/a.png", "http://[::1]/a.png", "http://2130706433/a.png"]}),
        None,
        400,
        "bad_request",
        failed_code="blocked_url",
    ),
]

CASES = IMAGE_CASES + PARAMETER_CASES + URL_CASES


def test_the_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.fixture
def ctx(stack, api, origin, stub_dns) -> Ctx:
    return Ctx(origin=origin, s3_url=stack.s3_url, stack=stack, api=api)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_request(case: Case, ctx: Ctx, api: Client, bucket, decodes) -> None:
    body = case.body(ctx) if case.body is not None else None
    before = bucket()
    reply = api.request(case.method, case.path, body, case.ctype)
    after = bucket()

    assert reply.status == case.status, reply.body
    changes = changed_keys(before, after)
    if reply.status >= 400:
        assert changes == set(), "a refused request changed the bucket"
        assert reply.body.get("error") == case.code, reply.body
        assert reply.body.get("message"), reply.body
    if case.failed_code is not None:
        assert reply.body["failed"], reply.body
        assert {f["error"] for f in reply.body["failed"]} == {case.failed_code}, reply.body
    if case.no_decode:
        assert decodes == [], "an image over the pixel cap was decoded"
    if reply.status < 300 and case.path.startswith("/search"):
        assert all(k.startswith(layout.QUERIES) for k in changes), changes
        assert set(after) >= set(before), "a search removed objects"
    if reply.status < 300 and case.path.startswith("/images"):
        try:
            assert changes == expected_writes(reply.body, before), changes
            if case.check is not None:
                case.check(ctx, reply)
        finally:
            for image_id in reply.body["ids"]:
                ctx.stack.services.catalog.delete(image_id)


def expected_writes(body: dict, before: dict[str, str]) -> set[str]:
    """The objects an add of new images writes (and the tombstones it lifts)."""
    keys: set[str] = set()
    for record in body["images"]:
        sha = record["id"]
        keys |= {
            record["key"],
            layout.by_key_key(record["key"]),
            layout.features_key(sha),
            layout.thumb_key(sha),
            layout.record_key(sha),
            layout.pending_key(sha),
        }
        if layout.tombstone_key(sha) in before:
            keys.add(layout.tombstone_key(sha))
    return keys


def test_an_identical_add_is_answered_200_and_writes_nothing(api: Client, stack, bucket) -> None:
    data = c.jpeg(c.photo("rocket", 150, 100))
    first = api.post("/images", data, "image/jpeg")
    assert first.status == 201 and first.body["images"][0]["created"]
    try:
        before = bucket()
        again = api.post("/images", data, "image/jpeg")
        assert again.status == 200, again.body
        assert again.body["ids"] == first.body["ids"] and not again.body["images"][0]["created"]
        assert bucket() == before
    finally:
        stack.services.catalog.delete(first.body["ids"][0])


def test_redirects_are_checked_hop_by_hop(api: Client, origin: Origin, stub_dns) -> None:
    """The origin saw the redirect request and nothing else: the refused hop was never fetched."""
    origin.hits.clear()
    target = "http://internal.example.test/secret.png"
    reply = api.post("/search", {"url": origin.url("/redirect?to=" + target)})
    assert reply.status == 400 and reply.body["error"] == "blocked_url", reply.body
    assert [urlsplit(h).path for h in origin.hits] == ["/redirect"]
    assert parse_qs(urlsplit(origin.hits[0]).query)["to"] == [target]
    assert "internal.example.test" in stub_dns.calls


def test_production_policy_refuses_the_trusted_test_origin(api: Client, origin: Origin, monkeypatch) -> None:
    """Without the test-only policy the origin's loopback address is refused like any other."""
    from pictrace.catalog import sources

    monkeypatch.setattr(sources, "RESOLVE", StubResolver())
    origin.hits.clear()
    reply = api.post("/search", {"url": origin.url("/photo.png")})
    assert reply.status == 400 and reply.body["error"] == "blocked_url", reply.body
    assert origin.hits == []
