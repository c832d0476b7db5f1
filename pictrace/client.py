"""A client for the PicTrace HTTP API, on the standard library alone.

>>> from pictrace.client import Client, source
>>> api = Client("http://127.0.0.1:8080")                       # doctest: +SKIP
>>> hits = api.search(source("query.jpg"), k=3)["results"]     # doctest: +SKIP

It talks to the local stack (``pictrace serve``) and to the deployed API
alike.  Failures are two exceptions: :class:`Unreachable` when nothing answers
at the base URL, and :class:`ApiError` for an HTTP error answer, carrying the
API's ``error`` code and message.
"""

from __future__ import annotations

import http.client
import json
import mimetypes
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Callable, Iterable, Iterator

DEFAULT_URL = "http://127.0.0.1:8080"
MB = 1024 * 1024
# Images above this size go through a presigned upload.  The API accepts 6 MB
# bodies, but API Gateway hands image bodies to Lambda base64-encoded (4/3 the
# size) inside an event that may not exceed 6 MB, so 4 MB is what fits on AWS.
DIRECT_LIMIT = 4 * MB
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


class ClientError(Exception):
    """Base of the client's failures."""


class NotPicTrace(ClientError):
    """Something answered, but not with the API's JSON (a wrong ``--api``, a proxy's page)."""


class TimedOut(ClientError):
    """The API accepted the request but did not answer in time."""


class Unreachable(ClientError):
    """Nothing answered at the API's address (refused, unknown host, timeout)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the PicTrace API at {url}: {reason}")
        self.url = url
        self.reason = reason


class ApiError(ClientError):
    """An HTTP error answer; ``code`` is the API's ``error`` field when it sent one."""

    def __init__(self, status: int, body: dict) -> None:
        self.status = status
        self.body = body
        self.code = str(body.get("error") or _phrase(status))
        message = str(body.get("message") or "")
        self.message = "" if message == self.code else message  # API Gateway's own {"message": "Forbidden"}
        super().__init__(f"{status} {self.code}: {self.message}" if self.message else f"{status} {self.code}")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


@dataclass(frozen=True)
class Source:
    """One image to send: a local file, bytes already read (stdin), or a URL."""

    label: str  # how the user named it, for messages
    path: Path | None = None
    data: bytes | None = None
    url: str = ""
    image_id: str = ""  # a catalog image (only where a command takes one: compare)

    @property
    def name(self) -> str:
        return self.path.name if self.path else ""

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


def is_url(text: str) -> bool:
    return urllib.parse.urlsplit(text).scheme.lower() in ("http", "https")


def source(arg: str) -> Source:
    """The :class:`Source` a command-line argument names: a URL, ``-`` (stdin) or a file.

    Raises ``FileNotFoundError`` for a path that does not exist and
    ``IsADirectoryError`` for a directory.
    """
    if is_url(arg):
        return Source(arg, url=arg)
    if arg == "-":
        return Source("<stdin>", data=sys.stdin.buffer.read())
    path = Path(arg)
    if path.is_dir():
        raise IsADirectoryError(f"{arg} is a directory")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {arg}")
    return Source(arg, path=path)


