"""Thumbnails: made at ingest, signed in list, record, add and search answers, deleted with the image."""

from __future__ import annotations

import dataclasses
import urllib.request

import cv2
import numpy as np

from pictrace.catalog import layout
from pictrace.core.thumbnail import MAX_THUMB_BYTES, THUMB_SIDE
from tests.conftest import jpeg, sample_bgr


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def side_of(data: bytes) -> int:
    return max(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2])


def test_an_added_image_has_a_small_thumbnail_in_every_answer(api, empty_catalog):
    big = cv2.resize(sample_bgr("astronaut"), (2400, 2400))
    added = api.post("/images", jpeg(big), "image/jpeg")
    assert added.status == 201
    image = added.body["images"][0]
    assert "X-Amz-Expires=300" in image["thumb_url"] and image["expires_in"] == 300
    assert "thumb" not in image  # the stored key is bookkeeping; answers carry the link

    listed = api.get("/images").body["images"][0]
    thumb = fetch(listed["thumb_url"])
    assert thumb[:3] == b"\xff\xd8\xff" and len(thumb) <= MAX_THUMB_BYTES and side_of(thumb) == THUMB_SIDE
    assert len(thumb) * 10 < len(fetch(listed["stored_url"]))
    assert fetch(api.get(f"/images/{image['id']}").body["thumb_url"]) == thumb

    hit = api.post("/search?k=1", jpeg(sample_bgr("astronaut"), quality=60), "image/jpeg").body["results"][0]
    assert hit["id"] == image["id"] and fetch(hit["thumb_url"]) == thumb
    assert "X-Amz-Expires=300" in hit["thumb_url"]


def test_the_thumbnail_goes_with_the_image(api, stack, empty_catalog):
    image_id = api.post("/images", jpeg(sample_bgr("coffee")), "image/jpeg").body["ids"][0]
    assert stack.store.exists(layout.thumb_key(image_id))
    assert api.delete(f"/images/{image_id}").status == 200
    assert not stack.store.exists(layout.thumb_key(image_id))


def test_an_image_catalogued_before_thumbnails_has_none_and_still_lists(api, stack, empty_catalog):
    image_id = api.post("/images", jpeg(sample_bgr("rocket")), "image/jpeg").body["ids"][0]
    catalog = stack.services.catalog
    old = dataclasses.replace(catalog.get(image_id), thumb="")
    stack.store.put(layout.record_key(image_id), old.to_json(), content_type="application/json")
    stack.store.delete(layout.thumb_key(image_id))

    listed = api.get("/images").body["images"][0]
    assert listed["thumb_url"] is None and listed["stored_url"]
    hit = api.post("/search?k=1", jpeg(sample_bgr("rocket")), "image/jpeg").body["results"][0]
    assert hit["id"] == image_id and hit["thumb_url"] is None
    assert api.delete(f"/images/{image_id}").status == 200
