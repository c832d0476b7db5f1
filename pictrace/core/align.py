"""Lining up a cropped copy with its original before SSIM compares them.

SSIM compares two thumbnails pixel by pixel, so a query cut from a larger
image scores low against that image although every pixel it has is there.
:func:`crop_alignment` finds, at low resolution, the square of the
candidate's thumbnail the query's thumbnail fills best: normalised
cross-correlation (``cv2.matchTemplate``, ``TM_CCOEFF_NORMED``) over a few
scales, which also ignores brightness and contrast changes.  SSIM is then
taken between the two full-resolution squares that correspond.

Both thumbnails are squares of whole images, so a crop that keeps the
image's aspect ratio is a square in both, of side ``scale`` times the
thumbnail's.  Only the query is taken to be the crop: placing a candidate
inside the query would let every small tile of a picture claim the whole
picture's score.

Edits that are not a crop (a small rotation, a perspective warp, a crop of
another aspect ratio) are undone by :func:`keypoint_homography` instead: the
perspective map that carries the candidate's matched ORB keypoints onto the
query's, fitted with RANSAC, warps the candidate's thumbnail onto the
query's before SSIM.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pictrace.core import transforms

# Sides of the crop relative to the whole image that are tried: from a 0.8
# share down to a quarter of the area.
SCALES: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5)
SEARCH_SIDE = 64
# A homography needs this many matches consistent with it (RANSAC inliers);
# with fewer, chance matches between unrelated images can fit one.
MIN_INLIERS = 10
RANSAC_ITERATIONS = 500
# RANSAC's tolerance, in pixels of the 256-pixel thumbnail (4 at ORB's 1024).
REPROJECTION_PX = 1.0
# The query's frame, carried into the candidate's, may cover at most this
# many times the candidate's area: a perspective warp or rotation shows a
# little more than the original, but a small tile blown up must not claim a
# picture it is part of.
MAX_AREA_RATIO = 2.0
MIN_AREA_RATIO = 0.05


@dataclass(frozen=True)
class Alignment:
    """Where the query sits: square ``[y:y+side, x:x+side]`` of the candidate's thumbnail."""

    x: int
    y: int
    side: int
    scale: float
    correlation: float


