"""similar, compare, thresholds, add's ids and --json, options after the command, closed pipes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path


from tests.cli.conftest import edited, write_jpeg
from tests.conftest import sample_bgr

REPO = Path(__file__).resolve().parents[2]


def add_samples(pictrace, folder: Path, *names: str) -> dict[str, str]:
    for name in names:
        write_jpeg(folder / f"{name}.jpg", sample_bgr(name))
    result = pictrace("add", str(folder), "--json")
    assert result.code == 0, result.err
    answer = json.loads(result.out)
    return {r["name"]: r["id"] for r in answer["added"] + answer["duplicates"]}


def test_add_json_lists_the_created_ids(pictrace, tmp_path, empty_catalog):
    coffee = write_jpeg(tmp_path / "a" / "coffee.jpg", sample_bgr("coffee"))
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    result = pictrace("add", str(tmp_path / "a"), "--json")
    assert result.code == 1
    answer = json.loads(result.out)
    assert answer["ids"] == [hashlib.sha256(coffee.read_bytes()).hexdigest()]
    assert answer["added"][0]["name"] == "coffee.jpg" and answer["duplicates"] == []
    assert [f["source"] for f in answer["failed"]] == [str(tmp_path / "a" / "broken.jpg")]
    again = json.loads(pictrace("add", str(coffee), "--json").out)
    assert again["ids"] == [] and [r["name"] for r in again["duplicates"]] == ["coffee.jpg"]


def test_an_unrelated_search_above_a_threshold_says_no_similar_image(pictrace, tmp_path, empty_catalog):
    add_samples(pictrace, tmp_path / "catalog", "chelsea", "coffee", "rocket")
    moon = write_jpeg(tmp_path / "moon.jpg", sample_bgr("moon"))
    result = pictrace("search", str(moon), "--min-score", "0.5")
    assert result.code == 0
    assert result.out.splitlines() == ["no similar image (none scores at least 0.5)"]
    assert json.loads(pictrace("search", str(moon), "--min-score", "0.5", "--json").out)["results"] == []
    found = pictrace("search", str(write_jpeg(tmp_path / "q.jpg", edited("rocket"))), "--min-score", "0.5")
    assert [row.split()[7] for row in found.out.splitlines()[1:]] == ["rocket.jpg"]


def test_similar_leaves_the_image_out(pictrace, tmp_path, empty_catalog):
    ids = add_samples(pictrace, tmp_path / "catalog", "chelsea", "coffee", "rocket")
    write_jpeg(tmp_path / "more" / "cat-copy.jpg", edited("chelsea"))
    assert pictrace("add", str(tmp_path / "more")).code == 0
    result = pictrace("similar", ids["chelsea.jpg"], "-k", "3")
    assert result.code == 0, result.err
    header, *rows = result.out.splitlines()
    assert header.split()[-3:] == ["name", "id", "label"]
    assert [r.split()[7] for r in rows][0] == "cat-copy.jpg" and len(rows) == 3
    assert ids["chelsea.jpg"][:12] not in result.out
    close = pictrace("similar", ids["coffee.jpg"], "--min-score", "0.6")
    assert close.out.splitlines() == ["no similar image (none scores at least 0.6)"]
    missing = pictrace("similar", "0" * 64)
    assert missing.code == 1 and missing.err.startswith("pictrace: error: 404 not_found: ")


def test_compare_files_and_ids(pictrace, tmp_path, empty_catalog):
    ids = add_samples(pictrace, tmp_path / "catalog", "astronaut")
    copy = write_jpeg(tmp_path / "copy.jpg", edited("astronaut"), quality=60)
    result = pictrace("compare", str(copy), str(tmp_path / "catalog" / "astronaut.jpg"))
    assert result.code == 0, result.err
    fields = dict(line.split(None, 1) for line in result.out.splitlines())
    assert list(fields) == ["score", "ssim", "orb", "hist", "transform", "keypoints"]
    assert fields["transform"] == "mirror" and float(fields["score"]) > 0.6
    assert fields["keypoints"].endswith("matched (a's mirror image)")
    by_id = json.loads(pictrace("compare", str(copy), ids["astronaut.jpg"], "--json").out)
    assert f"{by_id['score']:.3f}" == fields["score"] and by_id["b"]["id"] == ids["astronaut.jpg"]
    both = json.loads(pictrace("compare", ids["astronaut.jpg"], ids["astronaut.jpg"], "--json").out)
    assert both["transform"] == "identity" and both["score"] > 0.99
    refused = pictrace("compare", str(copy), "0" * 64)
    assert refused.code == 1 and refused.err.startswith("pictrace: error: 404 not_found: ")
    assert pictrace("compare", str(copy), str(tmp_path / "nope.jpg")).code == 2


def test_the_api_option_after_the_command_is_used(run, stack, empty_catalog):
    result = run("list", "--json", "--api", stack.api_url)
    assert result.code == 0 and json.loads(result.out)["total"] == 0


def test_piping_json_into_a_reader_that_stops_is_quiet(stack, empty_catalog):
    # Nothing reads the pipe: its reader end is closed before the command writes.
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "pictrace", "list", "--json", "--api", stack.api_url],
        stdout=write, stderr=subprocess.PIPE, env=env, timeout=60,
    )
    os.close(write)
    assert (done.returncode, done.stderr) == (0, b"")
