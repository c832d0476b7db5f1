"""pictrace add --meta, search/similar/list --filter, and the client's set_meta, against the session stack."""

from __future__ import annotations

import json

import numpy as np

from pictrace.client import Client, Source
from tests.cli.conftest import write_jpeg
from tests.conftest import jpeg, sample_bgr


def test_add_with_meta_then_filtered_search_list_and_similar(pictrace, tmp_path, empty_catalog, stack):
    acme = [write_jpeg(tmp_path / "acme" / f"{n}.jpg", sample_bgr(n)) for n in ("coffee", "rocket")]
    other = [write_jpeg(tmp_path / "other" / f"{n}.jpg", sample_bgr(n)) for n in ("chelsea", "astronaut", "camera")]
    added = pictrace("add", str(tmp_path / "acme"), "--meta", '{"tenant": "acme", "kind": ["photo"]}', "--json")
    assert added.code == 0, added.err
    assert all(r["meta"] == {"tenant": "acme", "kind": ["photo"]} for r in json.loads(added.out)["added"])
    assert pictrace("add", str(tmp_path / "other"), "--meta", '{"tenant": "other"}').code == 0
    assert len(acme) + len(other) == empty_catalog.count()

    query = write_jpeg(tmp_path / "query.jpg", np.ascontiguousarray(sample_bgr("coffee")[:, ::-1]))
    found = pictrace("search", str(query), "-k", "3", "--filter", '{"tenant": "other"}', "--json")
    assert found.code == 0, found.err
    results = json.loads(found.out)["results"]
    assert len(results) == 3 and {r["meta"]["tenant"] for r in results} == {"other"}
    table = pictrace("search", str(query), "-k", "3", "--filter", '{"tenant": ["acme"]}')
    assert table.code == 0 and "coffee.jpg" in table.out and "chelsea.jpg" not in table.out

    listed = pictrace("list", "--all", "--filter", '{"tenant": "acme"}', "--json")
    assert sorted(r["name"] for r in json.loads(listed.out)["images"]) == ["coffee.jpg", "rocket.jpg"]
    page = pictrace("list", "--filter", '{"tenant": "acme"}')
    assert page.code == 0 and "rocket.jpg" in page.out and "camera.jpg" not in page.out

    coffee = next(r["id"] for r in json.loads(listed.out)["images"] if r["name"] == "coffee.jpg")
    similar = pictrace("similar", coffee, "--filter", '{"tenant": "acme"}', "--json")
    assert [r["name"] for r in json.loads(similar.out)["results"]] == ["rocket.jpg"]
    shown = pictrace("get", coffee)
    assert 'meta        {"kind": ["photo"], "tenant": "acme"}' in shown.out.splitlines()


def test_bad_json_for_meta_or_filter_is_a_usage_error(pictrace, tmp_path):
    image = write_jpeg(tmp_path / "a.jpg", sample_bgr("coins"))
    for args in (("add", str(image), "--meta", "tenant=acme"), ("search", str(image), "--filter", "[1]"), ("list", "--filter", "{")):
        result = pictrace(*args)
        assert result.code == 2 and "JSON object" in result.err, args


def test_meta_the_api_refuses_is_a_failed_add(pictrace, tmp_path, empty_catalog):
    image = write_jpeg(tmp_path / "a.jpg", sample_bgr("coins"))
    result = pictrace("add", str(image), "--meta", json.dumps({"tags": [str(i) for i in range(11)]}))
    assert result.code == 1 and "invalid_meta" in result.out
    assert empty_catalog.count() == 0
    bad = pictrace("search", str(image), "--filter", '{"tenant": 3}')
    assert bad.code == 1 and "invalid_filter" in bad.err


def test_the_client_sets_meta_and_sends_filters_in_every_body(stack, empty_catalog):
    api = Client(stack.api_url)
    image_id = api.add(source_of(jpeg(sample_bgr("rocket"))), meta={"tenant": "a"})["ids"][0]
    assert api.set_meta(image_id, {"tenant": "b", "year": 2024})["meta"] == {"tenant": "b", "year": 2024}
    assert api.get(image_id)["meta"] == {"tenant": "b", "year": 2024}
    query = source_of(jpeg(sample_bgr("rocket")))
    assert [r["id"] for r in api.search(query, filter={"tenant": "b"})["results"]] == [image_id]
    assert api.search(query, filter={"tenant": "a"})["results"] == []
    assert [r["id"] for r in api.images(filter={"tenant": "b"})["images"]] == [image_id]


def source_of(data: bytes) -> Source:
    return Source("<bytes>", data=data)


def test_meta_shows_and_replaces_an_images_meta(pictrace, tmp_path, empty_catalog):
    image = write_jpeg(tmp_path / "rocket.jpg", sample_bgr("rocket"))
    image_id = json.loads(pictrace("add", str(image), "--meta", '{"tenant": "acme"}', "--json").out)["ids"][0]
    shown = pictrace("meta", image_id)
    assert shown.code == 0, shown.err
    assert json.loads(shown.out) == {"tenant": "acme"}

    replaced = pictrace("meta", image_id, "--set", '{"tenant": "globex", "tags": ["rocket"], "year": 2024}')
    assert replaced.code == 0, replaced.err
    assert json.loads(replaced.out) == {"tenant": "globex", "tags": ["rocket"], "year": 2024}
    assert replaced.err_lines == [f"replaced the meta of {image_id[:12]}"]
    # The whole object was replaced, and filters follow it at once.
    assert json.loads(pictrace("meta", image_id, "--json").out)["meta"] == {"tenant": "globex", "tags": ["rocket"], "year": 2024}
    assert [r["id"] for r in json.loads(pictrace("list", "--filter", '{"tags": "rocket"}', "--json").out)["images"]] == [image_id]
    assert json.loads(pictrace("list", "--filter", '{"tenant": "acme"}', "--json").out)["images"] == []
    # What it prints is what --set takes back.
    assert pictrace("meta", image_id, "--set", shown.out).code == 0
    assert json.loads(pictrace("meta", image_id).out) == {"tenant": "acme"}
    cleared = pictrace("meta", image_id, "--set", "{}")
    assert cleared.code == 0 and json.loads(cleared.out) == {}


def test_meta_of_a_bad_id_or_with_bad_json_fails_in_one_line(pictrace, tmp_path, empty_catalog):
    image = write_jpeg(tmp_path / "coins.jpg", sample_bgr("coins"))
    image_id = json.loads(pictrace("add", str(image), "--meta", '{"tenant": "acme"}', "--json").out)["ids"][0]
    for args in (("meta", "ab" * 32), ("meta", "not-an-id"), ("meta", "ab" * 32, "--set", '{"tenant": "x"}')):
        result = pictrace(*args)
        assert result.code == 1, args
        assert len(result.err_lines) == 1 and result.err.startswith("pictrace: error: ") and result.out == "", args
    bad_json = pictrace("meta", image_id, "--set", '{"tenant": ')
    assert bad_json.code == 2 and len(bad_json.err_lines) == 1 and "JSON object" in bad_json.err
    refused = pictrace("meta", image_id, "--set", json.dumps({"tags": [str(i) for i in range(11)]}))
    assert refused.code == 1 and len(refused.err_lines) == 1 and "invalid_meta" in refused.err
    # Nothing refused was stored.
    assert json.loads(pictrace("meta", image_id).out) == {"tenant": "acme"}
