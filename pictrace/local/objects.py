"""The local stack's object endpoint: where a folder store's presigned URLs lead.

A presigned GET returns the object's bytes with its content type; a
presigned PUT stores the request body (up to ``max_bytes``), as S3 does for
the large uploads ``POST /uploads`` hands out.  A missing, expired or forged
signature is a 403, a missing object a 404, both as S3's XML errors.  CORS is
open, so the web page can upload from the browser.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from pictrace.adapters.folder_store import FolderStore
from pictrace.local.loopback import BadFraming, LoopbackServer, TooLarge, closing, read_body

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, PUT",
    "Access-Control-Allow-Headers": "content-type",
}


class ObjectEndpoint(LoopbackServer):
    methods = ("GET", "HEAD", "PUT", "OPTIONS")

    def __init__(self, store: FolderStore, host: str = "127.0.0.1", port: int = 0, max_bytes: int = 25 * 1024 * 1024) -> None:
        super().__init__(host, port)
        self.store = store
        self.max_bytes = max_bytes

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        if req.command == "OPTIONS":
            return _send(req, 204, b"", "text/plain")
        parts = urlsplit(req.path)
        key = unquote(parts.path.lstrip("/"))
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        signed_for = "GET" if req.command == "HEAD" else req.command
        try:
            body = read_body(req, self.max_bytes) if req.command == "PUT" else b""
        except TooLarge:
            req.close_connection = True
            return _error(req, 400, "EntityTooLarge", "the object is larger than the upload limit")
        except BadFraming as exc:
            req.close_connection = True
            return _error(req, exc.status, "BadRequest", str(exc))
        if not key or not self.store.verify(signed_for, key, query.get("Expires", ""), query.get("Signature", "")):
            return _error(req, 403, "AccessDenied", "the URL's signature is missing, wrong or expired")
        if req.command == "PUT":
            etag = self.store.put(key, body, content_type=req.headers.get("Content-Type") or "application/octet-stream")
            return _send(req, 200, b"", "text/plain", {"ETag": etag})
        head = self.store.head(key)
        if head is None:
            return _error(req, 404, "NoSuchKey", "the object does not exist")
        data = b"" if req.command == "HEAD" else self.store.get(key)
        _send(req, 200, data, head.get("content_type") or "application/octet-stream", {"ETag": head["etag"]},
              length=int(head["size"]))


def _error(req: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
    xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    _send(req, status, xml.encode(), "application/xml")


def _send(req: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None,
          length: int | None = None) -> None:
    req.send_response(status)
    req.send_header("Content-Type", ctype)
    req.send_header("Content-Length", str(len(data) if length is None else length))
    for k, v in {**CORS, **(headers or {})}.items():
        req.send_header(k, v)
    if closing(req):
        req.send_header("Connection", "close")
    req.end_headers()
    req.wfile.write(data)
