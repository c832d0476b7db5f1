"""PATCH /images/{id} racing deletes, other changes and packing: the index follows the record.

Deterministic as in test_catalog_races: a store wrapper runs a whole second
operation just before call number ``k`` of the first, for every ``k``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from pictrace.catalog import layout
from pictrace.catalog.catalog import Catalog
from pictrace.catalog.packing import Manifest
from pictrace.core import compact
from pictrace.core.filters import meta_tags
from pictrace.core.partition import Partition
from tests.conftest import jpeg, sample_bgr
from tests.integration.test_catalog_races import GONE, Interleaving, calls_made, quietly, state

DATA = jpeg(sample_bgr("coins"))
IMAGE = hashlib.sha256(DATA).hexdigest()


def row_tags(stack, key: str) -> list[int]:
    return Partition.from_bytes(stack.services.store.get(key)).rows()[0].tags.tolist()


def wanted_tags(stack, meta: dict) -> list[int]:
    features = stack.services.catalog.features(IMAGE)
    return compact.index_row(features, tags=meta_tags(meta)).tags.tolist()


def packed_rows(stack) -> list:
    store = stack.services.store
    manifest = Manifest.load(store)
    return [r for e in manifest.partitions for r in Partition.from_bytes(store.get(e["key"])).rows() if r.sha256 == IMAGE]


def test_a_delete_landing_anywhere_inside_a_meta_change_leaves_the_changed_image_or_none(stack, empty_catalog):
    plain = stack.services.catalog
    plain.add(DATA, meta={"tenant": "a"})
    steps = calls_made(stack, lambda c: c.set_meta(IMAGE, {"tenant": "b"}))
    for at in range(steps + 1):
        racing = Catalog(Interleaving(stack.services.store, at, quietly(lambda: plain.delete(IMAGE))), stack.services.config)
        quietly(lambda: racing.set_meta(IMAGE, {"tenant": f"t{at}"}))()
        now = state(stack, IMAGE)
        record = plain.find(IMAGE)
        if record is None:
            assert now == GONE, (at, now)  # no pending row of a deleted image is left behind
        else:
            assert now["pending"] and now["visible"], (at, now)
            assert row_tags(stack, layout.pending_key(IMAGE)) == wanted_tags(stack, record.meta), at
            plain.delete(IMAGE)
        plain.add(DATA, meta={"tenant": "a"})


def test_a_meta_change_landing_anywhere_inside_another_ends_with_the_row_of_the_record(stack, empty_catalog):
    plain = stack.services.catalog
    plain.add(DATA, meta={"tenant": "a"})
    steps = calls_made(stack, lambda c: c.set_meta(IMAGE, {"tenant": "b"}))
    for at in range(steps + 1):
        racing = Catalog(
            Interleaving(stack.services.store, at, lambda: plain.set_meta(IMAGE, {"tenant": "other"})), stack.services.config
        )
        racing.set_meta(IMAGE, {"tenant": "mine"})
        record = plain.get(IMAGE)
        assert record.meta["tenant"] in ("mine", "other")
        assert row_tags(stack, layout.pending_key(IMAGE)) == wanted_tags(stack, record.meta), at


def test_a_pack_landing_anywhere_inside_a_meta_change_leaves_one_packed_row_with_the_new_tags(stack, empty_catalog):
    plain = stack.services.catalog
    plain.add(DATA, meta={"tenant": "a"})
    stack.pack_now()
    steps = calls_made(stack, lambda c: c.set_meta(IMAGE, {"tenant": "b"}))
    for at in range(steps + 1):
        racing = Catalog(Interleaving(stack.services.store, at, stack.pack_now), stack.services.config)
        racing.set_meta(IMAGE, {"tenant": f"t{at}"})
        stack.pack_now()
        rows = packed_rows(stack)
        assert len(rows) == 1, (at, len(rows))
        assert np.array_equal(rows[0].tags, wanted_tags(stack, {"tenant": f"t{at}"})), at
