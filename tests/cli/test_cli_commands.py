"""add, search, list, get and delete against the session stack, over real HTTP."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np

from pictrace.client import DIRECT_LIMIT
from tests.cli.conftest import closed_port, edited, write_jpeg, write_png
from tests.conftest import jpeg, sample_bgr
from tests.unit.test_looks_like import CAT


def ids_by_name(pictrace) -> dict[str, str]:
    listed = pictrace("list", "--all", "--json")
    assert listed.code == 0, listed.err
    return {r["name"]: r["id"] for r in json.loads(listed.out)["images"]}


def test_add_a_directory_counts_added_duplicates_and_failures(pictrace, tmp_path, empty_catalog):
    photos = tmp_path / "photos"
    coffee = write_jpeg(photos / "coffee.jpg", sample_bgr("coffee"))
    write_png(photos / "cats" / "chelsea.png", sample_bgr("chelsea"))
    write_jpeg(photos / "cats" / "deeper" / "astronaut.jpg", sample_bgr("astronaut"))
    whole = jpeg(sample_bgr("rocket"))
    (photos / "broken.jpg").write_bytes(whole[: len(whole) // 2])
    (photos / "notes.txt").write_text("not an image, and not named like one")

    first = pictrace("add", str(coffee))
    coffee_id = hashlib.sha256(coffee.read_bytes()).hexdigest()
    assert first.code == 0
    assert first.out.splitlines() == [f"added {coffee_id}  coffee.jpg", "added 1, duplicates 0, failed 0"]

    result = pictrace("add", str(photos))
    assert result.code == 1
    lines = result.out.splitlines()
    assert len(lines) == 5
    assert sorted(line.split()[0] for line in lines[:3]) == ["added", "added", "duplicate"]
    assert f"duplicate {coffee_id}  coffee.jpg" in lines[:3]
    assert lines[3] == "added 2, duplicates 1, failed 1"
    assert re.fullmatch(rf"  failed {re.escape(str(photos / 'broken.jpg'))}: corrupt_image: .+", lines[4])
    names = {line.split()[2]: line.split()[1] for line in lines[:3]}
    assert names == {n: i for n, i in ids_by_name(pictrace).items()}
    assert result.err == ""  # stderr is not a terminal: no progress bar
    assert set(ids_by_name(pictrace)) == {"coffee.jpg", "chelsea.png", "astronaut.jpg"}
    assert empty_catalog.count() == 3


def test_add_names_each_file_and_mixes_files_and_urls(pictrace, tmp_path, empty_catalog):
    coins = write_png(tmp_path / "coins.png", sample_bgr("coins"))
    # The session stack keeps the default URL policy, so a loopback URL is refused by the API.
    url = f"http://127.0.0.1:{closed_port()}/moon.jpg"
    result = pictrace("add", str(coins), url)
    assert result.code == 1
    lines = result.out.splitlines()
    assert re.fullmatch(r"added [0-9a-f]{64}  coins\.png", lines[0])
    assert lines[1] == "added 1, duplicates 0, failed 1"
    assert lines[2].startswith(f"  failed {url}: blocked_url: ")
    assert list(ids_by_name(pictrace)) == ["coins.png"]


def test_file_names_outside_ascii_are_kept(pictrace, tmp_path, empty_catalog):
    write_jpeg(tmp_path / "café ☕.jpg", sample_bgr("coffee"))
    assert pictrace("add", str(tmp_path)).code == 0
    assert list(ids_by_name(pictrace)) == ["café ☕.jpg"]


def test_search_prints_a_table_with_the_right_image_first(pictrace, tmp_path, empty_catalog):
    for name in ("chelsea", "coffee", "rocket", "camera"):
        write_jpeg(tmp_path / "catalog" / f"{name}.jpg", sample_bgr(name))
    assert pictrace("add", str(tmp_path / "catalog")).code == 0
    query = write_jpeg(tmp_path / "query.jpg", edited("rocket"), quality=60)

    result = pictrace("search", str(query), "-k", "3")
    assert result.code == 0, result.err
    header, *rows = result.out.splitlines()
    assert header.split() == ["rank", "score", "ssim", "orb", "hist", "semantic", "transform", "name", "id", "label"]
    assert len(rows) == 3
    first = rows[0].split()
    assert first[0] == "1" and first[6] == "mirror" and first[7] == "rocket.jpg"
    assert ids_by_name(pictrace)["rocket.jpg"].startswith(first[8]) and len(first[8]) == 12
    assert float(first[5]) > 0.5 and first[9] == "missile"  # looks-like score and top label
    assert "http" not in result.out and max(len(line) for line in result.out.splitlines()) < 100
    scores = [float(r.split()[1]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert "of 4 images scored" in result.err


def test_search_mode_similar_ranks_by_looks_like(pictrace, tmp_path, empty_catalog):
    for name in ("coffee", "rocket", "camera", "astronaut"):
        write_jpeg(tmp_path / "catalog" / f"{name}.jpg", sample_bgr(name))
    (tmp_path / "catalog" / "cat.webp").write_bytes(CAT.read_bytes())
    assert pictrace("add", str(tmp_path / "catalog")).code == 0
    query = write_jpeg(tmp_path / "query.jpg", sample_bgr("chelsea"))

    result = pictrace("search", str(query), "-k", "2", "--mode", "similar", "--json")
    assert result.code == 0, result.err
    answer = json.loads(result.out)
    assert answer["mode"] == "similar" and answer["results"][0]["name"] == "cat.webp"
    assert pictrace("search", str(query), "--mode", "dreamy").code != 0


def test_search_json_is_the_api_answer(pictrace, api, tmp_path, empty_catalog):
    for name in ("chelsea", "coffee", "astronaut"):
        write_jpeg(tmp_path / f"{name}.jpg", sample_bgr(name))
    assert pictrace("add", str(tmp_path)).code == 0
    query = write_jpeg(tmp_path / "q" / "query.jpg", edited("chelsea"), quality=55)

    result = pictrace("search", str(query), "--json", "--ranking", "seed", "-k", "2")
    assert result.code == 0
    answer = json.loads(result.out)
    assert answer["results"][0]["name"] == "chelsea.jpg"
    assert answer["k"] == 2 and answer["ranking"] == "seed"
    assert answer["query"]["sha256"] == hashlib.sha256(query.read_bytes()).hexdigest()
    direct = api.post("/search?k=2&ranking=seed", query.read_bytes(), "image/jpeg").body
    assert set(answer) == set(direct)
    assert [r["id"] for r in answer["results"]] == [r["id"] for r in direct["results"]]


def test_list_get_and_delete(pictrace, tmp_path, empty_catalog):
    for name in ("coffee", "coins", "moon"):
        write_png(tmp_path / f"{name}.png", sample_bgr(name))
    assert pictrace("add", str(tmp_path)).code == 0
    ids = ids_by_name(pictrace)

    page = pictrace("list", "--limit", "2")
    assert page.code == 0
    header, *rows = page.out.splitlines()
    assert header.split() == ["id", "format", "size", "bytes", "added", "name"]
    assert len(rows) == 2 and all(r.split()[0] in ids.values() for r in rows)
    assert page.err_lines == ["2 of 3 images; --all lists every one"]
    everything = pictrace("list", "--all")
    assert sorted(r.split()[-1] for r in everything.out.splitlines()[1:]) == ["coffee.png", "coins.png", "moon.png"]
    one_page = json.loads(pictrace("list", "--json", "--limit", "1").out)
    assert one_page["count"] == 1 and one_page["total"] == 3 and one_page["next_cursor"]

    shown = pictrace("get", ids["coins.png"])
    assert shown.code == 0
    fields = dict(line.split(None, 1) for line in shown.out.splitlines())
    assert fields["id"] == ids["coins.png"] and fields["name"] == "coins.png"
    assert fields["width"] == "384" and fields["height"] == "303"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", fields["added_at"])
    record = json.loads(pictrace("get", ids["coins.png"], "--json").out)
    assert record["id"] == ids["coins.png"] and record["stored_url"].startswith("http://127.0.0.1:")

    gone = pictrace("delete", ids["coins.png"], ids["moon.png"])
    assert gone.code == 0
    assert gone.out.splitlines() == [f"deleted {ids['coins.png']}", f"deleted {ids['moon.png']}"]
    assert set(ids_by_name(pictrace)) == {"coffee.png"}

    missing = pictrace("get", ids["coins.png"])
    assert missing.code == 1
    assert len(missing.err_lines) == 1 and missing.err.startswith("pictrace: error: 404 not_found: ")

    again = pictrace("delete", ids["coffee.png"], ids["coins.png"])
    assert again.code == 1
    assert again.out.splitlines() == [f"deleted {ids['coffee.png']}"]
    assert len(again.err_lines) == 1
    assert again.err.startswith(f"pictrace: error: {ids['coins.png']}: 404 not_found: ")


def test_a_bad_k_is_a_usage_error_and_too_big_a_k_the_api_message(pictrace, api, tmp_path, empty_catalog):
    query = write_jpeg(tmp_path / "q.jpg", sample_bgr("coffee"))
    result = pictrace("search", str(query), "-k", "0")
    assert result.code == 2 and result.out == ""
    assert len(result.err_lines) == 1 and "-k" in result.err
    result = pictrace("search", str(query), "-k", "51")
    assert result.code == 1 and result.out == ""
    refused = api.post("/search?k=51", query.read_bytes(), "image/jpeg").body
    assert result.err_lines == [f"pictrace: error: 400 {refused['error']}: {refused['message']}"]


def test_a_refused_url_search_is_one_line(pictrace):
    result = pictrace("search", f"http://127.0.0.1:{closed_port()}/photo.jpg")
    assert result.code == 1
    assert len(result.err_lines) == 1 and result.err.startswith("pictrace: error: 400 blocked_url: ")


def test_an_unreachable_api_exits_3_with_one_line(run, tmp_path, monkeypatch):
    query = write_jpeg(tmp_path / "q.jpg", sample_bgr("coins"))
    url = f"http://127.0.0.1:{closed_port()}"
    expected = [f"pictrace: error: cannot reach the PicTrace API at {url} (is `pictrace serve` running?)"]
    for args in (["search", str(query)], ["add", str(tmp_path)], ["list"], ["get", "ab" * 32], ["delete", "ab" * 32]):
        result = run(*args, api=url)
        assert (result.code, result.err_lines, result.out) == (3, expected, ""), args
    monkeypatch.setenv("PICTRACE_API_URL", url)
    result = run("list")
    assert (result.code, result.err_lines) == (3, expected)


def test_files_larger_than_a_request_go_through_a_presigned_upload(pictrace, api, stack, tmp_path, empty_catalog):
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, size=(1500, 1500, 3), dtype=np.uint8)
    big = write_png(tmp_path / "big" / "noise.png", noise)
    size = big.stat().st_size
    assert size > 6 * 1024 * 1024 > DIRECT_LIMIT
    assert api.post("/images", big.read_bytes(), "image/png").status == 413  # too large to send directly
    small = write_jpeg(tmp_path / "small" / "coffee.jpg", sample_bgr("coffee"))

    def uploads() -> list[int]:
        listed = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix="uploads/")
        return sorted(o["Size"] for o in listed.get("Contents", []))

    before = uploads()
    assert pictrace("add", str(small)).code == 0
    assert uploads() == before  # small files go in the request body

    result = pictrace("add", str(big))
    image_id = hashlib.sha256(big.read_bytes()).hexdigest()
    assert result.code == 0
    assert result.out.splitlines() == [f"added {image_id}  noise.png", "added 1, duplicates 0, failed 0"]
    assert uploads() == sorted(before + [size])
    record = json.loads(pictrace("get", image_id, "--json").out)
    assert record["bytes"] == size and (record["width"], record["height"]) == (1500, 1500)

    found = pictrace("search", str(big), "--json", "-k", "1")
    assert found.code == 0
    assert json.loads(found.out)["results"][0]["id"] == image_id
    assert uploads() == sorted(before + [size, size])
