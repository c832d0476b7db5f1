"""POST /compare: two images in, the pair's signals, score, transform and keypoints out."""

import json
import urllib.request
import uuid

import numpy as np
import pytest

from pictrace.client import upload_request
from tests.conftest import jpeg, sample_bgr
from tests.integration.test_api import add


def form(**fields: bytes | str) -> tuple[bytes, str]:
    """multipart/form-data: bytes become file fields, text plain fields."""
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = f'Content-Disposition: form-data; name="{name}"; filename="{name}.jpg"\r\nContent-Type: image/jpeg'
            out += f"--{boundary}\r\n{head}\r\n\r\n".encode() + value + b"\r\n"
        else:
            out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def mirrored_crop(name: str) -> bytes:
    img = sample_bgr(name)
    return jpeg(np.ascontiguousarray(img[30:-30, 40:-20][:, ::-1]), quality=70)


def test_two_uploaded_files_give_the_signals_of_a_search(api, empty_catalog):
    body, ctype = form(a=mirrored_crop("astronaut"), b=jpeg(sample_bgr("astronaut")))
    reply = api.post("/compare", body, ctype)
    assert reply.status == 200, reply.body
    r = reply.body
    assert r["transform"] == "mirror" and r["score"] > 0.6
    assert set(r["scores"]) == {"ssim", "orb", "hist", "semantic"} and r["scores"]["semantic"] > 0.8
    assert r["score"] == pytest.approx(sum(r["scores"].values()) / 4, abs=1e-5)
    kp = r["keypoints"]
    assert kp["mirrored"] is True and kp["count"] > 50
    assert kp["shown"] == len(kp["pairs"]) == min(kp["count"], 200)
    pairs = np.array(kp["pairs"])
    assert pairs.min() >= 0 and pairs.max() <= 1
    assert np.corrcoef(pairs[:, 0], pairs[:, 2])[0, 1] < -0.9  # mirrored: x runs the other way
    assert r["a"]["name"] == "a.jpg" and r["b"]["format"] == "jpeg" and r["b"]["width"] == 512

    # The same pair found by a search scores the same.
    image_id = add(api, "astronaut")
    found = api.post("/search?k=1", mirrored_crop("astronaut"), "image/jpeg").body["results"][0]
    assert found["id"] == image_id
    assert (found["score"], found["scores"], found["transform"]) == (r["score"], r["scores"], r["transform"])


def test_sides_named_by_id_and_upload_key_in_json(api, empty_catalog):
    coffee = add(api, "coffee")
    ticket = api.post("/uploads", {"content_type": "image/jpeg"}).body
    urllib.request.urlopen(upload_request(ticket, jpeg(sample_bgr("coins")))).read()

    reply = api.post("/compare", {"a": {"s3_key": ticket["s3_key"]}, "b": {"id": coffee}})
    assert reply.status == 200, reply.body
    assert reply.body["b"]["id"] == coffee
    assert reply.body["a"]["s3_key"] == ticket["s3_key"]
    assert reply.body["score"] < 0.5  # coins are not coffee

    same = api.post("/compare", {"a": {"id": coffee}, "b": {"id": coffee}})
    assert same.status == 200 and same.body["score"] > 0.99 and same.body["transform"] == "identity"
    # A text field of a multipart form names an image the same way.
    body, ctype = form(a=jpeg(sample_bgr("coffee"), quality=50), b=coffee)
    mixed = api.post("/compare", body, ctype)
    assert mixed.status == 200 and mixed.body["score"] > 0.8 and mixed.body["b"]["id"] == coffee


@pytest.mark.parametrize(
    "body, status",
    [
        ({"a": {"id": "0" * 64}, "b": {"id": "0" * 64}}, 404),
        ({"a": {"id": "nope"}, "b": {"url": "https://example.org/x.jpg"}}, 400),
        ({"a": {"url": "https://example.org/x.jpg"}}, 400),
        ({"a": {"url": "x", "id": "0" * 64}, "b": {"id": "0" * 64}}, 400),
        ({"a": "https://example.org/x.jpg", "b": {"id": "0" * 64}}, 400),
        ({"a": {"url": 5}, "b": {"id": "0" * 64}}, 400),
        ({"a": {"s3_key": "index/manifest.json"}, "b": {"id": "0" * 64}}, 400),
        ({"a": {"url": "ftp://example.org/x.jpg"}, "b": {"id": "0" * 64}}, 400),
        ({"a": {"url": "http://127.0.0.1:9/x.jpg"}, "b": {"id": "0" * 64}}, 400),  # blocked_url
    ],
)
def test_bad_sides_are_4xx_json(api, empty_catalog, body, status):
    reply = api.post("/compare", body)
    assert reply.status == status, reply.body
    assert set(reply.body) >= {"error", "message"}


def test_bad_forms_and_images_are_4xx(api, empty_catalog):
    body, ctype = form(a=jpeg(sample_bgr("coffee")))
    assert api.post("/compare", body, ctype).status == 400  # b is missing
    body, ctype = form(a=jpeg(sample_bgr("coffee")), b=b"not an image at all")
    reply = api.post("/compare", body, ctype)
    assert reply.status in (415, 422) and reply.body["error"] in ("unsupported_format", "corrupt_image", "invalid_image")
    assert api.post("/compare", jpeg(sample_bgr("coffee")), "image/jpeg").status == 400
    assert api.post("/compare", b"[1, 2]", "application/json").status == 400
    assert api.post("/compare?ranking=best", {"a": {"id": "0" * 64}, "b": {"id": "0" * 64}}).status == 400
    assert api.get("/compare").status in (404, 405)


def test_compare_stores_nothing(api, stack, empty_catalog):
    def keys() -> list[str]:
        listed = stack.s3.list_objects_v2(Bucket=stack.bucket)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    before = keys()
    body, ctype = form(a=jpeg(sample_bgr("camera")), b=jpeg(sample_bgr("horse")))
    assert api.post("/compare", body, ctype).status == 200
    assert keys() == before
