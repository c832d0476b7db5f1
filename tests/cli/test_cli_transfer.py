"""pictrace export and import: a whole catalog out to a folder and back in, through the session stack's API."""

from __future__ import annotations

import hashlib
import json
import signal

import pytest

from pictrace.catalog import layout
from pictrace.client import Client, Unreachable, multipart
from pictrace.transfer import MANIFEST, export_catalog, import_catalog
from tests.conftest import jpeg, sample_bgr

NAMES = ("coffee", "rocket", "coins")


def seed(stack) -> dict[str, str]:
    """Three images added through the API, the first with meta; name -> id."""
    api = Client(stack.api_url)
    ids = {}
    for n, name in enumerate(NAMES):
        body, ctype = multipart(jpeg(sample_bgr(name)), f"{name}.jpg")
        if n == 0:
            boundary = ctype.split("boundary=")[1]
            closing = f"--{boundary}--\r\n".encode()
            meta = f'--{boundary}\r\nContent-Disposition: form-data; name="meta"\r\n\r\n{{"album": "kitchen"}}\r\n'
            body = body[: -len(closing)] + meta.encode() + closing
        ids[name] = api.call("POST", "/images", body=body, ctype=ctype)["ids"][0]
    return ids


def records(stack) -> dict[str, dict]:
    return {r["id"]: r for r in Client(stack.api_url).all_images()}


def test_a_catalog_goes_out_and_comes_back_with_the_same_ids_names_and_meta(pictrace, stack, tmp_path, empty_catalog):
    ids = seed(stack)
    before = records(stack)
    out = tmp_path / "backup"
    result = pictrace("export", str(out))
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["exported 3, already in the folder 0, failed 0"]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["format"] == "pictrace-export" and manifest["count"] == 3
    for entry in manifest["images"]:
        assert hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest() == entry["id"]
        assert "stored_url" not in entry["record"]
    assert pictrace("export", str(out)).out.splitlines() == ["exported 0, already in the folder 3, failed 0"]

    for image_id in ids.values():
        empty_catalog.delete(image_id)
    imported = pictrace("import", str(out))
    assert imported.code == 0, imported.err
    assert imported.out.splitlines() == ["imported 3, already in the catalog 0, failed 0"]
    after = records(stack)
    assert set(after) == set(before)
    for image_id, record in after.items():
        assert record["name"] == before[image_id]["name"]
        assert record.get("meta") == before[image_id].get("meta")
        assert record["thumb_url"]  # made on the target at ingest, like the features
    assert after[ids["coffee"]].get("meta") == {"album": "kitchen"}
    hit = stack.services.catalog.find(ids["rocket"])
    assert stack.store.exists(layout.features_key(hit.id))

    again = pictrace("import", str(out), "--json")
    assert again.code == 0
    body = json.loads(again.out)  # importing twice is importing once
    assert body["done"] == [] and sorted(body["kept"]) == sorted(ids.values()) and body["failed"] == []
    assert len(records(stack)) == 3


def test_a_damaged_export_is_refused_before_anything_is_added(pictrace, stack, tmp_path, empty_catalog):
    ids = seed(stack)
    out = tmp_path / "backup"
    assert pictrace("export", str(out)).code == 0
    for image_id in ids.values():
        empty_catalog.delete(image_id)
    victim = next((out / "images").glob(f"{ids['rocket']}.*"))
    victim.write_bytes(victim.read_bytes()[:-100] + b"\0" * 100)

    result = pictrace("import", str(out))
    assert result.code == 1 and result.out == ""
    assert result.err_lines == [f"pictrace: error: nothing imported: {ids['rocket']}: images/{victim.name} does not hash to its id (changed or damaged)"]
    assert records(stack) == {}

    manifest = json.loads((out / MANIFEST).read_text())
    manifest["images"][0]["file"] = "../../etc/passwd"
    (out / MANIFEST).write_text(json.dumps(manifest))
    escaped = pictrace("import", str(out))
    assert escaped.code == 1 and "its file must be images/" in escaped.err and len(escaped.err_lines) == 1

    missing = pictrace("import", str(tmp_path / "nowhere"))
    assert missing.code == 1 and missing.err_lines == [f"pictrace: error: {tmp_path / 'nowhere'} has no {MANIFEST}: not an export, or one that did not finish"]
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    busy = pictrace("export", str(tmp_path / "busy"))
    assert busy.code == 1 and "neither empty nor an earlier export" in busy.err


