"""The web page's metadata field (adding) and filter field (searching), in a real browser."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import Client, jpeg, sample_bgr
from tests.e2e.test_web import (  # noqa: F401 - the fixtures
    SEEDS,
    browser,
    context,
    open_page,
    page,
    result_ids,
    seeded,
    shot,
    traffic,
    write_query,
)

pytestmark = pytest.mark.e2e


def test_images_added_with_meta_are_what_a_filtered_search_finds(stack, seeded, page, tmp_path):  # noqa: F811
    api = Client(stack.api_url)
    open_page(page, stack, "/#catalog")
    page.wait_for_function(f"() => document.querySelectorAll('#catalog-grid .cat-card').length === {len(SEEDS)}")
    rocket = jpeg(sample_bgr("rocket"))
    rocket_id = hashlib.sha256(rocket).hexdigest()
    (tmp_path / "rocket.jpg").write_bytes(rocket)
    page.fill("#catalog-meta", '{"tenant": "acme"}')
    page.set_input_files("#catalog-file", str(tmp_path / "rocket.jpg"))
    page.wait_for_selector(f'#catalog-grid .cat-card[data-id="{rocket_id}"]')
    assert api.get(f"/images/{rocket_id}").body["meta"] == {"tenant": "acme"}
    shot(page, "catalog-meta")

    # A cat query: the seeded cat is its best match, but only rocket is acme's.
    query_path, _ = write_query(tmp_path)
    page.click("#tab-search")
    page.select_option("#search-min", "0")
    page.fill("#search-filter", '{"tenant": "acme"}')
    page.set_input_files("#search-file", str(query_path))
    page.wait_for_selector("#results li.result[data-id]")
    assert result_ids(page) == [rocket_id]
    assert "filter=" in page.url
    shot(page, "search-filtered")

    page.fill("#search-filter", "tenant=acme")
    page.set_input_files("#search-file", str(query_path))
    alert = page.locator("#search-messages .message.error")
    alert.wait_for()
    assert "filter" in alert.inner_text()
