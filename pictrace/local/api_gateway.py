"""A local stand-in for API Gateway's REST proxy integration.

It turns each HTTP request into the proxy event the API function receives on
AWS (binary media types ``image/*``, ``multipart/form-data`` and
``application/octet-stream`` base64-encoded,
as the template declares them) and turns the function's answer back into an
HTTP response.  Like API Gateway it enforces the 10 MB payload limit, answers
502 when the function fails, and checks ``X-Api-Key`` when a key is set
(except on ``GET /`` and ``GET /health``, which the template leaves open).
Bodies are framed strictly: a bad or repeated ``Content-Length`` is a 400, a
body-carrying request with no length a 411, and chunked bodies are decoded.

Requests are received concurrently.  A handler in this process serves one
at a time, as one Lambda execution environment does: Powertools keeps the
current event in shared state, so two invocations at once would read each
other's.  A :class:`~pictrace.local.workers.WorkerPool` as the handler runs
several at once, each in its own process.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from pictrace.local.lambda_endpoint import LambdaContext
from pictrace.local.loopback import BadFraming, LoopbackServer, TooLarge, closing, read_body

MAX_PAYLOAD = 10 * 1024 * 1024
# The template's usage plan keys every route but these (the web page and the health check).
OPEN_PATHS = frozenset({"/", "/health"})
JSON = {"content-type": ["application/json"]}
BINARY_TYPES = ("image/", "multipart/form-data", "application/octet-stream")

Handler = Callable[[dict, object], dict]


def proxy_event(method: str, target: str, headers: dict[str, list[str]], body: bytes, source_ip: str) -> dict:
    """The REST API (v1) proxy event for one request."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    ctype = (headers.get("content-type") or [""])[0].lower()
    binary = any(ctype.startswith(t) for t in BINARY_TYPES)
    if binary:
        payload, encoded = base64.b64encode(body).decode(), True
    else:
        payload, encoded = body.decode("utf-8", "replace"), False
    return {
        "resource": "/{proxy+}",
        "path": parts.path or "/",
        "httpMethod": method,
        "headers": {k: v[-1] for k, v in headers.items()} or None,
        "multiValueHeaders": headers or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": (parts.path or "/").lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": parts.path or "/",
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": source_ip},
        },
        "body": payload if body else None,
        "isBase64Encoded": encoded and bool(body),
    }


class ApiGateway(LoopbackServer):
    def __init__(
        self, handler: Handler, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
        one_at_a_time: bool = True,
    ) -> None:
        super().__init__(host, port)
        self.handler = handler
        self.api_key = api_key
        # One execution environment in this process serves one request at a time;
        # a worker pool is its own guard.
        self._environment = threading.Lock() if one_at_a_time else contextlib.nullcontext()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        try:
            body = read_body(req, MAX_PAYLOAD)
        except TooLarge:
            req.close_connection = True
            return _reply(req, 413, JSON, b'{"message":"Request Too Long"}')
        except BadFraming as exc:
            # The next request's start is unknown, so the connection cannot be reused.
            req.close_connection = True
            return _reply(req, exc.status, JSON, json.dumps({"error": exc.code, "message": str(exc)}).encode())
        headers: dict[str, list[str]] = {}
        for k, v in req.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        if self.api_key is not None and not _open(req.command, req.path) and (headers.get("x-api-key") or [""])[0] != self.api_key:
            return _reply(req, 403, JSON, b'{"message":"Forbidden"}')
        event = proxy_event(req.command, req.path, headers, body, req.client_address[0])
        try:
            with self._environment:
                result = self.handler(event, LambdaContext("ApiFunction", event["requestContext"]["requestId"]))
            status = int(result["statusCode"])
            out_headers: dict[str, list[str]] = {k.lower(): [str(v)] for k, v in (result.get("headers") or {}).items()}
            for k, values in (result.get("multiValueHeaders") or {}).items():
                out_headers.setdefault(k.lower(), []).extend(str(v) for v in values)
            raw = result.get("body") or ""
            data = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
        except Exception:  # a failing function is a 502 at the gateway, as on AWS
            traceback.print_exc()
            status, out_headers = 502, {"content-type": ["application/json"]}
            data = json.dumps({"message": "Internal server error"}).encode()
        _reply(req, status, out_headers, b"" if req.command == "HEAD" else data)


def _open(method: str, target: str) -> bool:
    """Whether a request needs no API key: CORS preflights, and the routes the template leaves open."""
    return method == "OPTIONS" or (method == "GET" and urlsplit(target).path in OPEN_PATHS)


def _reply(req: BaseHTTPRequestHandler, status: int, headers: dict[str, list[str]], data: bytes) -> None:
    req.send_response(status)
    for k, values in headers.items():
        if k in ("content-length", "connection", "transfer-encoding"):
            continue
        for v in values:
            req.send_header(k, v)
    req.send_header("Content-Length", str(len(data)))
    if closing(req):
        req.send_header("Connection", "close")
    req.end_headers()
    req.wfile.write(data)
