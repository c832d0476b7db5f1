"""Metadata bounds, filters, and a filter applied inside phase 1 on real photographs."""

from __future__ import annotations

import numpy as np
import pytest

from pictrace.core import compact, filters
from pictrace.core.candidates import CandidateQuery, candidates, crop_scores, layout_scores, shortlist, tagged
from pictrace.core.features import extract_features
from pictrace.core.filters import Filter, check_meta, meta_tags
from pictrace.core.partition import Partition
from pictrace.core.scoring import query_from_bytes
from pictrace.errors import InvalidFilter, InvalidMeta, MetaTooLarge
from tests.conftest import jpeg, sample_bgr

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "horse", "immunohistochemistry")


@pytest.fixture(scope="module")
def features():
    return {n: extract_features(jpeg(sample_bgr(n))) for n in NAMES}


def probe_of(data: bytes) -> CandidateQuery:
    q = query_from_bytes(data)
    f = q.features
    return CandidateQuery.of(f.thumb, compact.colour_counts(f), f.descriptors, q.mirror_descriptors)


# --- meta -----------------------------------------------------------------------


def test_filterable_values_are_top_level_strings_and_strings_of_lists():
    meta = {"tenant": "acme", "kinds": ["logo", "icon", 3, "logo"], "year": 2024, "ok": True, "deep": {"a": "b"}, "none": None}
    assert check_meta(meta) is meta
    assert meta_tags(meta) == [("kinds", "icon"), ("kinds", "logo"), ("tenant", "acme")]


@pytest.mark.parametrize(
    "bad, word",
    [
        ([1, 2], "object"),
        ("text", "object"),
        ({"a": {"b": {"c": {"d": {"e": 1}}}}}, "nested"),
        ({"": "x"}, "characters"),
        ({"x" * 65: "x"}, "characters"),
        ({"a\nb": "x"}, "control"),
        ({"n": float("nan")}, "finite"),
        ({f"f{i}": "v" for i in range(8)}, "filterable"),
        ({"tags": [f"t{i}" for i in range(8)]}, "filterable"),
    ],
)
def test_bad_meta_is_refused_with_a_reason(bad, word):
    with pytest.raises(InvalidMeta) as err:
        check_meta(bad)
    assert err.value.status == 400 and word in err.value.message


def test_meta_nested_four_levels_and_ten_tags_is_the_most_allowed():
    check_meta({"a": {"b": {"c": [1]}}})
    check_meta({f"f{i}": "v" for i in range(7)} | {"n": 1, "deep": {"x": "not a tag"}})


