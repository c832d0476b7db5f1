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
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Sides of the crop relative to the whole image that are tried: from a 0.8
# share down to a quarter of the area.
SCALES: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5)
SEARCH_SIDE = 64


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
