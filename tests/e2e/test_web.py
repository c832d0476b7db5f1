"""The web page in a real browser (Chromium driven by Playwright) against the local stack.

Every request the browser makes is checked: anything not addressed to
loopback is aborted before it leaves, and recorded so that the test fails.
Screenshots land in tests/e2e/artifacts/.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from pictrace.local.lambda_endpoint import InvokeError
from tests.conftest import Client, jpeg, sample_bgr
from tests.unit.test_looks_like import CAT

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WAIT_MS = 60_000
SEEDS = ("chelsea", "coffee", "astronaut", "camera")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one ``file`` field, as a browser form sends it."""
    boundary = "pictrace-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@dataclass
class Traffic:
    """What the browser asked for: every request seen, and those refused."""

    requests: list[tuple[str, str, dict]] = field(default_factory=list)  # method, url, headers
    bodies: dict[str, bytes] = field(default_factory=dict)  # url -> body, for small POSTs
    blocked: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed"
        if in_ci():
            pytest.fail(message + " (CI must provide it)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def context(browser, traffic: Traffic):
    """A fresh browser profile whose requests can only reach loopback."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)

    def guard(route) -> None:
        request = route.request
        traffic.requests.append((request.method, request.url, request.headers))
        if request.method == "POST":
            body = request.post_data_buffer or b""
            traffic.bodies[request.url] = body if len(body) < 4096 else b"<large>"
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob") or parts.hostname in LOOPBACK:
            route.continue_()
        else:
            traffic.blocked.append(request.url)
            route.abort()

    ctx.route("**/*", guard)
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    ctx.close()
    assert traffic.blocked == [], "the page tried to leave loopback"


@pytest.fixture
def page(context):
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture
def seeded(stack, empty_catalog) -> dict[str, str]:
    """A catalog of a few sample photographs added through the API; name -> id."""
    api = Client(stack.api_url)
    ids = {}
    for name in SEEDS:
        body, ctype = multipart(f"{name}.jpg", jpeg(sample_bgr(name)))
        reply = api.post("/images", body, ctype)
        assert reply.status == 201, reply.body
        ids[name] = reply.body["ids"][0]
    return ids


def shot(page, name: str, **kw) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), animations="disabled", **kw)


def write_query(tmp_path: Path) -> tuple[Path, bytes]:
    """A rotated, cropped, re-encoded copy of one seed: what a user might find elsewhere."""
    img = cv2.rotate(sample_bgr("chelsea"), cv2.ROTATE_90_CLOCKWISE)
    h, w = img.shape[:2]
    data = jpeg(img[h // 12 : h - h // 10, w // 14 :], quality=80)
    path = tmp_path / "cat-rotated.jpg"
    path.write_bytes(data)
    return path, data


def result_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results li.result", "els => els.map(e => e.dataset.id)")


def open_page(page, stack, suffix: str = "/") -> None:
    page.goto(stack.api_url + suffix)
    page.wait_for_selector("#health[data-state=ok]")


def test_search_by_upload_ranks_the_original_first_and_draws_its_keypoints(stack, seeded, page, tmp_path):
    api = Client(stack.api_url)
    query_path, query_bytes = write_query(tmp_path)
    open_page(page, stack)
    page.select_option("#search-k", "3")
    page.select_option("#search-min", "0")  # every result, however weak

    page.set_input_files("#search-file", str(query_path))
    page.wait_for_selector("#results li.result[data-id]")

    ids = result_ids(page)
    assert ids[0] == seeded["chelsea"]
    assert len(ids) == 3
    ranks = page.eval_on_selector_all("#results li.result", "els => els.map(e => Number(e.dataset.rank))")
    assert ranks == [1, 2, 3]
    scores = page.eval_on_selector_all("#results li.result", "els => els.map(e => Number(e.dataset.score))")
    assert scores == sorted(scores, reverse=True)
    first = page.locator("#results li.result").first
    assert first.locator(".metric").count() == 4  # SSIM, ORB, Hist and the looks-like score
    assert "rotated" in first.locator(".chip:not(.label)").inner_text()
    assert page.locator("#search-progress").is_hidden()
    # The thumbnails really loaded from their presigned URLs.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img, #query-image')].every(i => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "search-results", full_page=True)

    # Every control has an accessible name.
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []

    # Open the best match from the keyboard.
    first.locator(".result-open").focus()
    page.keyboard.press("Enter")
    canvas = page.locator("#match-canvas[data-state=ready]")
    canvas.wait_for()
    pairs = int(canvas.get_attribute("data-pairs"))
    assert pairs > 0
    query_sha = hashlib.sha256(query_bytes).hexdigest()
    expected = api.get(f"/images/{seeded['chelsea']}/matches?query={query_sha}")
    assert expected.status == 200
    assert pairs == len(expected.body["pairs"])
    assert page.locator("#match-count").inner_text().startswith(f"{pairs} matched")
    # Both images are drawn side by side, with coloured marks between them.
    pixels = cv2.imdecode(np.frombuffer(canvas.screenshot(), np.uint8), cv2.IMREAD_COLOR)
    h, w = pixels.shape[:2]
    assert w > h > 100
    assert pixels.std() > 20
    shot(page, "match-view")
    page.keyboard.press("Escape")
    assert page.locator("#match-dialog").is_hidden()

    # The same results on a phone, in the dark scheme.
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "search-results-phone-dark", full_page=True)


def test_catalog_lists_adds_and_deletes_through_the_page(stack, seeded, page, tmp_path):
    api = Client(stack.api_url)
    open_page(page, stack)
    page.focus("#tab-search")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-catalog"
    assert page.locator("#panel-search").is_hidden()
    page.wait_for_function(f"() => document.querySelectorAll('#catalog-grid .cat-card').length === {len(SEEDS)}")
    listed = page.eval_on_selector_all("#catalog-grid .cat-card", "els => els.map(e => e.dataset.id)")
    assert sorted(listed) == sorted(seeded.values())
    # The list answer signs every thumbnail.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#catalog-grid img')].every(i => i.complete && i.naturalWidth > 0)"
    )

    rocket = jpeg(sample_bgr("rocket"))
    rocket_id = hashlib.sha256(rocket).hexdigest()
    (tmp_path / "rocket.jpg").write_bytes(rocket)
    page.set_input_files("#catalog-file", str(tmp_path / "rocket.jpg"))
    page.wait_for_selector(f'#catalog-grid .cat-card[data-id="{rocket_id}"]')
    assert "Added 1 image" in page.locator("#catalog-messages").inner_text()
    record = api.get(f"/images/{rocket_id}")
    assert record.status == 200
    assert record.body["name"] == "rocket.jpg"
    assert api.get("/images").body["total"] == len(SEEDS) + 1
    shot(page, "catalog", full_page=True)

    victim = seeded["coffee"]
    page.click(f'#catalog-grid .cat-card[data-id="{victim}"] button.delete')
    page.wait_for_selector("#confirm-dialog[open]")
    shot(page, "confirm-delete")
    page.click("#confirm-delete")
    page.wait_for_selector(f'#catalog-grid .cat-card[data-id="{victim}"]', state="detached")
    assert api.get(f"/images/{victim}").status == 404
    remaining = {r["id"] for r in api.get("/images").body["images"]}
    assert remaining == (set(seeded.values()) - {victim}) | {rocket_id}
    assert page.locator("#catalog-total").inner_text().startswith(f"{len(remaining)} images")


def test_cancelled_delete_keeps_the_image(stack, seeded, page):
    api = Client(stack.api_url)
    open_page(page, stack, "/#catalog")
    target = seeded["camera"]
    page.click(f'#catalog-grid .cat-card[data-id="{target}"] button.delete')
    page.wait_for_selector("#confirm-dialog[open]")
    page.keyboard.press("Escape")
    page.wait_for_selector("#confirm-dialog", state="hidden")
    assert api.get(f"/images/{target}").status == 200
    assert page.locator(f'#catalog-grid .cat-card[data-id="{target}"]').count() == 1


def test_the_api_error_message_is_shown(stack, seeded, page, tmp_path):
    junk = b"these bytes are not a picture of anything\n" * 20
    expected = Client(stack.api_url).post("/search", junk, "image/jpeg")
    assert expected.status == 422
    path = tmp_path / "notes.jpg"
    path.write_bytes(junk)
    open_page(page, stack)

    page.set_input_files("#search-file", str(path))
    alert = page.locator("#search-messages .message.error")
    alert.wait_for()
    text = alert.inner_text()
    assert expected.body["message"] in text
    assert expected.body["error"] in text
    assert page.locator("#results li.result").count() == 0
    shot(page, "search-error")


def test_partial_results_are_flagged(stack, seeded, page, tmp_path):
    # Pack the seeds into a shard, then add one more image: a search has two
    # batches, and the recently added one fails.
    stack.pack_now()
    api = Client(stack.api_url)
    body, ctype = multipart("rocket.jpg", jpeg(sample_bgr("rocket")))
    assert api.post("/images", body, ctype).status == 201

    def throttle_pending(name: str, event: dict) -> None:
        if name == "ScoreFunction" and "pending" in (event.get("batch") or {}):
            raise InvokeError(429, "TooManyRequestsException", "Rate exceeded")

    query_path, _ = write_query(tmp_path)
    open_page(page, stack)
    stack.lambdas.hook = throttle_pending
    try:
        page.set_input_files("#search-file", str(query_path))
        page.wait_for_selector("#results li.result[data-id]")
    finally:
        stack.lambdas.hook = None
    warning = page.locator("#search-messages .message.warning")
    assert warning.count() == 1
    assert "1 of 2 batches" in warning.inner_text()
    assert result_ids(page)[0] == seeded["chelsea"]
    shot(page, "search-partial", full_page=True)


class StageProxy:
    """API Gateway's stage prefix in front of the local API: ``/Prod/x`` -> ``/x``.

    Paths outside the stage get API Gateway's 403, so a page that dropped the
    prefix would fail visibly.
    """

    def __init__(self, upstream: str, prefix: str = "/Prod") -> None:
        self.upstream = upstream
        self.prefix = prefix
        self.api_key: str | None = None  # when set, required as the template requires it
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                proxy.forward(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.prefix}"

    def forward(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        path, _, query = req.path.partition("?")
        inner = path[len(self.prefix):] or "/"
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            status, headers, data = 403, {"Content-Type": "application/json"}, b'{"message":"Missing Authentication Token"}'
        elif (
            self.api_key is not None
            and req.command != "OPTIONS"
            and inner not in ("/", "/health")
            and req.headers.get("X-Api-Key") != self.api_key
        ):
            status, headers, data = 403, {"Content-Type": "application/json"}, b'{"message":"Forbidden"}'
        else:
            target = self.upstream + inner + (f"?{query}" if query else "")
            sent = {k: v for k, v in req.headers.items() if k.lower() not in ("host", "content-length", "connection")}
            upstream = urllib.request.Request(target, data=body or None, method=req.command, headers=sent)
            try:
                with urllib.request.urlopen(upstream, timeout=120) as resp:
                    status, headers, data = resp.status, dict(resp.headers), resp.read()
            except urllib.error.HTTPError as err:
                status, headers, data = err.code, dict(err.headers), err.read()
        req.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                req.send_header(k, v)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stage(stack):
    proxy = StageProxy(stack.api_url)
    yield proxy
    proxy.close()


def test_the_page_works_under_a_stage_prefix(stack, seeded, stage, page, traffic, tmp_path):
    """Served at /Prod (no trailing slash, as API Gateway allows), every call keeps the prefix."""
    query_path, _ = write_query(tmp_path)
    page.goto(stage.url)
    page.wait_for_selector("#health[data-state=ok]")
    page.set_input_files("#search-file", str(query_path))
    page.wait_for_selector("#results li.result[data-id]")
    assert result_ids(page)[0] == seeded["chelsea"]

    proxy_port = stage.server.server_address[1]
    api_port = urlsplit(stack.api_url).port
    paths = [urlsplit(u).path for _, u, _ in traffic.requests if urlsplit(u).port == proxy_port]
    assert {"/Prod", "/Prod/health", "/Prod/search"} <= set(paths), paths
    assert all(p.startswith(stage.prefix) for p in paths), paths
    assert not [u for _, u, _ in traffic.requests if urlsplit(u).port == api_port]


def test_the_api_key_is_sent_to_the_api_only(stack, seeded, page, traffic, tmp_path):
    open_page(page, stack)
    page.click("#open-settings")
    page.fill("#settings-key", "local-test-key")
    page.click("#settings button[value=save]")
    assert page.evaluate("localStorage.getItem('pictrace.apiKey')") == "local-test-key"

    query_path, _ = write_query(tmp_path)
    page.set_input_files("#search-file", str(query_path))
    page.wait_for_selector("#results li.result[data-id]")
    page.wait_for_function("() => [...document.querySelectorAll('#results img')].every(i => i.complete)")

    api_port = urlsplit(stack.api_url).port
    to_api = [(m, u, hd) for m, u, hd in traffic.requests if urlsplit(u).port == api_port and "/search" in u]
    assert to_api and all(hd.get("x-api-key") == "local-test-key" for _, _, hd in to_api)
    to_storage = [hd for _, u, hd in traffic.requests if u.startswith(stack.s3_url)]
    assert to_storage, "result thumbnails come from storage"
    assert all("x-api-key" not in hd for hd in to_storage)


def test_a_large_file_goes_through_a_presigned_upload(stack, empty_catalog, page, traffic, tmp_path):
    # Noise does not compress: a PNG over the 4 MB limit for a request body.
    rng = np.random.default_rng(7)
    big = cv2.imencode(".png", rng.integers(0, 256, (1300, 1200, 3), dtype=np.uint8))[1].tobytes()
    assert len(big) > 4 * 1024 * 1024
    path = tmp_path / "noise.png"
    path.write_bytes(big)
    big_id = hashlib.sha256(big).hexdigest()
    open_page(page, stack, "/#catalog")

    page.set_input_files("#catalog-file", str(path))
    page.wait_for_selector(f'#catalog-grid .cat-card[data-id="{big_id}"]')
    record = Client(stack.api_url).get(f"/images/{big_id}")
    assert record.status == 200
    assert record.body["bytes"] == len(big)
    uploads = [(m, u) for m, u, _ in traffic.requests if m in ("PUT", "POST") and u.startswith(stack.s3_url + "/")]
    assert len(uploads) == 1
    # The add itself names the upload instead of carrying the bytes.
    add = json.loads(traffic.bodies[stack.api_url + "/images"])
    method, url = uploads[0]
    if method == "PUT":  # the folder store: the key is the URL's path
        assert add["s3_key"] == urlsplit(url).path.split("/", 1)[1]
    else:  # S3: a POST form to the bucket, the key among its signed fields
        assert urlsplit(url).path.strip("/") == stack.bucket and add["s3_key"].startswith("uploads/")


@pytest.fixture
def held_scoring(stack):
    """Scoring calls wait until the test sets the returned event."""
    release = threading.Event()

    def hold(name: str, event: dict) -> None:
        if name == "ScoreFunction":
            release.wait(timeout=60)

    stack.lambdas.hook = hold
    yield release
    release.set()
    stack.lambdas.hook = None


def test_progress_is_shown_while_a_search_runs(stack, seeded, page, held_scoring, tmp_path):
    query_path, _ = write_query(tmp_path)
    open_page(page, stack)
    page.set_input_files("#search-file", str(query_path))
    progress = page.locator("#search-progress")
    progress.wait_for(state="visible")
    page.wait_for_function("() => /^\\d+\\.\\d s$/.test(document.querySelector('#search-elapsed').textContent)")
    assert page.locator("#search-bar").get_attribute("data-mode") in ("busy", "determinate")
    assert page.locator("#results li.result").count() == 0
    shot(page, "search-progress")

    held_scoring.set()
    page.wait_for_selector("#results li.result[data-id]")
    assert progress.is_hidden()
    assert result_ids(page)[0] == seeded["chelsea"]


def test_a_running_search_can_be_cancelled(stack, seeded, page, held_scoring, tmp_path):
    query_path, _ = write_query(tmp_path)
    open_page(page, stack)
    page.set_input_files("#search-file", str(query_path))
    page.locator("#search-progress").wait_for(state="visible")
    page.click("#search-cancel")
    page.locator("#search-progress").wait_for(state="hidden")
    held_scoring.set()
    assert page.locator("#results li.result").count() == 0
    assert page.locator("#search-messages .message.error").count() == 0


def put_file(page, selector: str, event: str, name: str, data: bytes) -> None:
    """Dispatch a paste or drop event carrying one image file, as the browser would."""
    page.evaluate(
        """([selector, event, name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: "image/jpeg" }));
            const target = document.querySelector(selector);
            const ev = event === "paste"
                ? new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true })
                : new DragEvent(event, { dataTransfer: dt, bubbles: true, cancelable: true });
            target.dispatchEvent(ev);
        }""",
        [selector, event, name, base64.b64encode(data).decode()],
    )


def test_paste_searches_and_drop_adds(stack, seeded, page, tmp_path):
    api = Client(stack.api_url)
    _, query = write_query(tmp_path)
    open_page(page, stack)
    put_file(page, "body", "paste", "pasted.jpg", query)
    page.wait_for_selector("#results li.result[data-id]")
    assert result_ids(page)[0] == seeded["chelsea"]

    page.click("#tab-catalog")
    page.wait_for_selector("#catalog-grid .cat-card")
    rocket = jpeg(sample_bgr("rocket"))
    for event in ("dragenter", "dragover", "drop"):
        put_file(page, "#catalog-drop", event, "dropped-rocket.jpg", rocket)
    rocket_id = hashlib.sha256(rocket).hexdigest()
    page.wait_for_selector(f'#catalog-grid .cat-card[data-id="{rocket_id}"]')
    assert api.get(f"/images/{rocket_id}").body["name"] == "dropped-rocket.jpg"
    assert page.evaluate("document.body.classList.contains('dragging')") is False


def test_a_refused_url_shows_the_api_message(stack, seeded, page):
    # The API refuses loopback addresses (PICTRACE_ALLOW_PRIVATE_URLS is off), before connecting.
    url = stack.api_url + "/health"
    expected = Client(stack.api_url).post("/search", {"url": url})
    assert expected.status == 400
    open_page(page, stack)
    page.fill("#search-url", url)
    page.press("#search-url", "Enter")
    alert = page.locator("#search-messages .message.error")
    alert.wait_for()
    assert expected.body["message"] in alert.inner_text()


def test_the_api_can_be_named_in_the_address(stack, seeded, stage, page, traffic, tmp_path):
    """?api=<url> sends every call to that API, cross-origin."""
    query_path, _ = write_query(tmp_path)
    page.goto(f"{stage.url}/?api={stack.api_url}/")
    page.wait_for_selector("#health[data-state=ok]")
    page.set_input_files("#search-file", str(query_path))
    page.wait_for_selector("#results li.result[data-id]")
    assert result_ids(page)[0] == seeded["chelsea"]
    api_port = urlsplit(stack.api_url).port
    to_api = {urlsplit(u).path for _, u, _ in traffic.requests if urlsplit(u).port == api_port}
    assert {"/health", "/search"} <= to_api
    proxy_port = stage.server.server_address[1]
    assert [urlsplit(u).path for _, u, _ in traffic.requests if urlsplit(u).port == proxy_port] == ["/Prod/"]


def test_a_missing_api_key_asks_for_one(stack, seeded, stage, page, tmp_path):
    stage.api_key = "stage-key-1"
    query_path, _ = write_query(tmp_path)
    page.goto(stage.url + "/")
    page.wait_for_selector("#health[data-state=ok]")
    page.set_input_files("#search-file", str(query_path))
    page.wait_for_selector("#settings[open]")
    refusal = page.locator("#search-messages .message.error").inner_text()
    assert "Forbidden" in refusal and "API key" in refusal
    shot(page, "api-key-needed")

    page.fill("#settings-key", "stage-key-1")
    page.press("#settings-key", "Enter")
    page.locator("#settings").wait_for(state="hidden")
    page.set_input_files("#search-file", str(query_path))
    page.wait_for_selector("#results li.result[data-id]")
    assert result_ids(page)[0] == seeded["chelsea"]


def test_the_page_is_one_document_under_a_strict_policy(stack, page, traffic):
    response = page.goto(stack.api_url + "/")
    page.wait_for_selector("#health[data-state=ok]")
    policy = response.headers["content-security-policy"]
    assert "script-src 'sha256-" in policy and "unsafe" not in policy
    # Styles and scripts are inlined: loading the page fetches nothing else.
    assert [urlsplit(u).path for _, u, _ in traffic.requests] == ["/", "/health"]
    # A script injected later is not in the policy, so it does not run.
    page.evaluate(
        """() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1'; document.body.append(s); }"""
    )
    assert page.evaluate("window.injected") is None


