"""Hostile image files through every entrance: the HTTP API, catalog/ and incoming/ drops, the local poller.

Each file here once cost a 5xx, a crash or far more memory or CPU than its
size; now each is decoded within its bounds or refused with a 4xx-class
error, and a refused drop never keeps the records beside it from being
handled.
"""

from __future__ import annotations

import json
import struct
import zlib
from urllib.parse import quote_plus

import pytest

from pictrace.catalog import layout
from tests.hostile import corpus as c
from tests.hostile.snapshots import snapshot

PHOTO = c.photo("chelsea", 160, 120)
LONG8 = c.exif_long8(6)

# Files whose EXIF carries an entry typed LONG8, which only BigTIFF defines: still good images.
LONG8_IMAGES = {
    "jpeg": (c.jpeg_with_exif_block(c.jpeg(PHOTO), LONG8), "image/jpeg"),
    "png": (c.png_with_exif_block(c.png(PHOTO), LONG8), "image/png"),
    "webp": (c.webp_with_exif_block(c.webp(PHOTO), 160, 120, LONG8), "image/webp"),
}


def png_16_bit_rgba_header(width: int, height: int) -> bytes:
    """A 16-bit RGBA PNG header with a token of pixel data: refused from the header, so nothing more is needed."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + c.png_chunk(b"IHDR", ihdr) + c.png_chunk(b"IDAT", zlib.compress(bytes(64)))


# Files refused before any pixel is decoded: (bytes, status, error code).
REFUSED = {
    "tiff-repeated-size-tags": (c.tiff_grey_deflate(4000, 4000, claimed=(64, 48)), 422, "corrupt_image"),
    "jpeg-too-many-scans": (c.jpeg_repeated_scans(400, 300, 200), 422, "image_too_complex"),
    "png-16-bit-rgba-49-mp": (png_16_bit_rgba_header(7000, 7000), 413, "image_too_large"),
}


def drop_event(*keys: str) -> dict:
    """An S3 ObjectCreated event with one record per key, as S3 batches them."""
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "pictrace-catalog"}, "object": {"key": quote_plus(key, safe="/")}},
            }
            for key in keys
        ]
    }


@pytest.mark.parametrize("fmt", LONG8_IMAGES)
def test_exif_typed_long8_is_added_and_searched(api, empty_catalog, fmt):
    data, ctype = LONG8_IMAGES[fmt]
    added = api.post("/images", data, ctype)
    assert added.status == 201, added.body
    found = api.post("/search?k=1", data, ctype)
    assert found.status == 200, found.body
    assert found.body["results"][0]["id"] == added.body["ids"][0]


@pytest.mark.parametrize("name", REFUSED)
def test_costly_files_are_refused_with_a_4xx(api, stack, name):
    data, status, code = REFUSED[name]
    before = snapshot(stack.s3, stack.bucket)
    for path in ("/images", "/search"):
        reply = api.post(path, data, "application/octet-stream")
        assert (reply.status, reply.body.get("error")) == (status, code), reply.body
    assert snapshot(stack.s3, stack.bucket) == before


def test_one_catalog_event_with_hostile_records_indexes_the_good_ones(stack, empty_catalog):
    drops = {
        "catalog/hostile/long8.jpg": LONG8_IMAGES["jpeg"][0],
        "catalog/hostile/sizes.tiff": REFUSED["tiff-repeated-size-tags"][0],
        "catalog/hostile/scans.jpg": REFUSED["jpeg-too-many-scans"][0],
        "catalog/hostile/good.jpg": c.jpeg(c.photo("astronaut", 160, 120)),
    }
    for key, body in drops.items():
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    out = stack.invoke("IndexFunction", drop_event(*drops))
    assert sorted(i["key"] for i in out["indexed"]) == ["catalog/hostile/good.jpg", "catalog/hostile/long8.jpg"]
    assert {r["key"]: r["error"] for r in out["rejected"]} == {
        "catalog/hostile/sizes.tiff": "corrupt_image",
        "catalog/hostile/scans.jpg": "image_too_complex",
    }
    assert out["failed"] == []
    for key in drops:
        stack.s3.delete_object(Bucket=stack.bucket, Key=key)


def test_incoming_drops_each_get_a_result(stack, empty_catalog):
    drops = {
        "incoming/hostile-long8.png": LONG8_IMAGES["png"][0],
        "incoming/hostile-scans.jpg": REFUSED["jpeg-too-many-scans"][0],
        "incoming/hostile-sixteen.png": REFUSED["png-16-bit-rgba-49-mp"][0],
    }
    for key, body in drops.items():
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    out = stack.invoke("SearchTriggerFunction", drop_event(*drops))
    assert sorted(out["results"]) == sorted(layout.result_key(key) for key in drops)
    results = {
        key: json.loads(stack.s3.get_object(Bucket=stack.bucket, Key=layout.result_key(key))["Body"].read())
        for key in drops
    }
    assert "results" in results["incoming/hostile-long8.png"]
    assert results["incoming/hostile-scans.jpg"]["error"] == "image_too_complex"
    assert results["incoming/hostile-sixteen.png"]["error"] == "image_too_large"
    for key in drops:
        stack.s3.delete_object(Bucket=stack.bucket, Key=key)
        stack.s3.delete_object(Bucket=stack.bucket, Key=layout.result_key(key))


def test_local_poller_indexes_every_good_drop_beside_hostile_ones(stack, empty_catalog):
    stack.sync_notifications()  # forget what earlier tests left
    drops = {
        "catalog/poll/long8.webp": LONG8_IMAGES["webp"][0],
        "catalog/poll/sizes.tiff": REFUSED["tiff-repeated-size-tags"][0],
        "catalog/poll/good.jpg": c.jpeg(c.photo("rocket", 160, 120)),
    }
    for key, body in drops.items():
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    stack.sync_notifications()
    names = {empty_catalog.get(image_id).name for image_id in empty_catalog.ids()}
    assert {"poll/long8.webp", "poll/good.jpg"} <= names
    assert "poll/sizes.tiff" not in names
    for key in drops:
        stack.s3.delete_object(Bucket=stack.bucket, Key=key)
    stack.sync_notifications()


def test_a_record_without_a_key_does_not_stop_the_search_trigger(stack, empty_catalog):
    key = "incoming/hostile-after-a-bad-record.jpg"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=c.jpeg(PHOTO))
    event = drop_event(key)
    event["Records"].insert(0, {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"})
    out = stack.invoke("SearchTriggerFunction", event)
    assert out == {"results": [layout.result_key(key)]}
    stack.s3.delete_object(Bucket=stack.bucket, Key=key)
    stack.s3.delete_object(Bucket=stack.bucket, Key=layout.result_key(key))
