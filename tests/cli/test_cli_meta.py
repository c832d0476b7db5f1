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
