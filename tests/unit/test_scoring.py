"""Scoring: the seed's three signals on stored features, and the default ranking, through both search phases."""


import dataclasses

import cv2
import numpy as np
import pytest

from pictrace.core import transforms
from pictrace.core.features import dense_histogram, canonical_square, extract_features
from pictrace.core.merge import merge_topk
from pictrace.core.scoring import (
    Match,
    _flann_knn,
    hist_correlation,
    hist_correlation_dense,
    orb_ratio_score,
    query_from_bytes,
)
from pictrace.core import compact
from pictrace.core.candidates import candidates, query_side, shortlist
from pictrace.core.partition import Partition
from pictrace.core.rerank import rerank
from tests.conftest import jpeg, sample_bgr

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "page", "horse")


@pytest.fixture(scope="module")
def catalog():
    feats = {n: extract_features(jpeg(sample_bgr(n))) for n in NAMES}
    part = Partition.build(compact.index_row(f) for f in feats.values())
    by_id = {f.sha256: f for f in feats.values()}
    return feats, part, by_id


def score_all(query, catalog, *, k=5, ranking="default", exclude=(), per_signal=8, details=None):
    """Both phases over the test catalog; matches carry the sample's name."""
    feats, part, by_id = catalog
    names = {f.sha256: n for n, f in feats.items()}
    short = shortlist(candidates(query_side(query), part, per_signal=per_signal, exclude=exclude), per_signal)
    found, _ = rerank(query, short, by_id if details is None else details, k=k, ranking=ranking)
    return [dataclasses.replace(m, meta={"name": names[m.id]}) for m in found]


def _search(catalog, img, **kw):
    return score_all(query_from_bytes(jpeg(img)), catalog, **kw)


