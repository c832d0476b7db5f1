"""A local stand-in for API Gateway's REST proxy integration.

It turns each HTTP request into the proxy event the API function receives on
AWS (binary media types ``image/*``, ``multipart/form-data`` and
``application/octet-stream`` base64-encoded,
as the template declares them) and turns the function's answer back into an
HTTP response.  Like API Gateway it enforces the 10 MB payload limit, answers
502 when the function fails, and checks ``X-Api-Key`` when a key is set.

Requests are received concurrently but the API function handles one at a
time, as one Lambda execution environment does: Powertools keeps the current
event in shared state, so two invocations at once would read each other's.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from pictrace.local.lambda_endpoint import LambdaContext
from pictrace.local.loopback import LoopbackServer

MAX_PAYLOAD = 10 * 1024 * 1024
DRAIN_LIMIT = 64 * 1024 * 1024
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
    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None) -> None:
        super().__init__(host, port)
        self.handler = handler
        self.api_key = api_key
        self._environment = threading.Lock()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD:
            # Read what was sent (bounded) so the client sees the 413, not a reset.
            _drain(req.rfile, min(length, DRAIN_LIMIT))
            req.close_connection = True
            return _reply(req, 413, {"content-type": ["application/json"]}, b'{"message":"Request Too Long"}')
        body = req.rfile.read(length) if length else b""
        headers: dict[str, list[str]] = {}
        for k, v in req.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        if self.api_key is not None and req.command != "OPTIONS" and (headers.get("x-api-key") or [""])[0] != self.api_key:
            return _reply(req, 403, {"content-type": ["application/json"]}, b'{"message":"Forbidden"}')
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


def _reply(req: BaseHTTPRequestHandler, status: int, headers: dict[str, list[str]], data: bytes) -> None:
    req.send_response(status)
    for k, values in headers.items():
        if k in ("content-length", "connection", "transfer-encoding"):
            continue
        for v in values:
            req.send_header(k, v)
    req.send_header("Content-Length", str(len(data)))
    req.end_headers()
    req.wfile.write(data)


def _drain(stream, length: int) -> None:
    while length > 0:
        chunk = stream.read(min(length, 1 << 20))
        if not chunk:
            return
        length -= len(chunk)