CLIPPED = """() => [...document.querySelectorAll(
        '#results .result .score, #results .result .num, #results .result .chip, #results .result dd, #results .result .result-head, #results .result .result-body')]
    .filter(e => e.scrollWidth > e.clientWidth || e.getBoundingClientRect().right > e.closest('.result').getBoundingClientRect().right + 0.5)
    .map(e => `${e.className || e.tagName}: ${e.textContent.trim().slice(0, 20)} (${e.scrollWidth} > ${e.clientWidth})`)"""


@pytest.mark.parametrize("width", [1400, 1024, 390, 320])
def test_result_cards_show_every_score_whole(stack, seeded, page, tmp_path, width):
    # A long file name must give way to the numbers, not push them out of the card.
    body, ctype = multipart("a-rather-long-name-for-a-holiday-photo-of-the-cat-2024-07.jpg", jpeg(sample_bgr("chelsea")[::-1]))
    assert Client(stack.api_url).post("/images", body, ctype).status == 201
    query_path, _ = write_query(tmp_path)
    page.set_viewport_size({"width": width, "height": 900})
    open_page(page, stack)
    page.select_option("#search-k", "10")
    page.select_option("#search-min", "0")
    page.set_input_files("#search-file", str(query_path))
    page.wait_for_selector("#results li.result[data-id]")
    assert page.locator("#results li.result").count() >= 1
    assert page.evaluate(CLIPPED) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_an_unrelated_image_finds_no_similar_image(stack, seeded, page, tmp_path):
    moon = tmp_path / "moon.jpg"
    moon.write_bytes(jpeg(sample_bgr("moon")))
    open_page(page, stack)
    assert page.input_value("#search-min") == "0.4"  # the default leaves unrelated pictures out
    page.set_input_files("#search-file", str(moon))
    page.wait_for_selector("#results[data-state=none]", state="attached")
    assert page.locator("#results li").count() == 0
    assert page.inner_text("#results-title") == "No similar image"
    assert "No similar image:" in page.inner_text("#search-messages")
    # With no threshold the closest pictures show, flagged as weak rather than "mirrored".
    page.select_option("#search-min", "0")
    page.set_input_files("#search-file", str(moon))
    page.wait_for_selector("#results[data-state=results] li.result[data-id]")
    chips = page.eval_on_selector_all("#results .chip:not(.label)", "els => els.map(e => e.textContent)")
    assert chips and set(chips) == {"weak match"}


