"""Fixtures shared by every test folder."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from skimage import data as samples

from pictrace.local.stack import LocalStack

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page", "horse", "immunohistochemistry")


def sample_bgr(name: str) -> np.ndarray:
    """A scikit-image sample photograph as BGR uint8."""
    img = getattr(samples, name)()
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)


def jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


@dataclass
class Reply:
    status: int
    body: dict
    headers: dict


class Client:
    """A tiny HTTP client for the local API (real HTTP over loopback)."""

    def __init__(self, base: str, api_key: str | None = None) -> None:
        self.base = base
        self.api_key = api_key

    def request(self, method: str, path: str, body: bytes | dict | None = None, ctype: str | None = None, headers: dict | None = None) -> Reply:
        hdrs = dict(headers or {})
        if isinstance(body, dict):
            body, ctype = json.dumps(body).encode(), "application/json"
        if ctype:
            hdrs["Content-Type"] = ctype
        if self.api_key:
            hdrs.setdefault("X-Api-Key", self.api_key)
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                raw, status, rh = resp.read(), resp.status, {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as err:
            raw, status, rh = err.read(), err.code, {k.lower(): v for k, v in err.headers.items()}
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"_text": raw.decode("utf-8", "replace")}
        return Reply(status, parsed, rh)

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body=None, ctype: str | None = None, **kw) -> Reply:
        return self.request("POST", path, body, ctype, **kw)

    def delete(self, path: str, **kw) -> Reply:
        return self.request("DELETE", path, **kw)


@pytest.fixture(scope="session")
def stack():
    """One embedded local stack (moto S3, local Lambda endpoint, API Gateway emulation) for the session.

    Background polling and packing are off (intervals of an hour); tests call
    ``stack.sync_notifications()`` and ``stack.pack_now()`` when they need them.
    """
    with LocalStack(poll_interval=3600, pack_interval=3600) as st:
        yield st


@pytest.fixture
def api(stack) -> Client:
    return Client(stack.api_url)


@pytest.fixture
def empty_catalog(stack):
    """Delete every catalog image before the test, through the catalog itself."""
    catalog = stack.services.catalog
    for image_id in list(catalog.ids()):
        catalog.delete(image_id)
    stack.pack_now()
    return catalog
