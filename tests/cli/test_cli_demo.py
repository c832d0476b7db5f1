"""The demo catalog and query that ``pictrace serve`` shows."""

from __future__ import annotations

import cv2
import numpy as np

from pictrace.client import Client
from pictrace.local import demo
from tests.cli.conftest import closed_port


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_dropping_the_colour_profile_keeps_the_pixels():
    original = (demo.sample_dir() / "page.png").read_bytes()
    assert b"iCCP" in original
    stripped = demo.drop_png_chunks(original)
    assert b"iCCP" not in stripped and len(stripped) < len(original)
    assert np.array_equal(decode(stripped), decode(original))
    assert demo.drop_png_chunks(b"\xff\xd8\xff\xe0 not a png") == b"\xff\xd8\xff\xe0 not a png"


def test_the_query_is_an_edited_coffee():
    query = demo.query_image()
    assert query[:3] == b"\xff\xd8\xff"
    h, w = decode(query).shape[:2]
    assert (w, h) == (400 - 2 * 40, 600 - 2 * 60)  # a tenth off each side, then turned a quarter


def test_seeding_adds_every_sample_to_an_empty_catalog_only(stack, empty_catalog):
    client, said = Client(stack.api_url), []
    outcomes = demo.seed(client, log=said.append)
    names = sorted(r["name"] for o in outcomes for r in o.added)
    assert names == sorted(p.name for p in demo.sample_paths())
    assert "coffee.png" in names and len(names) >= 5
    assert said == [f"demo catalog: added {len(names)} of scikit-image's sample photos"]
    assert demo.seed(client, log=said.append) == []
    assert said[-1] == "the catalog already has images; not seeding the demo"
    assert empty_catalog.count() == len(names)


def test_without_scikit_image_there_is_no_demo(monkeypatch):
    def missing():
        raise ModuleNotFoundError("No module named 'skimage'", name="skimage")

    monkeypatch.setattr(demo, "sample_dir", missing)
    said: list[str] = []
    # The client points nowhere: any request would raise.
    assert demo.run(Client(f"http://127.0.0.1:{closed_port()}"), log=said.append) is None
    assert said == ["no demo: scikit-image is not installed (pip install 'pictrace[local]')"]
