"""``pictrace serve`` with a data folder: a restart keeps the catalog, a kill -9 leaves it consistent.

The stacks run in child processes (as ``pictrace serve`` does, with worker
processes for the API), since two stacks in one process would share its
environment.  A child started by :func:`driven` serves with
``serve.running`` and reads commands on stdin (``pack``, ``quit``), so a
test can fold pending rows into shards without waiting for the schedule.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import pytest

from pictrace.adapters.folder_store import FolderStore
from pictrace.catalog import layout
from tests.cli.conftest import closed_port
from tests.cli.test_cli_serve import clean_env
from tests.conftest import Client, jpeg, sample_bgr

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

DRIVER = """
import json, sys
from pictrace.local import serve
with serve.running("127.0.0.1", int(sys.argv[1]), data_dir=sys.argv[2], workers=2) as stack:
    print(json.dumps({"api": stack.api_url}), flush=True)
    for line in sys.stdin:
        if line.strip() == "pack":
            print(json.dumps(stack.pack_now()), flush=True)
        elif line.strip() == "quit":
            break
"""


class Driven:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.api = Client(json.loads(proc.stdout.readline())["api"])

    def pack(self) -> dict:
        self.proc.stdin.write("pack\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())


@contextmanager
def driven(data: Path) -> Iterator[Driven]:
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(closed_port()), str(data)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=REPO,
    )
    try:
        yield Driven(proc)
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def photos(n: int) -> list[bytes]:
    """``n`` distinct JPEGs: crops of four sample photos at different offsets."""
    bases = [cv2.resize(sample_bgr(name), (320, 240)) for name in ("astronaut", "coffee", "chelsea", "rocket")]
    return [jpeg(bases[i % 4][i // 4 * 3 : i // 4 * 3 + 200, i // 4 * 5 : i // 4 * 5 + 260]) for i in range(n)]


def kept(data: Path) -> dict[str, str]:
    """What a restart must keep: originals, records, features, partitions, the manifest and queries, with ETags."""
    store = FolderStore(data / "store")
    prefixes = (layout.CATALOG, layout.RECORDS, layout.FEATURES, layout.PENDING, layout.QUERIES, "index/partitions/")
    out = {k: e for prefix in prefixes for k, e in store.list_etags(prefix).items()}
    out.update({k: e for k, e in store.list_etags("index/manifest").items()})
    return out


def ranked(reply) -> list[tuple[str, float]]:
    assert reply.status == 200, reply.body
    return [(r["id"], r["score"]) for r in reply.body["results"]]


def test_a_restart_keeps_every_image_record_shard_and_query(tmp_path):
    data = tmp_path / "data"
    images = photos(6)
    with driven(data) as stack:
        ids = []
        for image in images[:5]:
            reply = stack.api.post("/images", image, "image/jpeg")
            assert reply.status == 201, reply.body
            ids += reply.body["ids"]
        stack.pack()
        added = stack.api.post("/images", images[5], "image/jpeg")  # after the pack: a pending row
        assert added.status == 201
        assert stack.api.delete(f"/images/{ids[1]}").status == 200
        before_search = ranked(stack.api.post("/search?k=5", images[0], "image/jpeg"))
        before_list = stack.api.get("/images?limit=50").body
    before = kept(data)
    assert any(k.startswith("index/partitions/") for k in before) and any(k.startswith(layout.QUERIES) for k in before)

    with driven(data) as stack:
        assert kept(data) == before
        listed = stack.api.get("/images?limit=50").body
        assert sorted(i["id"] for i in listed["images"]) == sorted(i["id"] for i in before_list["images"])
        assert listed["total"] == 5 and ids[1] not in {i["id"] for i in listed["images"]}
        assert ranked(stack.api.post("/search?k=5", images[0], "image/jpeg")) == before_search
        # The stack goes on working on the kept catalog.
        assert stack.api.post("/images", images[1], "image/jpeg").status == 201
        assert stack.api.get("/images?limit=50").body["total"] == 6


def test_a_second_stack_on_the_same_folder_is_refused(tmp_path):
    data = tmp_path / "data"
    with driven(data):
        proc = subprocess.run(
            [sys.executable, "-m", "pictrace", "serve", "--no-demo", "--port", str(closed_port()), "--data", str(data)],
            capture_output=True, text=True, env=clean_env(), cwd=REPO, timeout=120,
        )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"pictrace: error: the data folder {data} is in use by another `pictrace serve`"


def test_kill_9_during_adds_loses_at_most_what_was_in_flight(tmp_path):
    data = tmp_path / "data"
    port = closed_port()
    command = [sys.executable, "-m", "pictrace", "serve", "--no-demo", "--port", str(port), "--data", str(data)]
    # Its own process group, so the kill takes the API workers down mid-request too.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
                            cwd=REPO, start_new_session=True)
    images = photos(48)
    acknowledged: list[str] = []
    enough = threading.Event()
    lock = threading.Lock()
    try:
        assert proc.stdout.readline().startswith("web page: ")
        api = Client(f"http://127.0.0.1:{port}")

        def adder(mine: list[bytes]) -> None:
            for image in mine:
                try:
                    reply = api.post("/images", image, "image/jpeg")
                except OSError:
                    return  # the stack is gone
                if reply.status == 201:
                    with lock:
                        acknowledged.extend(reply.body["ids"])
                        if len(acknowledged) >= 8:
                            enough.set()

        threads = [threading.Thread(target=adder, args=(images[i::6],), daemon=True) for i in range(6)]
        for t in threads:
            t.start()
        assert enough.wait(timeout=240)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        for t in threads:
            t.join(timeout=150)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert len(acknowledged) < len(images)  # the kill did land during the adds

    store = FolderStore(data / "store")
    records = list(store.list(layout.RECORDS))
    for key in records:  # no record without its original and its features
        record = json.loads(store.get(key))
        assert store.exists(record["key"]), record
        assert store.exists(layout.features_key(record["id"])), record
    with driven(data) as stack:
        listed = stack.api.get("/images?limit=100").body
        assert listed["damaged"] == []
        ids = {i["id"] for i in listed["images"]}
        assert set(acknowledged) <= ids  # every answered add survived
        assert len(ids) == len(records)
        for image_id in list(ids)[:3]:
            assert stack.api.get(f"/images/{image_id}").status == 200
        first = hashlib.sha256(images[0]).hexdigest()
        if first in ids:  # a surviving image is found again
            assert ranked(stack.api.post("/search?k=1", images[0], "image/jpeg"))[0][0] == first
        assert stack.api.post("/images", photos(49)[48], "image/jpeg").status == 201


def test_a_presigned_upload_lands_in_the_folder_and_its_stored_url_serves_it(tmp_path):
    import urllib.request

    image = photos(1)[0]
    with driven(tmp_path / "data") as stack:
        upload = stack.api.post("/uploads", {"content_type": "image/jpeg"})
        assert upload.status == 201, upload.body
        put = urllib.request.Request(upload.body["url"], data=image, method="PUT", headers={"Content-Type": "image/jpeg"})
        urllib.request.urlopen(put, timeout=30).close()
        added = stack.api.post("/images", {"s3_key": upload.body["s3_key"]})
        assert added.status == 201, added.body
        record = stack.api.get(f"/images/{added.body['ids'][0]}").body
        with urllib.request.urlopen(record["stored_url"], timeout=30) as resp:
            assert resp.read() == image
        forged = record["stored_url"].replace("Signature=", "Signature=0")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=30)
        assert refused.value.code == 403
