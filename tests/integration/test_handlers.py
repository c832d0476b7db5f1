"""Every function, invoked with its event from events/ through boto3 and the local Lambda endpoint."""

import json
from pathlib import Path

import pytest

EVENTS = Path(__file__).resolve().parents[2] / "events"
COFFEE = (EVENTS / "coffee-small.jpg").read_bytes()
QUERY = (EVENTS / "coffee-query.jpg").read_bytes()


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def call_api(stack, name: str) -> tuple[int, dict]:
    resp = stack.invoke("ApiFunction", event(name))
    return resp["statusCode"], json.loads(resp["body"])


@pytest.fixture
def coffee_added(stack, empty_catalog):
    status, body = call_api(stack, "api-add-image.json")
    assert status == 201, body
    return body["ids"][0]


def test_health(stack):
    status, body = call_api(stack, "api-health.json")
    assert status == 200 and body["status"] == "ok"


def test_add_is_idempotent_and_readable(stack, coffee_added):
    import hashlib

    assert coffee_added == hashlib.sha256(COFFEE).hexdigest()
    status, body = call_api(stack, "api-add-image.json")
    assert status == 200 and body["images"][0]["created"] is False
    status, body = call_api(stack, "api-get-image.json")
    assert status == 200 and body["id"] == coffee_added and body["width"] == 160
    status, body = call_api(stack, "api-list-images.json")
    assert status == 200 and body["total"] == 1 and body["images"][0]["id"] == coffee_added


def test_search_then_score_one_batch(stack, coffee_added):
    status, body = call_api(stack, "api-search.json")
    assert status == 200, body
    assert body["results"][0]["id"] == coffee_added
    assert body["results"][0]["transform"] == "rot90"
    assert body["partial"] is False and body["counts"]["batches"] == 1
    # The search stored the query's features; the scoring events name them.
    found = stack.invoke("ScoreFunction", event("score-pending-batch.json"))
    assert [c["id"] for c in found["candidates"]] == [coffee_added] and found["rows"] == 1
    rerank = event("score-rerank.json")
    assert found["candidates"] == rerank["candidates"]  # the event file is what phase 1 answers
    scored = stack.invoke("ScoreFunction", rerank)
    assert [m["id"] for m in scored["matches"]] == [coffee_added]
    assert scored["matches"][0]["score"] == pytest.approx(body["results"][0]["score"], abs=1e-6)


def test_bad_requests_are_4xx_with_a_reason(stack):
    status, body = call_api(stack, "api-search-bad-k.json")
    assert status == 400 and body["error"] == "bad_request" and "k must be" in body["message"]
    status, body = call_api(stack, "api-add-url-blocked.json")
    assert status == 400 and body["error"] == "blocked_url"


def test_index_function_follows_catalog_drops(stack, empty_catalog):
    key = "catalog/demo/coffee small.jpg"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=QUERY)
    out = stack.invoke("IndexFunction", event("index-object-created.json"))
    assert [i["key"] for i in out["indexed"]] == [key]
    image_id = out["indexed"][0]["id"]
    assert empty_catalog.get(image_id).name == "demo/coffee small.jpg"
    again = stack.invoke("IndexFunction", event("index-object-created.json"))
    assert again["indexed"] == [] and again["duplicates"][0]["id"] == image_id
    stack.s3.delete_object(Bucket=stack.bucket, Key=key)
    out = stack.invoke("IndexFunction", event("index-object-removed.json"))
    assert out["removed"] == [{"key": key, "id": image_id}]
    assert empty_catalog.find(image_id) is None


def test_index_function_reports_non_images(stack, empty_catalog):
    stack.s3.put_object(Bucket=stack.bucket, Key="catalog/demo/coffee small.jpg", Body=b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    out = stack.invoke("IndexFunction", event("index-object-created.json"))
    assert out["indexed"] == [] and out["rejected"][0]["error"] == "unsupported_format"
    stack.s3.delete_object(Bucket=stack.bucket, Key="catalog/demo/coffee small.jpg")


def test_search_trigger_writes_results(stack, coffee_added):
    stack.s3.put_object(Bucket=stack.bucket, Key="incoming/query.jpg", Body=QUERY)
    out = stack.invoke("SearchTriggerFunction", event("search-trigger-object-created.json"))
    assert out == {"results": ["results/query.jpg.json"]}
    result = json.loads(stack.s3.get_object(Bucket=stack.bucket, Key="results/query.jpg.json")["Body"].read())
    assert result["results"][0]["id"] == coffee_added and result["source_key"] == "incoming/query.jpg"


def test_search_trigger_writes_the_error_for_a_bad_image(stack, empty_catalog):
    stack.s3.put_object(Bucket=stack.bucket, Key="incoming/query.jpg", Body=b"\xff\xd8\xff\xe0 truncated")
    stack.invoke("SearchTriggerFunction", event("search-trigger-object-created.json"))
    result = json.loads(stack.s3.get_object(Bucket=stack.bucket, Key="results/query.jpg.json")["Body"].read())
    assert result["error"] in ("corrupt_image", "invalid_image")


def test_pack_moves_pending_rows_into_a_partition(stack, coffee_added):
    out = stack.invoke("PackFunction", event("pack-scheduled.json"))
    assert out["packed"] == 1 and out["partitions_written"] == 1 and out["swapped"] is True
    status, body = call_api(stack, "api-search.json")
    assert body["results"][0]["id"] == coffee_added and body["counts"]["candidates"] == 1


def test_the_duplicates_job_runs_from_its_schedule_and_the_api_reads_it(stack, coffee_added):
    out = stack.invoke("DuplicatesFunction", event("duplicates-scheduled.json"))
    assert out["state"] == "done" and len(out["run"]) == 32
    status, body = call_api(stack, "api-duplicates.json")
    assert status == 200 and body["job"] == out
    assert body["scan"]["images"] == 1 and body["groups"] == []  # one image is no group
