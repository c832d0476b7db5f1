"""Crop alignment: a cropped query is compared with the square of the original it came from."""

import cv2
import numpy as np
import pytest

from pictrace.core import align, transforms
from pictrace.core.features import extract_features
from pictrace.core.scoring import aligned_ssim, good_matches, match_homography, query_from_bytes
from pictrace.core.ssim import ssim
from tests.conftest import jpeg, sample_bgr


def _crop(img: np.ndarray, side: float, fx: float, fy: float) -> np.ndarray:
    """The ``side`` fraction of each dimension, its corner at (fx, fy) of the room left."""
    h, w = img.shape[:2]
    ch, cw = round(h * side), round(w * side)
    y0, x0 = round((h - ch) * fy), round((w - cw) * fx)
    return img[y0 : y0 + ch, x0 : x0 + cw]


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
@pytest.mark.parametrize("fx, fy", [(0.5, 0.5), (0.0, 0.0), (1.0, 0.0), (1.0, 1.0)])
def test_a_crop_is_found_where_it_was_cut(name, fx, fy):
    img = sample_bgr(name)
    query = query_from_bytes(jpeg(_crop(img, 0.8, fx, fy)))
    cand = extract_features(jpeg(img))
    found = align.crop_alignment(query.small_thumbs(0), cand.thumb)
    assert found is not None and found.scale == pytest.approx(0.8)
    room = cand.thumb.shape[0] - found.side
    # Within one search-resolution pixel (4 thumbnail pixels) of the true corner.
    assert abs(found.x - fx * room) <= 5 and abs(found.y - fy * room) <= 5


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket"])
def test_aligned_ssim_of_a_crop_is_far_above_the_whole_frame_ssim(name):
    img = sample_bgr(name)
    query = query_from_bytes(jpeg(_crop(img, 0.8, 1.0, 1.0)))
    cand = extract_features(jpeg(img))
    whole = ssim(query.features.thumb, cand.thumb)
    aligned = aligned_ssim(query, 0, cand)
    assert aligned > 0.75 and aligned > whole + 0.2


def test_aligned_ssim_gives_an_unrelated_picture_no_lift():
    query = query_from_bytes(jpeg(_crop(sample_bgr("astronaut"), 0.8, 0.5, 0.5)))
    other = extract_features(jpeg(sample_bgr("coffee")))
    assert aligned_ssim(query, 0, other) < 0.35


def test_aligned_ssim_of_an_uncropped_copy_is_its_plain_ssim_or_better():
    img = sample_bgr("chelsea")
    query = query_from_bytes(jpeg(img, 60))
    cand = extract_features(jpeg(img))
    assert aligned_ssim(query, 0, cand) >= ssim(query.features.thumb, cand.thumb)


def test_a_flat_query_has_no_alignment():
    flat = np.full((200, 300, 3), 90, np.uint8)
    query = query_from_bytes(cv2.imencode(".png", flat)[1].tobytes())
    cand = extract_features(jpeg(sample_bgr("coffee")))
    assert align.crop_alignment(query.small_thumbs(0), cand.thumb) is None


def _rotated(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _warped(img: np.ndarray, inset: float) -> np.ndarray:
    """Perspective warp: the top corners pulled in by ``inset`` of the width, like a photo of a screen."""
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[inset * w, 0.05 * h], [(1 - inset) * w, 0.05 * h], [w, h], [0, h]])
    return cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (w, h))


def _homography(query, cand, mirrored=False):
    descriptors = query.mirror_descriptors if mirrored else query.features.descriptors
    return match_homography(query, cand, good_matches(descriptors, cand.descriptors), mirrored)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
@pytest.mark.parametrize("edit", [lambda im: _rotated(im, 12), lambda im: _rotated(im, -7), lambda im: _warped(im, 0.1)])
def test_a_rotated_or_warped_copy_is_lined_up_by_its_keypoints(name, edit):
    img = sample_bgr(name)
    query = query_from_bytes(jpeg(edit(img)))
    cand = extract_features(jpeg(img))
    whole = ssim(query.features.thumb, cand.thumb)
    aligned = aligned_ssim(query, 0, cand, _homography(query, cand))
    assert aligned > 0.7 and aligned > whole + 0.15


def test_the_homography_of_a_rotation_is_that_rotation():
    img = sample_bgr("astronaut")
    query = query_from_bytes(jpeg(_rotated(img, 10)))
    cand = extract_features(jpeg(img))
    h = _homography(query, cand)
    assert h is not None
    side = cand.thumb.shape[0]
    # The astronaut photo is square, so its thumbnail rotates by the same angle.
    expected = np.vstack([cv2.getRotationMatrix2D((side / 2 - 0.5, side / 2 - 0.5), 10, 1.0), [0, 0, 1]])
    corners = np.float32([[0, 0], [side, 0], [side, side], [0, side]]).reshape(-1, 1, 2)
    got = cv2.perspectiveTransform(corners, h / h[2, 2])
    want = cv2.perspectiveTransform(corners, expected)
    assert np.abs(got - want).max() < 3.0


def test_too_few_matches_give_no_homography():
    pts = np.float32([[10, 10], [200, 30], [40, 220], [180, 190], [128, 128]])
    assert align.keypoint_homography(pts, pts, 256) is None


def test_matches_that_agree_on_no_map_give_no_homography():
    rng = np.random.default_rng(3)
    q, c = rng.uniform(0, 256, (2, 200, 2)).astype(np.float32)
    assert align.keypoint_homography(q, c, 256) is None


def test_a_small_tile_cannot_claim_the_picture_it_was_cut_from():
    # The query is the whole picture, the candidate a tile of a ninth of it
    # blown up: the query's frame would cover nine times the candidate.
    rng = np.random.default_rng(5)
    cand_pts = rng.uniform(0, 256, (60, 2)).astype(np.float32)
    query_pts = (cand_pts / 3 + 40).astype(np.float32)
    assert align.keypoint_homography(query_pts, cand_pts, 256) is None
    # The same matches the other way round are a crop, which is allowed.
    assert align.keypoint_homography(cand_pts, query_pts, 256) is not None


def test_a_mirrored_crop_is_lined_up_through_the_mirrored_keypoints():
    img = sample_bgr("coffee")
    query = query_from_bytes(jpeg(np.ascontiguousarray(_rotated(img, 8)[:, ::-1])))
    cand = extract_features(jpeg(img))
    h = _homography(query, cand, mirrored=True)
    plain = aligned_ssim(query, 4, cand)  # index 4: mirror, no turn
    aligned = aligned_ssim(query, 4, cand, h)
    assert aligned > 0.7 and aligned > plain + 0.1
    assert align.dihedral_of(h, cand.thumb.shape[0]) == 4


@pytest.mark.parametrize("index", range(8))
def test_the_symmetry_a_homography_performs_is_named(index):
    side = 256
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), axis=-1).astype(np.float32)
    moved = transforms.apply(grid, index)  # moved[y, x] = source (x, y) of output pixel (x, y)
    dst = np.float32([[0, 0], [side - 1, 0], [side - 1, side - 1], [0, side - 1]])
    src = np.float32([moved[int(y), int(x)] for x, y in dst])
    h = cv2.getPerspectiveTransform(src, dst)
    # A slight perspective on top must not change the answer.
    h = h @ np.array([[1.0, 0.02, 0.0], [0.01, 1.0, 0.0], [2e-5, 1e-5, 1.0]])
    assert align.dihedral_of(h, side) == index
