"""Colour histograms with brightness and contrast undone.

A brightness or contrast edit moves every pixel along the brightness axis,
so two histograms of the same picture before and after it barely overlap.
:func:`tone_normalised` re-bins a sparse 32x32x32 BGR histogram after the
affine change that brings its brightness (BT.601 luma) to a fixed mean and
spread, applied to all three channels alike: hue and saturation, which such
an edit keeps, still decide the comparison.  The mean and spread are
computed from the histogram itself, using bin centres, so no pixels are
needed.  Pixels an edit clipped to black or white are lost to it, so a
strong contrast boost is undone only in part.
"""

from __future__ import annotations

import numpy as np

from pictrace.core.features import HIST_BINS

BINS = 16  # coarser than the source: bin centres land unevenly once stretched
SPREAD = 50.0  # target standard deviation of brightness, in 0-255 levels
MIN_SPREAD = 4.0  # below this a picture is flat; stretching it would amplify noise

_IDS = np.arange(HIST_BINS**3)
_CENTRE = (np.arange(HIST_BINS) + 0.5) * (256 / HIST_BINS)
# (32^3, 3) B, G, R bin centres and their luma, in the histogram's bin order.
_BGR = np.stack(
    [_CENTRE[_IDS // HIST_BINS**2], _CENTRE[(_IDS // HIST_BINS) % HIST_BINS], _CENTRE[_IDS % HIST_BINS]], axis=1
)
_LUMA = _BGR @ np.array([0.114, 0.587, 0.299])


def tone_normalised(index: np.ndarray, values: np.ndarray, *, brightness_only: bool = False) -> np.ndarray:
    """Square root of the brightness- and contrast-normalised histogram.

    ``index``/``values`` are a sparse 32^3 BGR histogram (any positive
    scale).  Returns a dense ``BINS**3`` vector, or ``BINS`` when
    ``brightness_only`` (for colourless images).
    """
    idx = index.astype(np.intp)
    w = values.astype(np.float64)
    total = float(w.sum())
    if total <= 0:
        return np.zeros(BINS if brightness_only else BINS**3)
    luma = _LUMA[idx]
    mean = float((w * luma).sum() / total)
    spread = max(MIN_SPREAD, float(np.sqrt((w * (luma - mean) ** 2).sum() / total)))

    def to_bin(levels: np.ndarray) -> np.ndarray:
        stretched = (levels - mean) / spread * SPREAD + 128.0
        return np.clip(stretched * BINS / 256.0, 0, BINS - 1).astype(np.intp)

    if brightness_only:
        return np.sqrt(np.bincount(to_bin(luma), weights=w, minlength=BINS))
    b = to_bin(_BGR[idx])
    flat = (b[:, 0] * BINS + b[:, 1]) * BINS + b[:, 2]
    return np.sqrt(np.bincount(flat, weights=w, minlength=BINS**3))
