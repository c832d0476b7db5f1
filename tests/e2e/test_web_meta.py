"""The web page's metadata field (adding) and filter field (searching), in a real browser."""

from __future__ import annotations

import hashlib
import json
import urllib.parse

import pytest

from tests.conftest import Client, jpeg, sample_bgr
from tests.e2e.test_web import (  # noqa: F401 - the fixtures
    CLIPPED,
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


LONG_NOTE = "a rather long note about where this photograph was taken, by whom, and under which licence " * 2
SHOWN_META = """(card) => [...card.querySelectorAll('.meta-chip')].map(e => {
    const box = e.getBoundingClientRect(), outer = card.getBoundingClientRect();
    return {text: e.textContent, title: e.title, cut: e.scrollWidth > e.clientWidth, inside: box.left >= outer.left - 0.5 && box.right <= outer.right + 0.5};
})"""


@pytest.mark.parametrize("width", [1400, 390])
def test_cards_show_meta_as_chips_cut_short_inside_the_card(stack, seeded, page, tmp_path, width):  # noqa: F811
    api = Client(stack.api_url)
    rocket = jpeg(sample_bgr("rocket"))
    meta = {"tenant": "acme", "tags": ["logo", "blue"], "note": LONG_NOTE, "html": "<img src=x>", "year": 2024, "deep": {"x": [1]}}
    reply = api.post(f"/images?meta={urllib.parse.quote(json.dumps(meta))}", rocket, "image/jpeg")
    assert reply.status == 201, reply.body
    rocket_id = reply.body["ids"][0]
    page.set_viewport_size({"width": width, "height": 900})

    open_page(page, stack, "/#catalog")
    card = page.locator(f'#catalog-grid .cat-card[data-id="{rocket_id}"]')
    card.wait_for()
    chips = card.evaluate(SHOWN_META)
    texts = [c["text"] for c in chips]
    # The filterable fields first, in the order the API keeps them; the number and the object after.
    stored = [k for k in api.get(f"/images/{rocket_id}").body["meta"] if k not in ("year", "deep")]
    expected = {"tenant": "tenant: acme", "tags": "tags: logo, blue", "note": f"note: {LONG_NOTE}", "html": "html: <img src=x>"}
    assert texts == [expected[k] for k in stored] + ["+2"]
    assert all(c["inside"] for c in chips), chips
    # Every chip is whole but the long one, which is cut short with all of it in its title.
    for c in chips[:4]:
        assert c["title"] == c["text"] and c["cut"] == c["text"].startswith("note:"), c
    assert sorted(chips[4]["title"].splitlines()) == ['deep: {"x":[1]}', "year: 2024"]
    # Text, never markup: the html field made no element.
    assert card.locator(".meta-chips img").count() == 0
    # The card is as wide as one without meta, and the page does not scroll sideways.
    widths = page.eval_on_selector_all("#catalog-grid .cat-card", "els => els.map(e => Math.round(e.getBoundingClientRect().width))")
    assert len(set(widths)) == 1, widths
    assert page.locator("#catalog-grid .cat-card:not(:has(.meta-chips))").count() == len(SEEDS)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    shot(page, f"catalog-meta-chips-{width}")

    # The same chips on its search result, inside the card, without clipping the scores.
    (tmp_path / "rocket.jpg").write_bytes(rocket)
    page.click("#tab-search")
    page.select_option("#search-k", "10")
    page.select_option("#search-min", "0")
    page.set_input_files("#search-file", str(tmp_path / "rocket.jpg"))
    page.wait_for_selector("#results li.result[data-id]")
    result = page.locator(f'#results li.result[data-id="{rocket_id}"]')
    chips = result.evaluate(SHOWN_META)
    assert [c["text"] for c in chips] == texts and all(c["inside"] for c in chips), chips
    assert page.locator("#results li.result:not(:has(.meta-chips))").count() == len(SEEDS)
    widths = page.eval_on_selector_all("#results li.result", "els => els.map(e => Math.round(e.getBoundingClientRect().width))")
    assert len(set(widths)) == 1, widths
    assert page.evaluate(CLIPPED) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    shot(page, f"results-meta-chips-{width}", full_page=True)
