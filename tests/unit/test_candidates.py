"""Phase 1: compact index rows, partitions and candidate generation on real photographs."""

from __future__ import annotations

import dataclasses
import io
import json

import cv2
import numpy as np
import pytest

from pictrace.core import arrays as container
from pictrace.core import compact
from pictrace.core.candidates import Candidate, CandidateQuery, candidates, crop_scores, layout_scores, shortlist
from pictrace.core.partition import MAX_ROWS, Partition
from pictrace.core.scoring import query_from_bytes
from pictrace.core.features import extract_features
from pictrace.errors import CorruptShard, OutdatedIndex
from tests.conftest import jpeg, sample_bgr

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "hubble_deep_field", "immunohistochemistry")


@pytest.fixture(scope="module")
def catalog():
    return {n: extract_features(jpeg(sample_bgr(n))) for n in NAMES}


@pytest.fixture(scope="module")
def partition(catalog):
    return Partition.build(compact.index_row(f) for f in catalog.values())


def probe_of(data: bytes) -> CandidateQuery:
    q = query_from_bytes(data)
    f = q.features
    return CandidateQuery.of(f.thumb, compact.colour_counts(f), f.descriptors, q.mirror_descriptors)


def edits(img: np.ndarray) -> dict[str, np.ndarray]:
    h, w = img.shape[:2]
    gray = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return {
        "crop": img[h // 8 : h - h // 6, w // 5 : w - w // 10],
        "mirror": np.ascontiguousarray(img[:, ::-1]),
        "rot90": np.ascontiguousarray(np.rot90(img)),
        "gray": gray,
        "dark": np.clip(img.astype(np.float32) * 0.6, 0, 255).astype(np.uint8),
    }


def test_a_row_stays_under_one_kilobyte(catalog):
    tags = [(f"field{i}", "value") for i in range(10)]
    for f in catalog.values():
        row = compact.index_row(f, semantic=np.ones(compact.SEMANTIC_DIMS, np.int8), tags=tags)
        assert row.nbytes <= 1024
        one = Partition.build([row])
        # The file adds its table and the word runs, not a fixed directory.
        assert len(one.to_bytes()) - row.nbytes < 2 * 1024
        assert row.layout.dtype == np.int8 and row.colour.dtype == np.uint8
        assert len(row.words) <= compact.STORED_DESCRIPTORS


def test_rows_are_deterministic(catalog):
    f = catalog["coffee"]
    a, b = compact.index_row(f), compact.index_row(f)
    assert np.array_equal(a.layout, b.layout) and np.array_equal(a.words, b.words)


def test_partition_round_trip(partition):
    back = Partition.from_bytes(partition.to_bytes())
    assert back.id_list() == partition.id_list()
    for a, b in zip(back.rows(), partition.rows()):
        assert a.sha256 == b.sha256
        assert np.array_equal(a.layout, b.layout) and np.array_equal(a.colour, b.colour)
        assert np.array_equal(a.words, b.words)


def test_semantic_codes_and_filter_tags_round_trip(catalog):
    rng = np.random.default_rng(3)
    rows = [
        compact.index_row(
            f,
            semantic=rng.integers(-127, 128, compact.SEMANTIC_DIMS).astype(np.int8),
            tags=[("tenant", "acme" if i % 2 else "globex"), ("label", name)],
        )
        for i, (name, f) in enumerate(catalog.items())
    ]
    back = Partition.from_bytes(Partition.build(rows).to_bytes())
    for a, b in zip(back.rows(), rows):
        assert np.array_equal(a.semantic, b.semantic) and np.array_equal(a.tags, b.tags)
    acme = back.rows_tagged(compact.filter_token("tenant", "acme"))
    assert [back.id(r) for r in acme] == [r.sha256 for i, r in enumerate(rows) if i % 2]
    assert [back.id(r) for r in back.rows_tagged(compact.filter_token("label", "coffee"))] == [catalog["coffee"].sha256]
    assert len(back.rows_tagged(compact.filter_token("tenant", "initech"))) == 0


def test_filter_tokens_tell_fields_and_values_apart():
    tokens = {compact.filter_token(n, v) for n, v in [("a", "b"), ("b", "a"), ("a", "b "), ("ab", ""), ("", "ab")]}
    assert len(tokens) == 5
    assert compact.filter_token("colour", "red") == compact.filter_token("colour", "red")


def test_a_row_without_semantic_codes_has_zeros(catalog):
    # Features made without the model (or stored before embeddings) have none.
    bare = dataclasses.replace(catalog["coffee"], embedding=None, semantic=None, labels=())
    row = compact.index_row(bare)
    assert row.semantic.shape == (compact.SEMANTIC_DIMS,) and not row.semantic.any()
    assert np.array_equal(compact.index_row(catalog["coffee"]).semantic, catalog["coffee"].semantic)
    with pytest.raises(ValueError):
        compact.index_row(catalog["coffee"], semantic=np.zeros(7, np.int8))


def test_partition_without_and_concat(partition, catalog):
    gone = catalog["rocket"].sha256
    smaller = partition.without([gone])
    assert gone not in smaller.id_list() and len(smaller) == len(partition) - 1
    joined = Partition.concat([smaller, partition])
    assert sorted(joined.id_list()) == sorted(partition.id_list())


def test_an_old_shard_gets_a_clear_error():
    # A shard of the format before partitions: an .npz with its own header.
    buf = io.BytesIO()
    header = json.dumps({"format": "pictrace-shard", "version": 2, "metas": []}).encode()
    np.savez(buf, header=np.frombuffer(header, np.uint8), ids=np.zeros(0, "<U64"))
    with pytest.raises(CorruptShard, match="pictrace reindex"):
        Partition.from_bytes(buf.getvalue())


def test_a_partition_of_an_earlier_version_asks_for_a_reindex(partition):
    arrays = dict(container.unpack(partition.to_bytes()))
    arrays["header"] = np.frombuffer(json.dumps({"format": "pictrace-partition", "version": 3}).encode(), np.uint8)
    for name in ("semantic", "tags", "tag_rows"):
        del arrays[name]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(OutdatedIndex, match="pictrace reindex"):
        Partition.from_bytes(buf.getvalue())


@pytest.mark.parametrize("damage", ["garbage", "rows-out-of-range", "unsorted", "version", "tag-rows", "semantic-shape", "buckets"])
def test_damaged_partitions_are_refused(partition, damage):
    arrays = dict(container.unpack(partition.to_bytes()))
    if damage == "garbage":
        data = b"PK\x03\x04 not really"
    else:
        if damage == "rows-out-of-range":
            arrays["word_rows"] = arrays["word_rows"].copy()
            arrays["word_rows"][0] = len(partition)
        elif damage == "unsorted":
            arrays["word_low"] = arrays["word_low"][::-1].copy()
        elif damage == "buckets":
            arrays["word_high"] = arrays["word_high"][::-1].copy()
        elif damage == "tag-rows":
            arrays["tags"] = np.array([1, 2], np.uint32)
            arrays["tag_rows"] = np.array([0, len(partition)], np.uint16)
        elif damage == "semantic-shape":
            arrays["semantic"] = arrays["semantic"][:, :5].copy()
        else:
            arrays["header"] = np.frombuffer(json.dumps({"format": "pictrace-partition", "version": 99}).encode(), np.uint8)
        data = container.pack(arrays)
    with pytest.raises(CorruptShard):
        Partition.from_bytes(data)


def test_partition_size_is_bounded(catalog):
    row = compact.index_row(catalog["coffee"])
    many = (compact.IndexRow(f"{i:064x}", row.layout, row.colour, row.words) for i in range(MAX_ROWS + 1))
    with pytest.raises(ValueError):
        Partition.build(many)


@pytest.mark.parametrize("source", ["astronaut", "coffee", "chelsea", "rocket"])
@pytest.mark.parametrize("edit", ["crop", "mirror", "rot90", "gray", "dark"])
def test_edited_copies_reach_a_short_shortlist(catalog, partition, source, edit):
    query = probe_of(jpeg(edits(sample_bgr(source))[edit]))
    found = shortlist(candidates(query, partition, per_signal=2), per_signal=2)
    assert catalog[source].sha256 in [c.id for c in found[:4]]


def test_words_find_a_tight_crop_and_know_a_mirror(catalog, partition):
    img = sample_bgr("astronaut")
    h, w = img.shape[:2]
    crop = img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    by_id = {c.id: c for c in candidates(probe_of(jpeg(crop[:, ::-1].copy())), partition, per_signal=8)}
    target = by_id[catalog["astronaut"].sha256]
    assert target.words == max(c.words for c in by_id.values()) and target.words >= 5
    assert target.mirror_words > target.own_words and target.mirror_is_clear
    assert target.orientation >= 4  # a mirrored symmetry


@pytest.mark.parametrize("source", ["astronaut", "chelsea", "camera", "rocket"])
@pytest.mark.parametrize("area", [0.56, 0.65, 0.77])
def test_layout_sees_a_crop_through_a_window(catalog, partition, source, area):
    # A crop that lost colour and corners (grayscale, blurred): the whole-frame
    # layout lines up with no symmetry of the original, a window of it does.
    img = sample_bgr(source)
    h, w = img.shape[:2]
    ch, cw = round(h * area**0.5), round(w * area**0.5)
    crop = cv2.cvtColor(img[h - ch :, :cw], cv2.COLOR_BGR2GRAY)
    crop = cv2.GaussianBlur(cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR), (0, 0), 2)
    query = probe_of(jpeg(crop))
    ids = partition.id_list()
    target = ids.index(catalog[source].sha256)
    windows = crop_scores(query, partition)
    whole = layout_scores(query, partition).max(axis=1)
    assert int(np.argmax(windows)) == target
    assert windows[target] > whole[target]
    assert windows[target] >= 0.6