def is_image_id(text: str) -> bool:
    """Whether ``text`` is a catalog image id: 64 lower-case hex digits (its sha256)."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def image_ref(arg: str) -> Source:
    """Like :func:`source`, and an image id names a catalog image (a file of that name wins)."""
    if is_image_id(arg) and not Path(arg).exists():
        return Source(arg, image_id=arg)
    return source(arg)


def expand(args: Iterable[str]) -> list[Source]:
    """Sources for ``add``: URLs and files as given, directories walked for image files.

    A file named explicitly is sent whatever its suffix (the API decides what
    it is); inside directories only :data:`IMAGE_SUFFIXES` count.  Raises
    ``FileNotFoundError`` for an argument that is neither a URL nor a path.
    """
    out: list[Source] = []
    for arg in args:
        path = Path(arg)
        if not is_url(arg) and path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            out.extend(Source(str(p), path=p) for p in files)
        else:
            out.append(source(arg))
    return out


def multipart(data: bytes, filename: str) -> tuple[bytes, str]:
    """A multipart/form-data body with ``data`` as its ``file`` field; returns (body, Content-Type)."""
    boundary = uuid.uuid4().hex
    safe = _safe_filename(filename)
    ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{safe}"\r\n'
        f"Content-Type: {ctype}\r\n\r\n"
    ).encode("utf-8")
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def form(fields: dict[str, tuple[bytes, str] | str]) -> tuple[bytes, str]:
    """A multipart/form-data body: ``(bytes, filename)`` values are files, strings plain fields."""
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        if isinstance(value, tuple):
            data, filename = value
            safe = _safe_filename(filename)
            ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
            head = f'Content-Disposition: form-data; name="{name}"; filename="{safe}"\r\nContent-Type: {ctype}'
            out += f"--{boundary}\r\n{head}\r\n\r\n".encode("utf-8") + data + b"\r\n"
        else:
            out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode("utf-8")
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload_request(ticket: dict, data: bytes) -> urllib.request.Request:
    """The storage request a ``POST /uploads`` answer asks for, carrying ``data``.

    A POST sends the signed form fields, then the file (S3 reads the policy
    from the fields before the file); a PUT sends the bytes with the signed
    headers.
    """
    method = ticket.get("method", "PUT")
    if method == "POST":
        body, ctype = form({**ticket["fields"], "file": (data, "upload")})
        return urllib.request.Request(ticket["url"], data=body, method="POST", headers={"Content-Type": ctype})
    return urllib.request.Request(ticket["url"], data=data, method=method, headers=ticket.get("headers", {}))


def _safe_filename(filename: str) -> str:
    return filename.replace("\\", "_").replace('"', "_").replace("\r", "").replace("\n", "")


def _side_json(text: str) -> dict:
    """A comparison side named by text, as ``POST /compare``'s JSON takes it."""
    if is_url(text):
        return {"url": text}
    return {"id": text} if is_image_id(text) else {"s3_key": text}