def test_an_import_cut_short_leaves_whole_images_and_a_rerun_adds_the_rest(stack, tmp_path, empty_catalog, monkeypatch):
    ids = seed(stack)
    out = tmp_path / "backup"
    export_catalog(Client(stack.api_url), out)
    for image_id in ids.values():
        empty_catalog.delete(image_id)

    # The network goes away after the first add: the import stops there.
    api = Client(stack.api_url, direct_limit=1000)  # every image through a presigned upload
    real_call, adds = Client.call, []

    def flaky(self, method, path, **kw):
        if method == "POST" and path == "/images":
            if adds:
                raise Unreachable(self.base_url, "connection refused")
            adds.append(path)
        return real_call(self, method, path, **kw)

    monkeypatch.setattr(Client, "call", flaky)
    with pytest.raises(Unreachable):
        import_catalog(api, out, jobs=1)
    catalog = stack.services.catalog
    [first] = list(catalog.ids())
    record = catalog.get(first)
    for key in (record.key, layout.features_key(first), layout.thumb_key(first), layout.pending_key(first)):
        assert stack.store.exists(key), key  # the one image that went in is whole

    monkeypatch.setattr(Client, "call", real_call)
    report = import_catalog(api, out)
    assert report.kept == [first] and sorted(report.done) == sorted(set(ids.values()) - {first})
    assert report.failed == [] and set(catalog.ids()) == set(ids.values())
    assert catalog.get(ids["coffee"]).meta == {"album": "kitchen"}  # meta travels with an upload too


@pytest.mark.slow
def test_from_one_stack_to_another(pictrace, run, stack, tmp_path, empty_catalog):
    """The session stack (moto's S3 in memory) into a `pictrace serve` of its own (a folder store)."""
    from tests.cli.conftest import closed_port
    from tests.cli.test_cli_serve import serve

    ids = seed(stack)
    out = tmp_path / "backup"
    assert pictrace("export", str(out)).code == 0
    port = closed_port()
    target = f"http://127.0.0.1:{port}"
    proc = serve("--no-demo", "--port", str(port), "--data", str(tmp_path / "target"), "--workers", "1")
    try:
        assert proc.stdout.readline().strip() == f"web page: {target}/"
        first = run("import", str(out), api=target)
        assert first.code == 0, first.err
        assert first.out.splitlines() == ["imported 3, already in the catalog 0, failed 0"]
        listed = {r["id"]: r for r in Client(target).all_images()}
        assert set(listed) == set(ids.values())
        assert listed[ids["coffee"]]["meta"] == {"album": "kitchen"}
        hits = Client(target).similar(ids["rocket"], k=1)  # searchable there: features were made on ingest
        assert hits["image"]["id"] == ids["rocket"]
        assert run("import", str(out), api=target).out.splitlines() == ["imported 0, already in the catalog 3, failed 0"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_a_name_with_a_folder_in_it_is_kept(pictrace, stack, tmp_path, empty_catalog):
    stack.s3.put_object(Bucket=stack.bucket, Key="catalog/drops/moon.jpg", Body=jpeg(sample_bgr("moon")))
    assert stack.sync_notifications() >= 1
    [record] = records(stack).values()
    assert record["name"] == "drops/moon.jpg"
    assert pictrace("export", str(tmp_path / "backup")).code == 0
    empty_catalog.delete(record["id"])
    stack.sync_notifications()  # the stack forgets the dropped key, so a later drop of it is news again
    assert pictrace("import", str(tmp_path / "backup")).code == 0
    assert [r["name"] for r in records(stack).values()] == ["drops/moon.jpg"]