def test_meta_above_its_byte_bound_is_a_413():
    with pytest.raises(MetaTooLarge) as err:
        check_meta({"note": "é" * (filters.MAX_META_BYTES // 2)})
    assert err.value.status == 413 and err.value.code == "meta_too_large"


# --- filters --------------------------------------------------------------------


def test_a_filter_is_normalised_and_matches_exactly():
    f = Filter.parse({"tenant": "acme", "kind": ["logo", "icon", "logo"]})
    assert f.to_dict() == {"kind": ["icon", "logo"], "tenant": ["acme"]}
    assert f.matches({"tenant": "acme", "kind": "icon"})
    assert f.matches({"tenant": "acme", "kind": ["photo", "logo"]})
    assert not f.matches({"tenant": "acme"})  # every field must match
    assert not f.matches({"tenant": "acme", "kind": "photo"})
    assert not f.matches({"tenant": ["ACME"], "kind": "logo"})  # equality, case and all
    assert not Filter.parse({"year": "2024"}).matches({"year": 2024})  # numbers are not strings
    assert not Filter.parse(None) and not Filter.parse({}) and Filter().matches({})


@pytest.mark.parametrize(
    "bad",
    [["tenant"], "tenant=acme", {"tenant": 3}, {"tenant": []}, {"tenant": ["a", 1]}, {"tenant": None},
     {"": "x"}, {f"f{i}": "v" for i in range(11)}, {"t": [str(i) for i in range(101)]}],
)
def test_a_bad_filter_is_refused(bad):
    with pytest.raises(InvalidFilter) as err:
        Filter.parse(bad)
    assert err.value.status == 400 and err.value.code == "invalid_filter"


def test_tokens_are_those_rows_store():
    f = Filter.parse({"tenant": ["a", "b"]})
    assert [t.tolist() for t in f.tokens()] == [sorted([compact.filter_token("tenant", "a"), compact.filter_token("tenant", "b")])]


# --- inside phase 1 --------------------------------------------------------------


@pytest.fixture(scope="module")
def tenants(features):
    """Half the photos belong to tenant a, half to b; two of a's are also kind=logo."""
    meta = {n: {"tenant": "a" if i % 2 else "b"} for i, n in enumerate(NAMES)}
    for n in ("coffee", "camera"):
        meta[n]["kind"] = ["logo", "print"]
    return meta


@pytest.fixture(scope="module")
def tagged_partition(features, tenants):
    return Partition.build(compact.index_row(features[n], tags=meta_tags(tenants[n])) for n in NAMES)


def test_rows_match_when_every_field_has_one_of_its_tokens(tagged_partition, tenants):
    for spec in ({"tenant": "a"}, {"tenant": ["a", "b"]}, {"tenant": "a", "kind": "logo"}, {"kind": ["print", "x"]}):
        f = Filter.parse(spec)
        mask = tagged(tagged_partition, f.tokens())
        expected = [f.matches(tenants[n]) for n in NAMES]
        assert mask.tolist() == expected, spec
    assert not tagged(tagged_partition, Filter.parse({"tenant": "nobody"}).tokens()).any()


def test_a_filter_keeps_k_matching_candidates_although_better_rows_do_not_match(features, tenants, tagged_partition):
    # The query is a mirrored coffee: coffee (tenant a) is by far its best row.
    query = probe_of(jpeg(np.ascontiguousarray(sample_bgr("coffee")[:, ::-1])))
    by_id = {features[n].sha256: n for n in NAMES}
    unfiltered = candidates(query, tagged_partition, per_signal=2)
    assert "coffee" in {by_id[c.id] for c in unfiltered}

    b_only = Filter.parse({"tenant": "b"})
    found = candidates(query, tagged_partition, per_signal=2, tags=b_only.tokens())
    names = {by_id[c.id] for c in found}
    assert names and all(tenants[n]["tenant"] == "b" for n in names)
    # Every signal's top 2 are tenant b rows: the layout's two best b rows are there.
    b_rows = [r for r, n in enumerate(NAMES) if tenants[n]["tenant"] == "b"]
    layout = np.maximum(layout_scores(query, tagged_partition).max(axis=1), crop_scores(query, tagged_partition))
    best_b = sorted(b_rows, key=lambda r: -layout[r])[:2]
    assert {NAMES[r] for r in best_b} <= names
    # Merged into a shortlist, a filter with k = 3 matching images gives all 3.
    three = Filter.parse({"tenant": "b"})
    found = candidates(query, tagged_partition, per_signal=3, tags=three.tokens())
    assert len(shortlist(found, 3)) >= 3


def test_a_filter_no_row_matches_finds_nothing_and_exclude_still_applies(features, tagged_partition):
    query = probe_of(jpeg(sample_bgr("rocket")))
    assert candidates(query, tagged_partition, tags=Filter.parse({"tenant": "c"}).tokens()) == []
    logo = Filter.parse({"kind": "logo"}).tokens()
    found = candidates(query, tagged_partition, tags=logo, exclude=[features["coffee"].sha256])
    assert [c.id for c in found] == [features["camera"].sha256]


def test_filter_tags_survive_the_partition_file(tagged_partition):
    back = Partition.from_bytes(tagged_partition.to_bytes())
    f = Filter.parse({"tenant": "a", "kind": "print"})
    assert tagged(back, f.tokens()).tolist() == tagged(tagged_partition, f.tokens()).tolist()


# --- LocalIndex --------------------------------------------------------------------


def test_local_index_filters_inside_phase_one_and_follows_set_meta(tmp_path):
    from pictrace.api import LocalIndex

    index = LocalIndex()
    ids = {n: index.add(jpeg(sample_bgr(n)), {"name": n, "tenant": "a" if n in ("coffee", "rocket") else "b"}) for n in NAMES}
    query = jpeg(np.ascontiguousarray(sample_bgr("coffee")[:, ::-1]))
    assert index.search(query, k=1)[0].id == ids["coffee"]
    hits = index.search(query, k=3, filter={"tenant": "b"})
    assert len(hits) == 3 and all(h.meta["tenant"] == "b" for h in hits)
    assert [h.id for h in index.search(query, k=5, filter={"tenant": "a"})] == [ids["coffee"], ids["rocket"]]

    index.set_meta(ids["coffee"], {"name": "coffee", "tenant": "b"})
    assert index.search(query, k=1, filter={"tenant": "b"})[0].id == ids["coffee"]
    assert [h.id for h in index.search(query, k=5, filter={"tenant": "a"})] == [ids["rocket"]]

    back = LocalIndex.load(index.save(tmp_path / "saved"))
    assert [h.id for h in back.search(query, k=5, filter={"tenant": "a"})] == [ids["rocket"]]
    assert [h.id for h in back.similar(ids["rocket"], k=5, filter={"tenant": "a"})] == []
    with pytest.raises(InvalidMeta):
        index.add(jpeg(sample_bgr("moon")), {"tags": [str(i) for i in range(20)]})


def test_local_index_drops_a_row_whose_tags_lie(features):
    """A token collision in phase 1 (simulated: a row tagged b whose meta says a) never reaches the answer."""
    import dataclasses

    from pictrace.api import LocalIndex

    index = LocalIndex()
    for n in NAMES:
        index.add_features(features[n], {"tenant": "a" if n == "coffee" else "b"})
    coffee = features["coffee"].sha256
    index._rows[coffee] = dataclasses.replace(index._rows[coffee], tags=Filter.parse({"tenant": "b"}).tokens()[0])
    index._dirty = True
    query = jpeg(np.ascontiguousarray(sample_bgr("coffee")[:, ::-1]))
    assert coffee not in [h.id for h in index.search(query, k=10, filter={"tenant": "b"})]


def test_local_index_counts_what_a_token_collision_let_through(monkeypatch, features):
    """("tenant", "b") hashed to the token of ("tenant", "a"): phase 1 lets a's rows through, the exact check drops them."""
    from pictrace.api import LocalIndex

    a_names = ("coffee", "rocket")
    query = jpeg(np.ascontiguousarray(sample_bgr("coffee")[:, ::-1]))
    honest = LocalIndex()
    for n in NAMES:
        honest.add_features(features[n], {"tenant": "a" if n in a_names else "b"})
    hits = honest.search(query, k=10, filter={"tenant": "b"})
    assert honest.last_filter_dropped == 0 and len(hits) == len(NAMES) - len(a_names)

    real = compact.filter_token
    monkeypatch.setattr(compact, "filter_token", lambda name, value: real(name, "a" if value == "b" else value))
    index = LocalIndex()
    for n in NAMES:
        index.add_features(features[n], {"tenant": "a" if n in a_names else "b"})
    a_ids = {features[n].sha256 for n in a_names}
    # Phase 1 alone cannot tell a from b now: every row's tag is the filter's token.
    tokens = Filter.parse({"tenant": "b"}).tokens()
    assert all(tagged(p, tokens).all() for p in index.partitions())
    hits = index.search(query, k=10, filter={"tenant": "b"})
    assert index.last_filter_dropped == len(a_ids)
    assert a_ids.isdisjoint(h.id for h in hits) and {h.meta["tenant"] for h in hits} == {"b"}
    assert len(hits) == len(NAMES) - len(a_ids)
    index.search(query, k=10)
    assert index.last_filter_dropped == 0  # no filter, nothing checked


@pytest.mark.parametrize("spec", [{"tenant": "b"}, {"tenant": "a"}, {"kind": "logo"}, {"tenant": ["a", "b"]}])
def test_scoring_the_matching_rows_alone_finds_the_same_candidates(monkeypatch, features, tagged_partition, spec):
    """A filter that leaves few rows scores them as a partition of their own (Partition.take): same answer."""
    from pictrace.core import candidates as phase1

    query = probe_of(jpeg(np.ascontiguousarray(sample_bgr("chelsea")[20:-20, ::-1])))
    tokens = Filter.parse(spec).tokens()
    monkeypatch.setattr(phase1, "SUBSET_SHARE", 10**9)  # never: score every row, mask the rest
    whole = [c.to_dict() for c in candidates(query, tagged_partition, per_signal=3, tags=tokens)]
    monkeypatch.setattr(phase1, "SUBSET_SHARE", 1)  # always: the matching rows alone
    alone = [c.to_dict() for c in candidates(query, tagged_partition, per_signal=3, tags=tokens)]
    assert alone == whole and whole


def test_a_partition_of_some_rows_keeps_their_words_tags_and_codes(tagged_partition):
    rows = np.array([1, 4, 6])
    part = tagged_partition.take(rows)
    assert part.id_list() == [tagged_partition.id(r) for r in rows]
    for mine, theirs in zip(part.rows(), [tagged_partition.rows()[r] for r in rows]):
        assert mine.sha256 == theirs.sha256
        for name in ("layout", "colour", "words", "semantic", "tags"):
            assert np.array_equal(getattr(mine, name), getattr(theirs, name)), name
    assert Partition.from_bytes(part.to_bytes()).id_list() == part.id_list()


def test_meta_leaves_room_for_every_label_in_the_row():
    from pictrace.core import compact
    from pictrace.core.features import STORED_LABELS
    from pictrace.core.filters import MAX_TAGS

    assert MAX_TAGS + STORED_LABELS <= compact.MAX_ROW_TAGS