class Client:
    """The PicTrace API at ``base_url``; every method returns the API's JSON answer."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 120.0,
        direct_limit: int = DIRECT_LIMIT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.direct_limit = direct_limit

    @classmethod
    def from_env(cls, base_url: str | None = None) -> "Client":
        """``base_url``, else ``PICTRACE_API_URL``, else :data:`DEFAULT_URL`; key from ``PICTRACE_API_KEY``."""
        url = base_url or os.environ.get("PICTRACE_API_URL") or DEFAULT_URL
        return cls(url, api_key=os.environ.get("PICTRACE_API_KEY") or None)

    # --- transport ---------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | dict | None = None,
        ctype: str | None = None,
        query: dict | None = None,
    ) -> dict:
        """One request; the decoded JSON answer, or :class:`ApiError` / :class:`Unreachable`."""
        headers = {"Accept": "application/json"}
        if isinstance(body, dict):
            body, ctype = json.dumps(body).encode(), "application/json"
        if ctype:
            headers["Content-Type"] = ctype
        if self.api_key:
            headers["X-Api-Key"] = self.api_key
        params = {k: v for k, v in (query or {}).items() if v is not None}
        url = self.base_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise ApiError(err.code, _json(err.read())) from None
        except TimeoutError:  # connected, then no answer: the request may still be running
            raise TimedOut(f"no answer from {self.base_url} within {self.timeout:g} s") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise Unreachable(self.base_url, str(getattr(err, "reason", err))) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise NotPicTrace(f"{self.base_url}{path} did not answer with JSON; is it the PicTrace API?")
        return answer

    def image_body(self, src: Source, fields: dict | None = None) -> tuple[bytes | dict, str | None]:
        """The request body naming ``src``: JSON for a URL or a large file, else multipart.

        ``fields`` (such as ``meta`` or ``filter``) go with it: JSON values in
        a JSON body, JSON text in a multipart one.
        """
        extra = {k: v for k, v in (fields or {}).items() if v is not None}
        if src.url:
            return {"url": src.url, **extra}, None
        data = src.read()
        if len(data) > self.direct_limit:
            key = self.upload(data, mimetypes.guess_type(src.name)[0] or "image/jpeg")
            return ({"s3_key": key, "name": src.name} if src.name else {"s3_key": key}) | extra, None
        if extra:
            return form({"file": (data, src.name or "image"), **{k: json.dumps(v) for k, v in extra.items()}})
        return multipart(data, src.name or "image")

    def upload(self, data: bytes, content_type: str = "image/jpeg") -> str:
        """Store ``data`` through a presigned upload; returns the ``s3_key`` to search or add with."""
        if not content_type.startswith("image/"):
            content_type = "image/jpeg"  # the API only signs image/* types; the bytes decide the format
        ticket = self.call("POST", "/uploads", body={"content_type": content_type})
        method = ticket.get("method", "PUT")
        try:
            with urllib.request.urlopen(upload_request(ticket, data), timeout=self.timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as err:
            refused = {"error": "upload_failed", "message": f"the presigned {method} was refused ({err.reason})"}
            raise ApiError(err.code, refused) from None
        except (urllib.error.URLError, OSError) as err:
            raise Unreachable(ticket["url"].split("?", 1)[0], str(getattr(err, "reason", err))) from None
        return ticket["s3_key"]

    # --- resources -----------------------------------------------------------

    def health(self) -> dict:
        return self.call("GET", "/health")

    def search(
        self,
        src: Source,
        *,
        k: int | None = None,
        ranking: str | None = None,
        min_score: float | None = None,
        filter: dict | None = None,
        mode: str | None = None,
    ) -> dict:
        """``POST /search``: the catalog images most similar to ``src``, none below ``min_score``.

        ``mode="similar"`` finds the same kind of thing rather than copies.

        ``filter`` (``{"field": "value" or ["any", "of"]}``) makes only
        images whose meta matches it results.
        """
        body, ctype = self.image_body(src, {"filter": filter})
        query = {"k": k, "ranking": ranking, "mode": mode, "min_score": min_score}
        return self.call("POST", "/search", body=body, ctype=ctype, query=query)

    def similar(
        self,
        image_id: str,
        *,
        k: int | None = None,
        ranking: str | None = None,
        min_score: float | None = None,
        filter: dict | None = None,
    ) -> dict:
        """``GET /images/{id}/similar``: the images most like a catalog image, which is left out."""
        query = {"k": k, "ranking": ranking, "min_score": min_score, "filter": _json_param(filter)}
        return self.call("GET", f"/images/{urllib.parse.quote(image_id, safe='')}/similar", query=query)

    def compare(self, a: Source, b: Source, *, ranking: str | None = None) -> dict:
        """``POST /compare``: the signals, score, transform and matched keypoints of two images.

        Small files travel in a multipart body; URLs, ids and files above
        :attr:`direct_limit` (uploaded first) are named in it as text.
        """
        fields: dict[str, tuple[bytes, str] | str] = {}
        for name, src in (("a", a), ("b", b)):
            side = self._side(src)
            fields[name] = (side, src.name or f"{name}.jpg") if isinstance(side, bytes) else side
        query = {"ranking": ranking}
        if any(isinstance(v, tuple) for v in fields.values()):
            body, ctype = form(fields)
            return self.call("POST", "/compare", body=body, ctype=ctype, query=query)
        named = {n: _side_json(v) for n, v in fields.items() if isinstance(v, str)}
        return self.call("POST", "/compare", body=named, query=query)

    def _side(self, src: Source) -> bytes | str:
        """One side of a comparison: the file's bytes, or the text that names the image."""
        if src.image_id or src.url:
            return src.image_id or src.url
        data = src.read()
        if len(data) > self.direct_limit:
            return self.upload(data, mimetypes.guess_type(src.name)[0] or "image/jpeg")
        return data

    def add(self, src: Source, meta: dict | None = None) -> dict:
        """``POST /images``: add ``src`` (every image of a page URL), each with ``meta`` if given."""
        body, ctype = self.image_body(src, {"meta": meta})
        return self.call("POST", "/images", body=body, ctype=ctype)

    def set_meta(self, image_id: str, meta: dict) -> dict:
        """``PATCH /images/{id}``: replace an image's meta; the new record."""
        return self.call("PATCH", f"/images/{urllib.parse.quote(image_id, safe='')}", body={"meta": meta})

    def images(self, limit: int | None = None, cursor: str | None = None, filter: dict | None = None) -> dict:
        """``GET /images``: one page of records, only those whose meta matches ``filter`` if given."""
        return self.call("GET", "/images", query={"limit": limit, "cursor": cursor, "filter": _json_param(filter)})

    def all_images(self, page_size: int = 1000, filter: dict | None = None) -> Iterator[dict]:
        """Every catalog record (matching ``filter``), following ``next_cursor``."""
        cursor = None
        while True:
            page = self.images(page_size, cursor, filter)
            yield from page["images"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def get(self, image_id: str) -> dict:
        return self.call("GET", f"/images/{urllib.parse.quote(image_id, safe='')}")

    def delete(self, image_id: str) -> dict:
        return self.call("DELETE", f"/images/{urllib.parse.quote(image_id, safe='')}")

    def duplicates(self, *, min_score: float | None = None, limit: int | None = None, cursor: str | None = None) -> dict:
        """``GET /duplicates``: one page of the last scan's groups of near-duplicates."""
        return self.call("GET", "/duplicates", query={"min_score": min_score, "limit": limit, "cursor": cursor})

    def scan_duplicates(self) -> dict:
        """``POST /duplicates``: start a scan of the whole catalog (or join the one running); its ``job``."""
        return self.call("POST", "/duplicates")["job"]

    def wait_for_scan(self, run: str, timeout: float = 900.0, interval: float = 2.0) -> dict:
        """Poll until the scan ``run`` is done or failed; its status.  :class:`TimedOut` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.duplicates(limit=1)["job"]
            if job.get("run") == run and job.get("state") in ("done", "failed"):
                return job
            if job.get("run") not in (run, None) and job.get("state") in ("queued", "running"):
                run = job["run"]  # ours was taken over by a newer one (a restart found it stale)
            if time.monotonic() >= deadline:
                raise TimedOut(f"the duplicates scan {run} did not finish within {timeout:g} s (it goes on; try again later)")
            time.sleep(interval)


def _json_param(value: dict | None) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {"message": raw.decode("utf-8", "replace").strip()[:200]}
    return value if isinstance(value, dict) else {"value": value}


# --- adding many -------------------------------------------------------------


@dataclass
class Outcome:
    """What adding one source did; a page URL may add several images."""

    source: Source
    added: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (what, reason)


def add_one(client: Client, src: Source, meta: dict | None = None) -> Outcome:
    """Add one source (with ``meta``) and sort what happened.

    Errors about the source become ``failed`` entries; errors about the API
    (unreachable, a refused key, timeouts) escape.
    """
    out = Outcome(src)
    try:
        answer = client.add(src, meta)
    except ApiError as err:
        if err.status in (401, 403):
            raise
        reason = f"{err.code}: {err.message}" if err.message else err.code
        failed = err.body.get("failed") if isinstance(err.body.get("failed"), list) else []
        out.failed = [_failure(f) for f in failed] or [(src.label, reason)]
        return out
    except OSError as err:  # the file vanished or cannot be read
        out.failed.append((src.label, err.strerror or str(err)))
        return out
    for record in answer.get("images", []):
        (out.added if record.get("created") else out.duplicates).append(record)
    out.failed = [_failure(f) for f in answer.get("failed", [])]
    return out


def _failure(entry: dict) -> tuple[str, str]:
    return str(entry.get("url", "")), f"{entry.get('error', 'error')}: {entry.get('message', '')}"


def add_all(
    client: Client,
    sources: list[Source],
    jobs: int = 4,
    on_done: Callable[[Outcome], None] | None = None,
    meta: dict | None = None,
) -> list[Outcome]:
    """Add ``sources`` (each with ``meta``) with ``jobs`` concurrent requests; outcomes in the order given.

    ``on_done`` is called from the calling thread as each one finishes.  An
    unreachable API stops everything: pending sources are cancelled and
    :class:`Unreachable` is raised.
    """
    results: dict[int, Outcome] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(add_one, client, src, meta): i for i, src in enumerate(sources)}
        try:
            for future in as_completed(futures):
                outcome = future.result()
                results[futures[future]] = outcome
                if on_done:
                    on_done(outcome)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [results[i] for i in range(len(sources))]