EDITS = {
    "rot90": lambda im: np.rot90(im),
    "rot270": lambda im: np.rot90(im, 3),
    "mirror": lambda im: im[:, ::-1],
    "crop": lambda im: im[im.shape[0] // 6 : -im.shape[0] // 6, im.shape[1] // 6 : -im.shape[1] // 6],
    "gray": lambda im: cv2.cvtColor(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR),
    "darker": lambda im: cv2.convertScaleAbs(im, alpha=0.7, beta=-10),
    "blur": lambda im: cv2.GaussianBlur(im, (9, 9), 3),
    "half": lambda im: cv2.resize(im, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
def test_default_ranking_finds_the_original(catalog, name, edit):
    hits = _search(catalog, np.ascontiguousarray(EDITS[edit](sample_bgr(name))), k=3)
    assert hits[0].meta["name"] == name
    assert hits[0].score > hits[1].score


@pytest.mark.parametrize("edit,expected", [("rot90", "rot90"), ("rot270", "rot270"), ("mirror", "mirror"), ("half", "identity")])
def test_transform_names_the_edit(catalog, edit, expected):
    hits = _search(catalog, np.ascontiguousarray(EDITS[edit](sample_bgr("astronaut"))), k=1)
    assert hits[0].transform == expected


def test_rotated_copy_scores_like_the_original_by_default_but_not_in_seed(catalog):
    img = np.ascontiguousarray(np.rot90(sample_bgr("coffee")))
    default = _search(catalog, img, k=1)[0]
    seed = _search(catalog, img, k=1, ranking="seed")
    assert default.ssim > 0.9
    assert seed[0].ssim < 0.6 or seed[0].meta["name"] != "coffee"


def test_seed_signals_match_the_original_definitions(catalog):
    feats = catalog[0]
    q = query_from_bytes(jpeg(sample_bgr("chelsea"), quality=40))
    hit = next(m for m in score_all(q, catalog, k=len(NAMES), ranking="seed") if m.meta["name"] == "chelsea")
    cand = feats["chelsea"]
    # histogram: OpenCV's correlation on the dense histograms
    qd = np.zeros(32**3, np.float32)
    qd[q.features.hist_index] = q.features.hist_value
    cd = np.zeros(32**3, np.float32)
    cd[cand.hist_index] = cand.hist_value
    assert hit.hist == pytest.approx(hist_correlation_dense(qd, cd), abs=1e-5)
    # ORB: FLANN LSH + ratio test, good / query keypoints
    assert 0 < hit.orb <= 1
    assert hit.score == pytest.approx((hit.ssim + hit.orb + hit.hist) / 3)


def test_sparse_histogram_correlation_equals_opencv():
    a = canonical_square(sample_bgr("astronaut"))
    b = canonical_square(sample_bgr("coffee"))
    qa = query_from_bytes(jpeg(sample_bgr("astronaut")))
    fb = extract_features(jpeg(sample_bgr("coffee")))
    dense_q = np.zeros(32**3, np.float32)
    dense_q[qa.features.hist_index] = qa.features.hist_value
    dense_b = np.zeros(32**3, np.float32)
    dense_b[fb.hist_index] = fb.hist_value
    assert hist_correlation(qa, fb) == pytest.approx(hist_correlation_dense(dense_q, dense_b), abs=1e-5)
    assert hist_correlation_dense(dense_histogram(a), dense_histogram(b)) < 0.9


def test_orb_score_bounds():
    f = extract_features(jpeg(sample_bgr("astronaut")))
    assert orb_ratio_score(f.descriptors, f.descriptors[:1], _flann_knn) == 0.0  # fewer than 2 candidates
    assert orb_ratio_score(f.descriptors[:0], f.descriptors, _flann_knn) == 0.0  # no query keypoints
    assert 0.9 < orb_ratio_score(f.descriptors, f.descriptors, _flann_knn) <= 1.0


def test_excluded_ids_never_come_back(catalog):
    feats = catalog[0]
    q = query_from_bytes(jpeg(sample_bgr("coffee")))
    hits = score_all(q, catalog, k=8, exclude=[feats["coffee"].sha256])
    assert "coffee" not in {h.meta["name"] for h in hits}
    assert len(hits) == len(NAMES) - 1


def test_ids_the_loader_no_longer_has_are_skipped(catalog):
    feats, _, by_id = catalog
    gone = feats["rocket"].sha256
    partial = {i: f for i, f in by_id.items() if i != gone}
    hits = score_all(query_from_bytes(jpeg(sample_bgr("rocket"))), catalog, k=8, details=partial)
    assert gone not in {h.id for h in hits}


def test_unknown_ranking_is_refused(catalog):
    with pytest.raises(ValueError):
        _search(catalog, sample_bgr("coins"), ranking="fastest")


def test_shortlist_bounds_the_work(catalog):
    _, part, _ = catalog
    short = shortlist(candidates(query_side(query_from_bytes(jpeg(sample_bgr("coins")))), part, per_signal=2), 2)
    assert 2 <= len(short) <= 8  # top 2 of each of four coarse signals, overlapping


def test_dihedral_transforms_are_a_group():
    grid = np.arange(16).reshape(4, 4)
    for i in range(8):
        assert np.array_equal(transforms.apply(transforms.apply(grid, i), transforms.inverse(i)), grid)
    assert len({transforms.apply(grid, i).tobytes() for i in range(8)}) == 8


def _m(i, score, url=""):
    return Match(id=i, score=score, ssim=score, orb=score, hist=score, meta={"image_url": url} if url else {})


def test_merge_keeps_best_per_id_and_breaks_ties_by_id():
    merged = merge_topk([[_m("b", 0.5), _m("a", 0.9)], [_m("a", 0.7), _m("c", 0.5)]], k=3)
    assert [(m.id, m.score) for m in merged] == [("a", 0.9), ("b", 0.5), ("c", 0.5)]


def test_merge_removes_duplicate_urls_and_respects_k():
    merged = merge_topk([[_m("a", 0.9, "http://x/1.jpg"), _m("b", 0.8, "http://x/1.jpg"), _m("c", 0.1)]], k=5)
    assert [m.id for m in merged] == ["a", "c"]
    assert len(merge_topk([[_m(str(i), i / 10) for i in range(10)]], k=4)) == 4


def test_match_json_round_trip():
    m = Match(id="x", score=0.5, ssim=0.1, orb=0.2, hist=0.3, transform="rot90", meta={"name": "n"})
    back = Match.from_dict(m.to_dict())
    assert back.scores == m.scores and back.transform == "rot90" and back.meta == {"name": "n"}


def test_grayscale_copy_is_compared_by_brightness():
    from pictrace.core.scoring import hist_similarity

    colour = extract_features(jpeg(sample_bgr("coffee")))
    other_grey = extract_features(jpeg(sample_bgr("camera")))
    q = query_from_bytes(jpeg(EDITS["gray"](sample_bgr("coffee"))))
    assert q.colourless and not query_from_bytes(jpeg(sample_bgr("coffee"))).colourless
    # the original's raw correlation prefers any grey image; brightness does not
    assert hist_correlation(q, other_grey) > hist_correlation(q, colour)
    assert hist_similarity(q, colour) > hist_similarity(q, other_grey)


@pytest.mark.parametrize("name", ["astronaut", "rocket"])
def test_square_root_histograms_are_not_decided_by_black_corners(name):
    """A perspective warp adds black corners; raw counts then favour any dark-backed image."""
    from skimage import data

    from pictrace.core.scoring import hist_similarity

    img = sample_bgr(name)
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * np.float32([w, h]) * 0.12
    warped = cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (w, h))
    q = query_from_bytes(jpeg(warped))
    original = extract_features(jpeg(img))
    wheel = extract_features(jpeg(cv2.cvtColor(data.colorwheel(), cv2.COLOR_RGB2BGR)))
    assert hist_correlation(q, wheel) > hist_correlation(q, original)
    assert hist_similarity(q, original) > hist_similarity(q, wheel)


def test_orb_share_counts_at_least_the_minimum_keypoints():
    f = extract_features(jpeg(sample_bgr("astronaut")))
    few = f.descriptors[:2]
    assert orb_ratio_score(few, f.descriptors, _flann_knn) >= 0.5
    assert orb_ratio_score(few, f.descriptors, _flann_knn, min_keypoints=50) <= 2 / 50


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("corner", [(0, 0), (1, 1), (0, 1)])
@pytest.mark.parametrize("mirrored", [False, True])
def test_a_tight_corner_crop_is_found_with_the_right_mirror(catalog, name, corner, mirrored):
    # A crop's layout resembles no symmetry of the original in particular;
    # the visual words it shares with the original still tell a mirror apart.
    img = sample_bgr(name)
    h, w = img.shape[:2]
    ch, cw = int(h * 0.55), int(w * 0.55)
    y0, x0 = int((h - ch) * corner[0]), int((w - cw) * corner[1])
    crop = img[y0 : y0 + ch, x0 : x0 + cw]
    hit = _search(catalog, np.ascontiguousarray(crop[:, ::-1] if mirrored else crop), k=1)[0]
    assert hit.meta["name"] == name
    assert hit.transform == ("mirror" if mirrored else "identity")


def test_the_default_score_is_the_mean_of_the_signals_the_pair_has():
    from pictrace.core.scoring import copy_score

    assert copy_score(0.6, 0.0, 0.9) == pytest.approx(0.5)
    assert copy_score(0.6, 0.0, 0.9, 0.9) == pytest.approx(0.6)
    # A semantic score of 0 is a signal, not a missing one.
    assert copy_score(0.6, 0.0, 0.9, 0.0) == pytest.approx(0.375)
