"""One contract, two stores: S3 (moto's server, over HTTP) and the local folder store.

Every behaviour the catalog relies on from its store is asserted here, once,
and run against both, so the folder ``pictrace serve`` persists to behaves
as S3 does: ETags, conditional writes and deletes (also when threads race),
listing order and paging, size limits, and presigned URLs.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
import uuid

import boto3
import pytest

from pictrace.adapters.folder_store import FolderStore
from pictrace.adapters.s3 import PreconditionFailed, S3Store
from pictrace.errors import NotFound, PayloadTooLarge
from pictrace.local.objects import ObjectEndpoint


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["s3", "folder"])
def store(request, tmp_path):
    if request.param == "s3":
        client = boto3.client(
            "s3", endpoint_url=request.getfixturevalue("moto_url"), region_name="us-east-1",
            aws_access_key_id="contract", aws_secret_access_key="contract",
        )
        bucket = f"contract-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        yield S3Store(client, bucket)
        return
    folder = FolderStore(tmp_path / "store")
    endpoint = ObjectEndpoint(folder).start()
    folder.url = endpoint.url
    try:
        yield folder
    finally:
        endpoint.stop()


def test_put_then_get_gives_the_bytes_and_one_etag_everywhere(store):
    etag = store.put("index/records/a.json", b'{"id": "a"}', content_type="application/json")
    assert store.get_with_etag("index/records/a.json") == (b'{"id": "a"}', etag)
    assert store.get("index/records/a.json") == b'{"id": "a"}'
    assert store.etag("index/records/a.json") == etag
    assert store.list_etags("index/records/") == {"index/records/a.json": etag}
    assert store.size("index/records/a.json") == 11 and store.exists("index/records/a.json")


def test_etags_follow_the_bytes(store):
    first = store.put("k", b"one")
    assert store.put("other", b"one") == first  # an MD5 of the bytes, as S3 gives for a PUT
    assert store.put("k", b"two") != first
    assert store.put("empty", b"") != first


def test_a_missing_object(store):
    with pytest.raises(NotFound):
        store.get("nothing/here")
    with pytest.raises(NotFound):
        store.size("nothing/here")
    assert store.etag("nothing/here") is None and not store.exists("nothing/here")
    store.delete("nothing/here")  # deleting what is not there is not an error
    assert store.delete_if_match("nothing/here", '"0"') is False


def test_max_bytes_refuses_a_larger_object(store):
    store.put("big", b"x" * 1000)
    with pytest.raises(PayloadTooLarge):
        store.get("big", max_bytes=999)
    assert store.get("big", max_bytes=1000) == b"x" * 1000


def test_if_none_match_writes_only_a_new_key(store):
    etag = store.put("manifest", b"v1", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put("manifest", b"v2", if_none_match=True)
    assert store.get_with_etag("manifest") == (b"v1", etag)


def test_if_match_writes_only_over_the_version_read(store):
    v1 = store.put("manifest", b"v1")
    v2 = store.put("manifest", b"v2", if_match=v1)
    with pytest.raises(PreconditionFailed):
        store.put("manifest", b"v3", if_match=v1)  # v1 is no longer there
    assert store.get_with_etag("manifest") == (b"v2", v2)
    store.delete("manifest")
    with pytest.raises(PreconditionFailed):
        store.put("manifest", b"v4", if_match=v2)  # deleted since it was read
    assert not store.exists("manifest")


def test_delete_if_match_deletes_only_the_version_read(store):
    v1 = store.put("pending/x", b"row 1")
    store.put("pending/x", b"row 2")
    with pytest.raises(PreconditionFailed):
        store.delete_if_match("pending/x", v1)
    assert store.get("pending/x") == b"row 2"
    assert store.delete_if_match("pending/x", store.etag("pending/x")) is True
    assert not store.exists("pending/x")


def test_listing_is_sorted_by_key_and_pages_with_start_after_and_limit(store):
    keys = ["p/b", "p/a/z", "p/a", "p/a b", "p/é", "p/A", "p/a/y/deep", "q/a", "pa", "p/-", "p/~"]
    for key in keys:
        store.put(key, key.encode())
    under = sorted((k for k in keys if k.startswith("p/")), key=lambda k: k.encode())
    assert list(store.list("p/")) == under
    assert list(store.list("p/a")) == [k for k in under if k.startswith("p/a")]
    assert list(store.list("p/", start_after="p/a/z")) == under[under.index("p/a/z") + 1 :]
    assert list(store.list("p/", limit=3)) == under[:3]
    assert list(store.list("", limit=100)) == sorted(keys, key=lambda k: k.encode())
    assert store.get("p/a") == b"p/a" and store.get("p/a/z") == b"p/a/z"  # a key and a "folder" of the same name


def test_listing_sees_every_write_and_delete_at_once(store):
    for i in range(30):
        store.put(f"index/pending/{i:03d}", b"row")
    store.delete("index/pending/007")
    store.delete_many([f"index/pending/{i:03d}" for i in range(20, 30)])
    assert list(store.list("index/pending/")) == [f"index/pending/{i:03d}" for i in range(20) if i != 7]


def test_of_racing_creators_exactly_one_wins(store):
    outcomes = race(8, lambda i: store.put("tombstone", f"writer {i}".encode(), if_none_match=True))
    assert len(outcomes["won"]) == 1 and len(outcomes["lost"]) == 7
    assert store.get("tombstone") == f"writer {outcomes['won'][0]}".encode()


def test_of_racing_swaps_of_one_version_exactly_one_wins(store):
    base = store.put("index/manifest.json", b"base")
    outcomes = race(8, lambda i: store.put("index/manifest.json", f"swap {i}".encode(), if_match=base))
    assert len(outcomes["won"]) == 1 and len(outcomes["lost"]) == 7
    assert store.get("index/manifest.json") == f"swap {outcomes['won'][0]}".encode()


def test_a_presigned_get_gives_the_bytes_and_a_presigned_put_stores_them(store):
    store.put("catalog/photo.jpg", b"\xff\xd8 image", content_type="image/jpeg")
    with urllib.request.urlopen(store.presign_get("catalog/photo.jpg", 60), timeout=10) as resp:
        assert resp.read() == b"\xff\xd8 image"
        assert resp.headers["Content-Type"] == "image/jpeg"
    put = urllib.request.Request(
        store.presign_put("uploads/tok", 60, "image/png"), data=b"\x89PNG upload", method="PUT",
        headers={"Content-Type": "image/png"},
    )
    urllib.request.urlopen(put, timeout=10).close()
    assert store.get("uploads/tok") == b"\x89PNG upload"


def test_a_presigned_url_is_only_good_for_its_key(store):
    if isinstance(store, S3Store):
        pytest.skip("moto does not check signatures (S3 does)")
    store.put("catalog/a.jpg", b"a")
    store.put("catalog/b.jpg", b"b")
    url = store.presign_get("catalog/a.jpg", 60)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url.replace("catalog/a.jpg", "catalog/b.jpg"), timeout=10)
    assert refused.value.code == 403


def race(n: int, attempt) -> dict[str, list[int]]:
    """Run ``attempt(i)`` for ``i < n`` on ``n`` threads released together; who won and who lost."""
    start = threading.Barrier(n)
    outcomes: dict[str, list[int]] = {"won": [], "lost": []}
    lock = threading.Lock()

    def run(i: int) -> None:
        start.wait()
        try:
            attempt(i)
            result = "won"
        except PreconditionFailed:
            result = "lost"
        with lock:
            outcomes[result].append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return outcomes


def _create_all(root: str, keys: list[str], writer: int) -> list[str]:
    """In a child process: try to create every key; the ones this writer won."""
    store, won = FolderStore(root), []
    for key in keys:
        try:
            store.put(key, f"writer {writer}".encode(), if_none_match=True)
            won.append(key)
        except PreconditionFailed:
            pass
    return won


def test_folder_store_conditional_writes_hold_across_processes(tmp_path):
    # The local stack's API and scoring functions run in worker processes that share one folder.
    import multiprocessing

    keys = [f"index/tombstones/{i:02d}" for i in range(12)]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.starmap(_create_all, [(str(tmp_path), keys, w) for w in range(3)])
    winners = [key for won in results for key in won]
    assert sorted(winners) == keys  # every key created exactly once
    store = FolderStore(tmp_path)
    for writer, won in enumerate(results):
        assert all(store.get(key) == f"writer {writer}".encode() for key in won)
