"""The eight symmetries of a square (rotations by 90 degrees, with or without a mirror).

A query may be a rotated or mirrored copy of a catalog image.  Comparing the
catalog image with each of the query's eight variants, and keeping the best,
makes the layout and SSIM signals blind to those edits.
"""

from __future__ import annotations

import numpy as np

# (mirror first?, quarter turns counter-clockwise) in a fixed order; index 0 is the identity.
DIHEDRAL: tuple[tuple[bool, int], ...] = tuple((m, k) for m in (False, True) for k in range(4))


def apply(square: np.ndarray, index: int) -> np.ndarray:
    """Apply dihedral transform ``index`` (0-7) to the first two axes of ``square``."""
    mirror, turns = DIHEDRAL[index]
    out = np.fliplr(square) if mirror else square
    return np.ascontiguousarray(np.rot90(out, turns))


def name(index: int) -> str:
    """Human-readable name: ``identity``, ``rot90``, ``mirror``, ``mirror+rot180``..."""
    mirror, turns = DIHEDRAL[index]
    parts = (["mirror"] if mirror else []) + ([f"rot{90 * turns}"] if turns else [])
    return "+".join(parts) or "identity"


def inverse(index: int) -> int:
    """Index of the transform that undoes ``index`` (mirrors are their own inverse)."""
    mirror, turns = DIHEDRAL[index]
    return index if mirror else DIHEDRAL.index((False, (4 - turns) % 4))


def is_mirror(index: int) -> bool:
    return DIHEDRAL[index][0]
