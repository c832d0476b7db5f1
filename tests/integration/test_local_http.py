"""The local API Gateway emulation at the HTTP level: body framing, open routes, draining.

A stand-in API function echoes what it received, so these tests need
neither S3 nor the image engine.  Requests go over raw sockets, because
the defects under test are ones an ordinary HTTP client never produces.
"""

from __future__ import annotations

import base64
import json
import socket
import threading

import pytest

from pictrace.local.api_gateway import ApiGateway

KEY = "gateway-key-3f1"


def echo(event: dict, context) -> dict:
    """An API function that answers with the body it was given (decoded) and its path."""
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    if event["path"] == "/slow":
        release.wait(timeout=10)
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"path": event["path"], "body": body.decode("latin-1")})}


release = threading.Event()


@pytest.fixture
def gateway():
    gw = ApiGateway(echo).start()
    try:
        yield gw
    finally:
        release.set()
        gw.stop()
        release.clear()


def exchange(gw: ApiGateway, raw: bytes, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Send ``raw`` on a fresh connection; the first response's status, headers and body."""
    host, port = gw.server.server_address[:2]
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(raw)
        return read_response(conn.makefile("rb"))


def read_response(stream) -> tuple[int, dict, bytes]:
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, stream.read(int(headers.get("content-length", 0)))


def post(length_headers: str, body: bytes = b"") -> bytes:
    return (f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n{length_headers}\r\n").encode() + body


@pytest.mark.parametrize("value", ["abc", "-1", "+5", " 5x", "0x10", "5_0", "١٢"])
def test_a_malformed_content_length_is_a_400(gateway, value):
    status, headers, body = exchange(gateway, post(f"Content-Length: {value}\r\n", b"hello"))
    assert status == 400
    assert json.loads(body)["error"] == "bad_request"
    assert headers.get("connection") == "close"


def test_two_content_length_headers_are_a_400(gateway):
    for pair in ("Content-Length: 5\r\nContent-Length: 5\r\n", "Content-Length: 5\r\nContent-Length: 2\r\n"):
        status, _, body = exchange(gateway, post(pair, b"hello"))
        assert status == 400 and "more than one Content-Length" in json.loads(body)["message"]


def test_both_framings_at_once_are_a_400(gateway):
    raw = post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")
    assert exchange(gateway, raw)[0] == 400


def test_a_post_without_a_length_is_a_411(gateway):
    status, _, body = exchange(gateway, post(""))
    assert status == 411 and json.loads(body)["error"] == "length_required"


def test_a_chunked_body_is_decoded(gateway):
    chunks = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
    status, _, body = exchange(gateway, post("Transfer-Encoding: chunked\r\n", chunks))
    assert status == 200 and json.loads(body)["body"] == "hello, world"


@pytest.mark.parametrize("chunks", [b"zz\r\nhello\r\n0\r\n\r\n", b"3\r\nhello\r\n0\r\n\r\n"], ids=["bad-size", "overlong"])
def test_a_broken_chunked_body_is_a_400(gateway, chunks):
    assert exchange(gateway, post("Transfer-Encoding: chunked\r\n", chunks))[0] == 400


def test_an_unknown_transfer_coding_is_a_400(gateway):
    assert exchange(gateway, post("Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"))[0] == 400


def test_a_well_framed_body_still_passes_and_the_connection_is_reused(gateway):
    host, port = gateway.server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as conn:
        stream = conn.makefile("rb")
        for text in (b"one", b"second"):
            conn.sendall(post(f"Content-Length: {len(text)}\r\n", text))
            status, _, body = read_response(stream)
            assert status == 200 and json.loads(body)["body"] == text.decode()


def test_with_a_key_the_page_and_health_stay_open_and_the_rest_is_locked(gateway):
    gateway.api_key = KEY
    get = "GET {} HTTP/1.1\r\nHost: x\r\n{}\r\n"
    for path in ("/", "/health", "/health?probe=1"):
        assert exchange(gateway, get.format(path, "").encode())[0] == 200, path
    for path in ("/images", "/healthz", "/health/x"):
        assert exchange(gateway, get.format(path, "").encode())[0] == 403, path
    assert exchange(gateway, get.format("/images", f"X-Api-Key: {KEY}\r\n").encode())[0] == 200
    # Only GET is open: a POST to an open path needs the key like any other.
    assert exchange(gateway, post("Content-Length: 0\r\n").replace(b"/echo", b"/health"))[0] == 403


def test_stop_finishes_a_request_in_flight_and_refuses_new_connections(gateway):
    host, port = gateway.server.server_address[:2]
    slow = socket.create_connection((host, port), timeout=10)
    idle = socket.create_connection((host, port), timeout=10)  # a keep-alive connection between requests
    slow.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: gateway.in_flight == 1)
    stopper = threading.Thread(target=gateway.stop)
    stopper.start()
    wait_until(lambda: gateway._draining)
    assert stopper.is_alive()  # still waiting for the slow request
    release.set()
    status, headers, body = read_response(slow.makefile("rb"))
    stopper.join(timeout=10)
    assert not stopper.is_alive()
    assert status == 200 and json.loads(body)["path"] == "/slow"
    assert headers.get("connection") == "close"
    assert idle.recv(1) == b""  # the idle connection was closed, not left hanging
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2).close()
    slow.close()
    idle.close()


def wait_until(predicate, timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached")


def test_the_lambda_endpoint_refuses_a_malformed_length_instead_of_dropping_the_connection():
    from pictrace.local.lambda_endpoint import LambdaEndpoint

    endpoint = LambdaEndpoint({"Echo": lambda event, context: event}).start()
    try:
        path = "/2015-03-31/functions/Echo/invocations"
        status, _, body = exchange(endpoint, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".encode())
        assert status == 400 and "Content-Length" in json.loads(body)["message"]
        status, _, body = exchange(endpoint, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{{\"a\":1}}".encode())
        assert status == 200 and json.loads(body) == {"a": 1}
    finally:
        endpoint.stop()
