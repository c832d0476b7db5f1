"""Display thumbnails: a small JPEG of each catalog image, made at ingest.

A thumbnail is what the web page's catalog and result cards show, so it is
small (longest side :data:`THUMB_SIDE`) and bounded in bytes
(:data:`MAX_THUMB_BYTES`): each card then costs a few kilobytes instead of
the original's megabytes.  It is made from the image the features were
computed from (decoded once, at up to 1/8 scale for large JPEGs, never below
768 pixels on its long side), so ingest decodes nothing twice.

JPEG rather than WebP: every browser and image viewer shows it, and OpenCV
writes it everywhere.  Transparent images were already flattened on white
by the decoder.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from pictrace.core.decode import decode
from pictrace.core.features import DECODE_SIDE, ImageFeatures, features_from_image
from pictrace.core.probe import probe

THUMB_SIDE = 256
MAX_THUMB_BYTES = 48 * 1024
CONTENT_TYPE = "image/jpeg"
# Tried in turn until the JPEG fits MAX_THUMB_BYTES; a 256-pixel photo is
# about 15-25 KB at 80, so the lower ones are for noise-like images.
_QUALITIES = (80, 65, 50, 35)


def make_thumbnail(image: np.ndarray, side: int = THUMB_SIDE, max_bytes: int = MAX_THUMB_BYTES) -> bytes:
    """A JPEG of a BGR uint8 ``image`` whose longest side is at most ``side``.

    The aspect ratio is kept; an image already smaller is not enlarged.
    The quality steps down until the file fits ``max_bytes``; the last step
    also halves the size, which always fits (a 128-pixel JPEG at quality 35
    is under 10 KB whatever it shows).
    """
    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image
    for quality in _QUALITIES:
        data = _jpeg(small, quality)
        if len(data) <= max_bytes:
            return data
    half = (max(1, size[0] // 2), max(1, size[1] // 2))
    return _jpeg(cv2.resize(small, half, interpolation=cv2.INTER_AREA), _QUALITIES[-1])


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # OpenCV encodes any non-empty BGR uint8 array; this is a defect, not bad input
        raise RuntimeError("OpenCV could not encode a thumbnail")
    return buf.tobytes()


def features_and_thumbnail(data: bytes, *, max_pixels: int = 50_000_000) -> tuple[ImageFeatures, bytes]:
    """:func:`~pictrace.core.features.extract_features` and the thumbnail, from one decode.

    Raises the decode errors (``InvalidImage`` and subclasses) for bad input.
    """
    info = probe(data)
    image = decode(data, max_pixels=max_pixels, max_side=DECODE_SIDE)
    features = features_from_image(image, hashlib.sha256(data).hexdigest(), original_size=info.oriented_size)
    return features, make_thumbnail(image)