def small(thumb: np.ndarray) -> np.ndarray:
    """The thumbnail at the search resolution, as float32."""
    return cv2.resize(thumb, (SEARCH_SIDE, SEARCH_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)


def scaled(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` shrunk to ``scale`` of its side (INTER_AREA)."""
    side = max(1, round(image.shape[0] * scale))
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


def crop_alignment(query_small: dict[float, np.ndarray], cand_thumb: np.ndarray) -> Alignment | None:
    """Best placement of the query inside the candidate, or None if nothing correlates.

    ``query_small`` maps each scale in :data:`SCALES` to the query's
    search-resolution thumbnail (:func:`small`) shrunk by it.
    """
    cand_small = small(cand_thumb)
    full = cand_thumb.shape[0]
    best: Alignment | None = None
    for s in SCALES:
        template = query_small[s]
        if float(template.std()) < 1e-3:  # a flat template correlates with nothing
            continue
        _, val, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(cand_small, template, cv2.TM_CCOEFF_NORMED))
        if not np.isfinite(val) or (best is not None and val <= best.correlation):
            continue
        side = round(full * s)
        k = full / SEARCH_SIDE
        best = Alignment(
            x=int(min(round(x * k), full - side)),
            y=int(min(round(y * k), full - side)),
            side=side,
            scale=s,
            correlation=float(val),
        )
    return best


def candidate_square(alignment: Alignment, cand_thumb: np.ndarray) -> np.ndarray:
    """The square of the candidate's thumbnail the alignment says the query fills."""
    a = alignment
    return cand_thumb[a.y : a.y + a.side, a.x : a.x + a.side]


def thumb_points(points: np.ndarray, side: int, thumb_side: int) -> np.ndarray:
    """Pixel positions in a ``side`` square carried into its ``thumb_side`` thumbnail."""
    f = side / thumb_side
    # Pixel centres: thumbnail pixel j averages source pixels [j*f, (j+1)*f).
    return ((points.astype(np.float64) + 0.5) / f - 0.5).astype(np.float32)


def keypoint_homography(query_pts: np.ndarray, cand_pts: np.ndarray, thumb_side: int) -> np.ndarray | None:
    """The perspective map from candidate to query thumbnail fitting the matches, or None.

    ``query_pts[i]`` and ``cand_pts[i]`` (thumbnail pixels) are one match.
    None when too few matches agree, or when the map is implausible for an
    edit: folded (not convex), or carrying the query's frame onto an area of
    the candidate outside [MIN_AREA_RATIO, MAX_AREA_RATIO] times its own.
    """
    if len(query_pts) < MIN_INLIERS:
        return None
    # OpenCV's RANSAC seeds its generator the same way on every call, so the
    # fit, and the score, is deterministic.  Matches of an edited copy agree
    # in large shares and stop RANSAC early; the iteration cap is what an
    # unrelated candidate costs, so it is set where a share of 30% still
    # finds its fit with 98% confidence (2,000 by default: a third of
    # a rerank's time went to unrelated candidates).
    h, inliers = cv2.findHomography(cand_pts, query_pts, cv2.RANSAC, REPROJECTION_PX, maxIters=RANSAC_ITERATIONS)
    if h is None or inliers is None or int(inliers.sum()) < MIN_INLIERS:
        return None
    if not np.isfinite(h).all() or abs(np.linalg.det(h)) < 1e-12:
        return None
    n = float(thumb_side)
    frame = np.float32([[0, 0], [n, 0], [n, n], [0, n]]).reshape(-1, 1, 2)
    try:
        corners = cv2.perspectiveTransform(frame, np.linalg.inv(h)).reshape(-1, 2)
    except np.linalg.LinAlgError:
        return None
    if not np.isfinite(corners).all() or not cv2.isContourConvex(corners.astype(np.float32)):
        return None
    area = abs(cv2.contourArea(corners.astype(np.float32))) / (n * n)
    if not MIN_AREA_RATIO <= area <= MAX_AREA_RATIO:
        return None
    return h


def warp_onto_query(cand_thumb: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The candidate's thumbnail seen through ``h``, in the query thumbnail's frame.

    Pixels with no source are black, as rotating or warping tools fill them.
    """
    side = cand_thumb.shape[0]
    return cv2.warpPerspective(
        cand_thumb, h, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def _dihedral_matrix(index: int) -> np.ndarray:
    """The 2x2 map of (x, y) offsets from the centre that ``transforms.apply(., index)`` performs."""
    offsets = np.stack(np.meshgrid(np.arange(-1, 2), np.arange(-1, 2)), axis=-1)  # [row, col] = (x, y)
    moved = transforms.apply(offsets, index)
    m = np.zeros((2, 2))
    for axis, unit in enumerate(((1, 0), (0, 1))):
        r, c = np.argwhere((moved == unit).all(axis=-1))[0]
        m[:, axis] = (c - 1, r - 1)
    return m


_DIHEDRAL_MATRICES = [_dihedral_matrix(i) for i in range(len(transforms.DIHEDRAL))]


def dihedral_of(h: np.ndarray, thumb_side: int) -> int:
    """The symmetry of the square closest to the turn or mirror that ``h`` performs.

    ``h`` maps the candidate's thumbnail onto the query's, so the result is
    the index ``i`` for which ``transforms.apply(candidate, i)`` looks most
    like the query; its local linear part is taken at the query's centre.
    """
    centre = np.float64([[thumb_side / 2, thumb_side / 2]]).reshape(-1, 1, 2)
    c = cv2.perspectiveTransform(centre, np.linalg.inv(h)).reshape(2)
    probe = np.float64([c, c + (1, 0), c + (0, 1)]).reshape(-1, 1, 2)
    p = cv2.perspectiveTransform(probe, h).reshape(3, 2)
    jacobian = np.stack([p[1] - p[0], p[2] - p[0]], axis=1)
    return int(np.argmax([float((m * jacobian).sum()) for m in _DIHEDRAL_MATRICES]))
