"""pictrace duplicates against the session stack: the scan runs as the job, the groups print as blocks."""

from __future__ import annotations

import json

from pictrace.catalog import layout
from tests.cli.conftest import write_jpeg
from tests.conftest import jpeg, sample_bgr


def seed(pictrace, tmp_path, stack) -> dict[str, str]:
    folder = tmp_path / "photos"
    write_jpeg(folder / "coffee.jpg", sample_bgr("coffee"))
    img = sample_bgr("coffee")
    h, w = img.shape[:2]
    (folder / "coffee-small.jpg").write_bytes(jpeg(img[h // 16 : h - h // 16, w // 20 :], 50))  # cropped, re-encoded
    write_jpeg(folder / "rocket.jpg", sample_bgr("rocket"))
    assert pictrace("add", str(folder)).code == 0
    listed = json.loads(pictrace("list", "--json").out)["images"]
    # Scans run as Event invocations on the local Lambda endpoint; the CLI polls for them.
    return {r["name"]: r["id"] for r in listed}


def test_the_first_call_scans_and_prints_the_groups(pictrace, tmp_path, stack, empty_catalog):
    stack.store.delete(layout.DUPLICATES_GROUPS)
    ids = seed(pictrace, tmp_path, stack)
    result = pictrace("duplicates")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("group 1: 2 images, best pair 0.")
    assert sorted(lines[1:]) == sorted([f"  {ids['coffee.jpg'][:12]}  coffee.jpg", f"  {ids['coffee-small.jpg'][:12]}  coffee-small.jpg"])
    assert "scanning the catalog" in result.err and "1 of 1 groups; scan of 3 images" in result.err

    again = pictrace("duplicates", "--min-score", "0.99", "--json")
    assert again.code == 0
    body = json.loads(again.out)
    assert body["groups"] == [] and body["scan"]["images"] == 3  # the same scan, read at another threshold
    assert "scanning" not in again.err

    none = pictrace("duplicates", "--min-score", "0.99")
    assert none.out.strip() == "no duplicates (no group scores at least 0.99)"


def test_scan_again_and_bad_thresholds(pictrace, tmp_path, stack, empty_catalog):
    seed(pictrace, tmp_path, stack)
    first = json.loads(pictrace("duplicates", "--json").out)["scan"]["run"]
    rescanned = pictrace("duplicates", "--scan", "--all", "--json")
    assert rescanned.code == 0, rescanned.err
    assert json.loads(rescanned.out)["scan"]["run"] != first

    low = pictrace("duplicates", "--min-score", "0.3")
    assert low.code == 1 and low.err_lines == ["pictrace: error: 400 bad_request: min_score must be at least 0.5: the scan kept only pairs scoring that much"]
    usage = pictrace("duplicates", "--min-score", "2")
    assert usage.code == 2 and len(usage.err_lines) == 1