def test_a_flat_query_or_row_has_no_crop_match():
    flat = np.full((256, 256), 128, np.uint8)
    assert not compact.crop_kernels(flat).any()
    grids = np.zeros((2, compact.LAYOUT_SIDE**2), np.float32)
    grids[1] = np.arange(compact.LAYOUT_SIDE**2)
    norms = compact.crop_window_norms(grids)
    assert np.isinf(norms[0]).all() and np.isfinite(norms[1]).all() and (norms[1] > 0).all()


def test_excluded_ids_are_never_candidates(catalog, partition):
    query = probe_of(jpeg(sample_bgr("coffee")))
    gone = catalog["coffee"].sha256
    assert gone not in {c.id for c in candidates(query, partition, exclude=[gone])}


def test_global_shortlist_equals_one_big_partition(catalog):
    rows = [compact.index_row(f) for f in catalog.values()]
    whole = Partition.build(rows)
    split = [Partition.build(rows[:3]), Partition.build(rows[3:])]
    query = probe_of(jpeg(edits(sample_bgr("chelsea"))["dark"]))
    one = shortlist(candidates(query, whole, per_signal=3), per_signal=3)
    many = shortlist([c for p in split for c in candidates(query, p, per_signal=3)], per_signal=3)
    assert [c.id for c in one] == [c.id for c in many]


def test_candidates_travel_as_json(catalog, partition):
    query = probe_of(jpeg(sample_bgr("rocket")))
    for c in candidates(query, partition, per_signal=2):
        assert Candidate.from_dict(json.loads(json.dumps(c.to_dict()))).id == c.id
    with pytest.raises(ValueError):
        Candidate.from_dict({"id": "x", "layout": 0, "colour": 0, "words": [0, 0], "orientation": 9})
