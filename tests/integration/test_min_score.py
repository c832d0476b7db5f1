"""min_score on POST /search: results below it are left out, an empty list is a valid answer."""

import json
import urllib.parse
import urllib.request

import numpy as np
import pytest

from pictrace.client import upload_request
from tests.conftest import jpeg, sample_bgr
from tests.integration.test_api import add, multipart


@pytest.fixture
def three(api, empty_catalog) -> dict[str, str]:
    return {n: add(api, n) for n in ("chelsea", "coffee", "rocket")}


def test_an_unrelated_query_above_a_threshold_finds_nothing(api, three):
    moon = jpeg(sample_bgr("moon"))
    everything = api.post("/search?k=3", moon, "image/jpeg")
    assert everything.status == 200 and len(everything.body["results"]) == 3
    best = everything.body["results"][0]["score"]
    assert best < 0.5  # the moon resembles none of them

    none = api.post("/search?k=3&min_score=0.5", moon, "image/jpeg")
    assert none.status == 200
    assert none.body["results"] == [] and none.body["min_score"] == 0.5
    assert none.body["counts"]["candidates"] == 3


def test_the_threshold_keeps_the_real_match_and_ranks_from_one(api, three):
    query = jpeg(np.ascontiguousarray(sample_bgr("rocket")[:, ::-1]))
    reply = api.post("/search?k=3&min_score=0.5", query, "image/jpeg")
    assert reply.status == 200
    assert [r["id"] for r in reply.body["results"]] == [three["rocket"]]
    assert reply.body["results"][0]["rank"] == 1 and reply.body["results"][0]["score"] >= 0.5


def test_min_score_in_a_json_body_or_a_multipart_field(api, three):
    reply = api.post("/uploads", {"content_type": "image/jpeg"})
    data = jpeg(sample_bgr("moon"))
    urllib.request.urlopen(upload_request(reply.body, data)).read()
    found = api.post("/search", {"s3_key": reply.body["s3_key"], "min_score": 0.6})
    assert found.status == 200 and found.body["results"] == [] and found.body["min_score"] == 0.6
    body, ctype = multipart("file", "moon.jpg", data)
    boundary = ctype.split("=", 1)[1]
    field = f'--{boundary}\r\nContent-Disposition: form-data; name="min_score"\r\n\r\n0.6\r\n'.encode()
    found = api.post("/search", field + body, ctype)
    assert found.status == 200 and found.body["results"] == [] and found.body["min_score"] == 0.6


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "nan", "inf", "1e-1", "half", "٠.٥", "0x1"])
def test_a_bad_min_score_is_a_400_and_stores_no_query(api, stack, three, bad):
    def queries() -> int:
        listed = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix="queries/")
        return listed.get("KeyCount", 0)

    before = queries()
    reply = api.post(f"/search?min_score={urllib.parse.quote(bad)}", jpeg(sample_bgr("horse")), "image/jpeg")
    assert reply.status == 400, reply.body
    assert reply.body["error"] == "bad_request" and "min_score" in reply.body["message"]
    assert queries() == before


@pytest.mark.parametrize("bad", [True, "lots", [0.5], 2, None])
def test_a_bad_min_score_in_json_is_a_400(api, three, bad):
    body = json.dumps({"s3_key": "uploads/" + "0" * 32, "min_score": bad})
    reply = api.post("/search", body.encode(), "application/json")
    if bad is None:  # null is the same as leaving it out
        assert reply.status == 404
    else:
        assert reply.status == 400 and "min_score" in reply.body["message"]