def test_the_look_alike_switch_finds_another_cat(stack, empty_catalog, page, tmp_path):
    api = Client(stack.api_url)
    for name in ("coffee", "rocket", "astronaut"):
        assert api.post("/images", *multipart(f"{name}.jpg", jpeg(sample_bgr(name)))).status == 201
    cat = api.post("/images", CAT.read_bytes(), "image/webp").body["ids"][0]
    query = tmp_path / "chelsea.jpg"
    query.write_bytes(jpeg(sample_bgr("chelsea")))
    open_page(page, stack)
    page.select_option("#search-min", "0")
    page.select_option("#search-mode", "similar")
    page.set_input_files("#search-file", str(query))
    page.wait_for_selector("#results li.result[data-id]")
    assert result_ids(page)[0] == cat
    first = page.locator("#results li.result").first
    assert first.locator(".metric").count() == 4 and first.locator(".chip.label").count() >= 1
    assert first.locator(".chip:not(.label)").count() == 0  # no "weak match" or transform: not a copy
    assert "mode=similar" in page.url
    shot(page, "look-alike-results", full_page=True)


def test_find_similar_from_a_catalog_card_and_its_link(stack, seeded, page, context, tmp_path):
    copy = Client(stack.api_url).post("/images", *multipart("cat copy.jpg", jpeg(sample_bgr("chelsea")[40:-40, 30:-30])))
    assert copy.status == 201
    open_page(page, stack, "/#catalog")
    card = page.locator(f".cat-card[data-id='{seeded['chelsea']}']")
    card.locator("button.similar").click()
    page.wait_for_selector("#results li.result[data-id]")
    assert page.locator("#tab-search").get_attribute("aria-selected") == "true"
    ids = result_ids(page)
    assert ids[0] == copy.body["ids"][0] and seeded["chelsea"] not in ids
    assert page.inner_text(".query-card h2") == "More like this image"
    assert f"similar={seeded['chelsea']}" in page.url

    # The address is a link to the same search.
    other = context.new_page()
    other.goto(page.url)
    other.wait_for_selector("#results li.result[data-id]")
    assert result_ids(other) == ids
    other.close()


