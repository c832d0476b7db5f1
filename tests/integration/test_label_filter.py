"""The stored ImageNet labels are a search filter (field "label"), through the local HTTP API."""

from __future__ import annotations

import pytest

from pictrace.model import embedding
from tests.conftest import jpeg, sample_bgr
from tests.integration.test_looks_like_http import catalog  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(not embedding.DEFAULT_MODEL.is_file(), reason=f"no model: {embedding.BUILD_COMMAND}")


def test_labels_filter_a_search(api, catalog):  # noqa: F811
    reply = api.post('/search?mode=similar&k=5&filter={"label":"espresso"}', jpeg(sample_bgr("chelsea")), "image/jpeg")
    assert reply.status == 200, reply.body
    assert [r["id"] for r in reply.body["results"]] == [catalog["coffee"]]


def test_labels_filter_the_list(api, catalog):  # noqa: F811
    reply = api.get('/images?filter={"label":"espresso"}')
    assert reply.status == 200, reply.body
    assert [r["id"] for r in reply.body["images"]] == [catalog["coffee"]]
