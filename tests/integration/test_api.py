"""The REST API over real HTTP: catalog lifecycle, uploads, matches, packing."""

import json
import urllib.request
import uuid

import cv2
import numpy as np
import pytest

from pictrace.client import upload_request
from tests.conftest import jpeg, sample_bgr


def add(api, name: str, img=None) -> str:
    reply = api.post("/images", jpeg(sample_bgr(name) if img is None else img), "image/jpeg")
    assert reply.status in (200, 201), reply.body
    return reply.body["ids"][0]


def multipart(field: str, filename: str, data: bytes, ctype: str = "image/jpeg") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
        f"Content-Type: {ctype}\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_added_images_are_searchable_at_once(api, empty_catalog):
    ids = {n: add(api, n) for n in ("astronaut", "coffee", "rocket")}
    reply = api.post("/search?k=2", jpeg(np.ascontiguousarray(sample_bgr("rocket")[:, ::-1])), "image/jpeg")
    assert reply.status == 200
    top = reply.body["results"][0]
    assert top["id"] == ids["rocket"] and top["transform"] == "mirror"
    assert set(top["scores"]) == {"ssim", "orb", "hist", "semantic"}
    # Both images have embeddings, so the score is the mean of all four signals.
    assert top["score"] == pytest.approx(sum(top["scores"].values()) / 4, abs=1e-5)
    assert reply.body["query"]["s3_key"].startswith("queries/")
    assert len(reply.body["results"]) == 2


def test_multipart_upload_keeps_the_filename(api, empty_catalog):
    body, ctype = multipart("file", "my coffee.jpg", jpeg(sample_bgr("coffee")))
    reply = api.post("/images", body, ctype)
    assert reply.status == 201 and reply.body["images"][0]["name"] == "my coffee.jpg"
    body, ctype = multipart("file", "q.jpg", jpeg(sample_bgr("coffee"), quality=40))
    assert api.post("/search", body, ctype).body["results"][0]["name"] == "my coffee.jpg"


def test_delete_takes_effect_for_the_next_search_even_after_packing(api, stack, empty_catalog):
    ids = {n: add(api, n) for n in ("chelsea", "coins")}
    stack.pack_now()  # chelsea now lives in a shard, not only in pending
    assert api.delete(f"/images/{ids['chelsea']}").status == 200
    reply = api.post("/search?k=5", jpeg(sample_bgr("chelsea")), "image/jpeg")
    assert ids["chelsea"] not in [r["id"] for r in reply.body["results"]]
    assert api.get(f"/images/{ids['chelsea']}").status == 404
    assert api.delete(f"/images/{ids['chelsea']}").status == 404
    # re-adding the same bytes brings it back
    assert add(api, "chelsea") == ids["chelsea"]
    reply = api.post("/search?k=1", jpeg(sample_bgr("chelsea")), "image/jpeg")
    assert reply.body["results"][0]["id"] == ids["chelsea"]


