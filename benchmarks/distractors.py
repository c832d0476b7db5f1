"""Synthetic distractor images that pad the catalog to 1k / 10k entries.

Every distractor is built from the real photos but is not a near-duplicate of
any of them: it is either one small tile (at most 1/9 of a photo's area)
blown up, or a 2x2 mosaic of tiles from four different photos, and every tile
gets a colour change (hue rotation or channel permutation) and maybe a
mirror. Distractor ``i`` depends only on (seed, i) and the source photos, so
features can be cached and the set grows without changing earlier members.
"""

from __future__ import annotations

import cv2
import numpy as np

VERSION = 2  # bump when the generator changes so cached features are rebuilt
SOURCE_MAX_SIDE = 1600
OUTPUT_SIZES = ((640, 480), (800, 600), (1024, 768), (1024, 576), (768, 1024), (900, 900))
MAX_TILE_AREA = 1 / 9
MIN_TILE_AREA = 1 / 30
MOSAIC_SHARE = 0.3
# Tiles flatter than this are redrawn: blank tiles (e.g. from the black areas of
# flattened transparent wallpapers) encode to identical bytes, and a catalog
# keyed by content hash would silently drop the copies.
MIN_TILE_STD = 6.0
MAX_DRAWS = 20
_PERMUTATIONS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def shrink(img: np.ndarray, max_side: int = SOURCE_MAX_SIDE) -> np.ndarray:
    """Downscale so the longest side is at most ``max_side`` (sources are reused many times)."""
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def random_tile(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random axis-aligned, not blank tile covering 1/30 to 1/9 of the image's area.

    Up to MAX_DRAWS attempts; the last one is kept even if flat.
    """
    for _ in range(MAX_DRAWS):
        tile = _any_tile(img, rng)
        if float(tile.std()) >= MIN_TILE_STD:
            break
    return tile


def _any_tile(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random axis-aligned tile covering 1/30 to 1/9 of the image's area."""
    h, w = img.shape[:2]
    area = rng.uniform(MIN_TILE_AREA, MAX_TILE_AREA) * h * w
    aspect = rng.uniform(0.6, 1.7)
    th = int(min(h, max(8, round((area / aspect) ** 0.5))))
    tw = int(min(w, max(8, round(area / th))))
    y0 = int(rng.integers(0, h - th + 1))
    x0 = int(rng.integers(0, w - tw + 1))
    return img[y0 : y0 + th, x0 : x0 + tw]


def recolour(tile: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hue rotation by 40-140 degrees or a channel permutation; mirrored half the time."""
    if rng.random() < 0.5:
        hsv = cv2.cvtColor(tile, cv2.COLOR_BGR2HSV)
        shift = int(rng.integers(20, 71))  # OpenCV hue is 0..179, so 40..140 degrees
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    else:
        out = np.ascontiguousarray(tile[..., list(_PERMUTATIONS[int(rng.integers(len(_PERMUTATIONS)))])])
    return cv2.flip(out, 1) if rng.random() < 0.5 else out


def tile_image(sources: list[np.ndarray], rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """One recoloured tile of one photo, resized to ``size`` (w, h)."""
    tile = random_tile(sources[int(rng.integers(len(sources)))], rng)
    return cv2.resize(recolour(tile, rng), size, interpolation=cv2.INTER_CUBIC)


def mosaic_image(sources: list[np.ndarray], rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """2x2 mosaic of recoloured tiles from four different photos."""
    w, h = size
    picks = rng.choice(len(sources), size=4, replace=False)
    cells = [
        cv2.resize(recolour(random_tile(sources[int(p)], rng), rng), (w // 2, h // 2), interpolation=cv2.INTER_CUBIC)
        for p in picks
    ]
    return np.vstack([np.hstack(cells[:2]), np.hstack(cells[2:])])


def make_distractor(sources: list[np.ndarray], seed: int, index: int) -> np.ndarray:
    """Distractor number ``index`` as a BGR array."""
    rng = np.random.default_rng([seed, VERSION, index])
    size = OUTPUT_SIZES[int(rng.integers(len(OUTPUT_SIZES)))]
    if len(sources) >= 4 and rng.random() < MOSAIC_SHARE:
        return mosaic_image(sources, rng, size)
    return tile_image(sources, rng, size)


def encode_distractor(img: np.ndarray, index: int) -> bytes:
    """JPEG bytes (quality 85-95, varying by index) as a catalog upload would be."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85 + index % 11])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