def test_an_uploaded_search_can_be_linked_to(stack, seeded, page, context, tmp_path):
    query_path, query_bytes = write_query(tmp_path)
    open_page(page, stack)
    page.select_option("#search-k", "3")
    page.select_option("#search-min", "0.3")
    page.set_input_files("#search-file", str(query_path))
    page.wait_for_selector("#results li.result[data-id]")
    ids = result_ids(page)
    sha = hashlib.sha256(query_bytes).hexdigest()
    assert f"q={sha}" in page.url and "k=3" in page.url and "min_score=0.3" in page.url

    other = context.new_page()
    other.goto(page.url)
    other.wait_for_selector("#results li.result[data-id]")
    assert result_ids(other) == ids
    assert other.input_value("#search-k") == "3" and other.input_value("#search-min") == "0.3"
    other.wait_for_function("() => document.querySelector('#query-image').naturalWidth > 0")
    other.close()


def test_two_chosen_images_are_compared_with_their_keypoints(stack, empty_catalog, page, tmp_path):
    copy_bytes = jpeg(np.ascontiguousarray(sample_bgr("astronaut")[30:-30, 40:-20][:, ::-1]), quality=70)
    copy, original = tmp_path / "copy.jpg", tmp_path / "original.jpg"
    copy.write_bytes(copy_bytes)
    original.write_bytes(jpeg(sample_bgr("astronaut")))
    open_page(page, stack)
    page.click(".compare summary")
    page.set_input_files("#compare-a", str(copy))
    page.set_input_files("#compare-b", str(original))
    page.click("#compare-form button[type=submit]")
    canvas = page.locator("#match-canvas[data-state=ready]")
    canvas.wait_for()
    # The figures are the API's for the same two files.
    boundary = "pictrace-compare"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"; filename="{n}.jpg"\r\n\r\n'.encode() + d + b"\r\n"
        for n, d in (("a", copy_bytes), ("b", original.read_bytes()))
    ) + f"--{boundary}--\r\n".encode()
    answer = Client(stack.api_url).post("/compare", body, f"multipart/form-data; boundary={boundary}").body
    info = page.inner_text("#match-info")
    assert f"score {answer['score']:.3f}" in info and "mirrored" in info
    assert int(canvas.get_attribute("data-pairs")) == len(answer["keypoints"]["pairs"])
    assert page.inner_text("#match-count").startswith(f"{answer['keypoints']['count']} matched keypoints")
    assert empty_catalog.count() == 0  # comparing adds nothing