def test_listing_pages_through_everything(api, empty_catalog):
    names = ("astronaut", "coffee", "chelsea", "rocket", "camera")
    ids = {add(api, n) for n in names}
    seen, cursor = [], None
    while True:
        reply = api.get("/images?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert reply.status == 200 and reply.body["total"] == len(names)
        seen += [i["id"] for i in reply.body["images"]]
        cursor = reply.body["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids)
    assert api.get("/images?limit=0").status == 400
    assert api.get("/images?cursor=nope").status == 400


def test_get_image_gives_a_working_short_lived_url(api, empty_catalog):
    image_id = add(api, "coffee")
    reply = api.get(f"/images/{image_id}")
    assert reply.status == 200 and reply.body["format"] == "jpeg"
    assert "X-Amz-Expires=300" in reply.body["stored_url"]
    with urllib.request.urlopen(reply.body["stored_url"]) as resp:
        assert resp.read() == jpeg(sample_bgr("coffee"))


def test_presigned_upload_for_large_images(api, empty_catalog):
    reply = api.post("/uploads", {"content_type": "image/png"})
    assert reply.status == 201 and reply.body["s3_key"].startswith("uploads/")
    big = cv2.resize(sample_bgr("astronaut"), (2000, 2000), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(1).integers(0, 40, big.shape, dtype=np.uint8)
    data = cv2.imencode(".png", cv2.add(big, noise))[1].tobytes()
    assert len(data) > 6 * 1024 * 1024  # too big for a request body
    assert api.post("/images", data, "image/png").status == 413
    with urllib.request.urlopen(upload_request(reply.body, data)) as resp:
        assert resp.status in (200, 204)
    added = api.post("/images", {"s3_key": reply.body["s3_key"]})
    assert added.status == 201 and added.body["images"][0]["width"] == 2000
    found = api.post("/search?k=1", {"s3_key": reply.body["s3_key"]})
    assert found.body["results"][0]["id"] == added.body["ids"][0]
    assert api.post("/search", {"s3_key": "uploads/" + "0" * 32}).status == 404
    assert api.post("/search", {"s3_key": "index/manifest.json"}).status == 400


def test_matches_endpoint_returns_keypoint_pairs(api, empty_catalog):
    image_id = add(api, "astronaut")
    query = np.ascontiguousarray(sample_bgr("astronaut")[40:460, 60:480][:, ::-1])
    reply = api.post("/search?k=1", jpeg(query), "image/jpeg")
    sha = reply.body["query"]["sha256"]
    m = api.get(f"/images/{image_id}/matches?query={sha}")
    assert m.status == 200 and m.body["mirrored"] is True
    pairs = np.array(m.body["pairs"])
    assert len(pairs) > 50 and pairs.min() >= 0 and pairs.max() <= 1
    # a mirrored crop: query x runs opposite to the catalog x
    assert np.corrcoef(pairs[:, 0], pairs[:, 2])[0, 1] < -0.9
    assert np.corrcoef(pairs[:, 1], pairs[:, 3])[0, 1] > 0.9
    assert api.get(f"/images/{image_id}/matches?query=bad").status == 400
    assert api.get(f"/images/{image_id}/matches?query={'0' * 64}").status == 404


def test_seed_ranking_is_available(api, empty_catalog):
    ids = {n: add(api, n) for n in ("astronaut", "coffee")}
    reply = api.post("/search?ranking=seed", jpeg(sample_bgr("coffee"), quality=50), "image/jpeg")
    assert reply.status == 200 and reply.body["ranking"] == "seed"
    assert reply.body["results"][0]["id"] == ids["coffee"]
    assert api.post("/search?ranking=magic", jpeg(sample_bgr("coffee")), "image/jpeg").status == 400


def test_search_of_an_empty_catalog_is_empty_not_an_error(api, empty_catalog):
    reply = api.post("/search", jpeg(sample_bgr("coins")), "image/jpeg")
    assert reply.status == 200 and reply.body["results"] == [] and reply.body["counts"]["candidates"] == 0


def test_cors_and_web_page(api):
    page = api.get("/")
    assert page.status == 200 and "PicTrace" in page.body["_text"]
    pre = api.request("OPTIONS", "/search", headers={"Origin": "https://example.org", "Access-Control-Request-Method": "POST"})
    assert pre.headers.get("access-control-allow-origin") == "*"


def test_unknown_routes_and_methods_are_json_404(api):
    reply = api.get("/nothing-here")
    assert reply.status == 404 and reply.body["error"] == "not_found"


def test_catalog_drop_is_indexed_and_searchable(api, stack, empty_catalog):
    stack.s3.put_object(Bucket=stack.bucket, Key="catalog/drops/moon.jpg", Body=jpeg(sample_bgr("moon")))
    assert stack.sync_notifications() >= 1
    listed = api.get("/images").body["images"]
    assert [i["name"] for i in listed] == ["drops/moon.jpg"]
    reply = api.post("/search?k=1", jpeg(np.rot90(sample_bgr("moon"))), "image/jpeg")
    assert reply.body["results"][0]["name"] == "drops/moon.jpg"
    stack.s3.delete_object(Bucket=stack.bucket, Key="catalog/drops/moon.jpg")
    stack.sync_notifications()
    assert api.get("/images").body["total"] == 0


def test_incoming_drop_writes_results(api, stack, empty_catalog):
    image_id = add(api, "horse")
    stack.s3.put_object(Bucket=stack.bucket, Key="incoming/horse query.png", Body=cv2.imencode(".png", sample_bgr("horse")[::-1])[1].tobytes())
    stack.sync_notifications()
    body = json.loads(stack.s3.get_object(Bucket=stack.bucket, Key="results/horse query.png.json")["Body"].read())
    assert body["results"][0]["id"] == image_id


def test_listing_and_search_carry_short_lived_urls(api, empty_catalog):
    add(api, "rocket")
    item = api.get("/images").body["images"][0]
    assert "X-Amz-Expires=300" in item["stored_url"] and item["expires_in"] == 300
    query = api.post("/search", jpeg(sample_bgr("rocket"), quality=60), "image/jpeg").body["query"]
    with urllib.request.urlopen(query["stored_url"]) as resp:
        assert resp.read() == jpeg(sample_bgr("rocket"), quality=60)
