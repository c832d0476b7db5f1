"""Presigned uploads: storage itself refuses a file larger than the image limit.

On S3 an upload is a POST form whose signed policy bounds the size
(``content-length-range``), pins the key and the content type; S3 refuses a
file outside it before storing anything.  moto's server stores POSTs without
evaluating their policy, so these tests read the policy S3 evaluates and
send real uploads through moto for what it does check.  The folder store
hands out PUTs, which its object endpoint refuses past its own limit.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone

import boto3
import botocore.config
import pytest

from pictrace.adapters.folder_store import FolderStore
from pictrace.adapters.s3 import S3Store
from pictrace.catalog import layout
from pictrace.catalog.catalog import Catalog
from pictrace.client import upload_request
from pictrace.config import Config
from pictrace.local.objects import ObjectEndpoint

BUCKET = "pictrace-uploads-test"
LIMIT = 1000


@pytest.fixture(scope="module")
def s3() -> Iterator:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
        config=botocore.config.Config(signature_version="s3v4"),
    )
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


def policy_of(ticket: dict) -> dict:
    return json.loads(base64.b64decode(ticket["fields"]["policy"]))


def test_an_s3_upload_is_a_post_whose_policy_bounds_the_size(s3) -> None:
    catalog = Catalog(S3Store(s3, BUCKET), Config(bucket=BUCKET, max_image_bytes=LIMIT, presign_ttl=300))
    ticket = catalog.create_upload("image/png")
    assert ticket["method"] == "POST" and "headers" not in ticket
    assert ticket["max_bytes"] == LIMIT and layout.is_upload_key(ticket["s3_key"])
    policy = policy_of(ticket)
    conditions = policy["conditions"]
    assert ["content-length-range", 1, LIMIT] in conditions
    assert {"key": ticket["s3_key"]} in conditions
    assert {"bucket": BUCKET} in conditions
    assert {"Content-Type": "image/png"} in conditions
    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert 0 < expires.timestamp() - time.time() <= 300 + 5


def test_the_post_stores_the_file_at_the_signed_key_with_its_type(s3) -> None:
    store = S3Store(s3, BUCKET)
    key = layout.new_upload_key()
    ticket = store.presign_upload(key, 300, "image/png", LIMIT)
    with urllib.request.urlopen(upload_request(ticket, b"\x89PNG small")) as resp:
        assert resp.status in (200, 204)
    stored = s3.get_object(Bucket=BUCKET, Key=key)
    assert stored["Body"].read() == b"\x89PNG small"
    assert stored["ContentType"] == "image/png"


def test_the_folder_store_refuses_an_oversized_upload(tmp_path) -> None:
    store = FolderStore(tmp_path / "store")
    endpoint = ObjectEndpoint(store, host="127.0.0.1", max_bytes=LIMIT).start()
    try:
        store.url = endpoint.url
        catalog = Catalog(store, Config(max_image_bytes=LIMIT))
        ticket = catalog.create_upload("image/png")
        assert ticket["method"] == "PUT" and ticket["headers"] == {"Content-Type": "image/png"}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(upload_request(ticket, b"x" * (LIMIT + 1))).read()
        assert refused.value.code == 400
        assert not store.exists(ticket["s3_key"])
        with urllib.request.urlopen(upload_request(ticket, b"x" * LIMIT)) as resp:
            assert resp.status == 200
        assert store.get(ticket["s3_key"]) == b"x" * LIMIT
    finally:
        endpoint.stop()