def test_the_catalog_shows_thumbnails_signed_in_its_list(stack, seeded, page, traffic):
    open_page(page, stack, "/#catalog")
    page.wait_for_function(f"() => document.querySelectorAll('#catalog-grid .cat-card').length === {len(SEEDS)}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#catalog-grid img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    cards = page.eval_on_selector_all(
        "#catalog-grid .cat-card",
        "els => els.map(e => ({src: e.querySelector('img').src, href: e.querySelector('a.thumb').href,"
        " side: Math.max(e.querySelector('img').naturalWidth, e.querySelector('img').naturalHeight)}))",
    )
    assert all("/index/thumbs/" in c["src"] and "/catalog/" in c["href"] for c in cards), cards
    assert {c["side"] for c in cards} == {256}
    # One list request signs every link: no GET /images/{id} per card.
    per_card = [u for m, u, _ in traffic.requests if m == "GET" and "/images/" in urlsplit(u).path]
    assert per_card == []


def test_duplicate_groups_are_shown_with_their_thumbnails(stack, seeded, page, traffic):
    img = sample_bgr("coffee")
    h, w = img.shape[:2]
    body, ctype = multipart("coffee-copy.jpg", jpeg(img[h // 16 : h - h // 16, w // 20 :], 50))
    copy_id = Client(stack.api_url).post("/images", body, ctype).body["ids"][0]
    stack.store.delete("index/duplicates/groups.json")  # no scan stored (whatever the status says): the first look runs one
    open_page(page, stack, "/#catalog")
    page.fill("#dupes-min", "0.6")
    page.click("#dupes-form button[type=submit]")
    page.wait_for_selector("#dupes-groups .dupe-group")
    groups = page.eval_on_selector_all(
        "#dupes-groups .dupe-group", "els => els.map(g => [...g.querySelectorAll('li[data-id]')].map(li => li.dataset.id))"
    )
    assert [sorted(g) for g in groups] == [sorted([seeded["coffee"], copy_id])]
    page.wait_for_function("() => [...document.querySelectorAll('#dupes-groups img')].every(i => i.complete && i.naturalWidth > 0)")
    srcs = page.eval_on_selector_all("#dupes-groups img", "els => els.map(e => e.src)")
    assert all("/index/thumbs/" in s for s in srcs)
    assert "1 group scoring 0.600 or more" in page.locator("#dupes-summary").inner_text()
    assert any(m == "POST" and urlsplit(u).path.endswith("/duplicates") for m, u, _ in traffic.requests)
    page.locator("#dupes").scroll_into_view_if_needed()
    shot(page, "duplicates")

    page.fill("#dupes-min", "0.3")  # below the scan's floor: the API's message
    page.click("#dupes-form button[type=submit]")
    page.wait_for_selector("#dupes-messages .message.error")
    assert "at least 0.5" in page.locator("#dupes-messages").inner_text()
