"""An add of bytes the catalog already holds is answered from the record, without decoding them."""

from __future__ import annotations

import cv2
import pytest

from pictrace.adapters.folder_store import FolderStore
from pictrace.catalog.catalog import Catalog
from pictrace.config import Config
from tests.hostile import corpus as c


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = cv2.imdecode

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2, "imdecode", counting)
    return calls


def test_a_duplicate_add_is_never_decoded(tmp_path, decodes: list[int]) -> None:
    catalog = Catalog(FolderStore(tmp_path), Config())
    data = c.jpeg(c.photo("coffee", 120, 90))
    first = catalog.add(data, name="a.jpg")
    assert first.created and decodes
    decodes.clear()
    again = catalog.add(data, name="b.jpg")
    assert not again.created and again.record.id == first.record.id
    assert decodes == []


def test_a_damaged_record_of_the_same_bytes_is_still_replaced(tmp_path) -> None:
    store = FolderStore(tmp_path)
    catalog = Catalog(store, Config())
    data = c.jpeg(c.photo("coffee", 120, 90))
    first = catalog.add(data)
    from pictrace.catalog import layout

    store.put(layout.record_key(first.record.id), b"{not json", content_type="application/json")
    again = catalog.add(data)
    assert again.created and catalog.get(first.record.id).width == 120
