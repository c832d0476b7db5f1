"""Fixtures for hostile-input tests: a network guard, a trusted origin, stub DNS, bucket snapshots.

Nothing here may send a packet beyond loopback (see ``network.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cv2
import pytest

from pictrace.catalog import sources
from tests.hostile.network import Connects, Origin, StubResolver, TrustOrigin, loopback_only, serve_origin
from tests.hostile.snapshots import snapshot


@pytest.fixture(autouse=True)
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[Connects]:
    """Fail the test if anything in this process connects beyond loopback or looks up a name."""
    with loopback_only(monkeypatch) as seen:
        yield seen
    assert seen.forbidden == [], f"connections beyond loopback: {seen.forbidden}"


@pytest.fixture
def stub_dns(monkeypatch: pytest.MonkeyPatch) -> StubResolver:
    """Route the API's URL fetching through the stub resolver and the origin-trusting policy."""
    resolver = StubResolver()
    monkeypatch.setattr(sources, "RESOLVE", resolver)
    monkeypatch.setattr(sources, "POLICY", TrustOrigin)
    return resolver


@pytest.fixture(scope="session")
def origin() -> Iterator[Origin]:
    with serve_origin() as running:
        yield running


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count pixel decodes (``cv2.imdecode`` calls) anywhere in this process during the test."""
    calls: list[int] = []
    real = cv2.imdecode

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2, "imdecode", counting)
    return calls


@pytest.fixture
def bucket(stack) -> Callable[[], dict[str, str]]:
    """``bucket()`` -> the session stack's bucket as {key: etag}."""
    return lambda: snapshot(stack.s3, stack.bucket)
