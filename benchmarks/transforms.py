"""Edited copies of catalog images: the benchmark's queries.

Each family is a named edit. Randomness (crop offsets, angles, text, ...)
comes from a generator seeded by (seed, family, source index), so a query set
is reproducible and a family's queries do not change when another family is
added.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

Edit = Callable[[np.ndarray, np.random.Generator], np.ndarray]
DEFAULT_JPEG_QUALITY = 92


@dataclass(frozen=True)
class Query:
    """One edited image and where it came from."""

    family: str
    source_name: str
    data: bytes


def encode_jpeg(img: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """JPEG-encode a BGR or grayscale array."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def crop_fraction(img: np.ndarray, area: float, cx: float, cy: float) -> np.ndarray:
    """Crop keeping the aspect ratio, covering ``area`` of the image, centred at (cx, cy) in [0, 1]."""
    h, w = img.shape[:2]
    ch, cw = max(1, round(h * area**0.5)), max(1, round(w * area**0.5))
    y0 = int(np.clip(round(cy * h - ch / 2), 0, h - ch))
    x0 = int(np.clip(round(cx * w - cw / 2), 0, w - cw))
    return img[y0 : y0 + ch, x0 : x0 + cw]


def centre_crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Central crop covering 60-70% of the area."""
    return crop_fraction(img, rng.uniform(0.60, 0.70), 0.5, 0.5)


def offcentre_crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Crop covering 60-70% of the area pushed towards a random corner."""
    area = rng.uniform(0.60, 0.70)
    return crop_fraction(img, area, rng.choice([0.0, 1.0]), rng.choice([0.0, 1.0]))


def downscale(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Resize to 25% of each side (INTER_AREA, as a thumbnailer would)."""
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)


def rotate_small(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate 5-15 degrees either way about the centre, same canvas, black corners."""
    angle = rng.uniform(5, 15) * rng.choice([-1, 1])
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def brightness_contrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast x0.7-1.4 and brightness -40..+40, clipped (a typical photo edit)."""
    alpha = rng.uniform(0.7, 1.4)
    beta = rng.uniform(20, 40) * rng.choice([-1, 1])
    return cv2.convertScaleAbs(img, alpha=alpha, beta=beta)


def blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, sigma 3."""
    return cv2.GaussianBlur(img, (0, 0), sigmaX=3, sigmaY=3)


def grayscale(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Single-channel grayscale (encoded as a grayscale JPEG)."""
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def text_overlay(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Big white outlined caption across the lower middle, like a meme or watermark."""
    out = img.copy()
    h, w = out.shape[:2]
    words = ["SALE 50%", "PicTrace", "COPYRIGHT", "HELLO WORLD", "(c) 2024 NEWS"]
    text = str(rng.choice(words))
    font = cv2.FONT_HERSHEY_DUPLEX
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 2)
    scale = 0.8 * w / tw
    thick = max(2, int(scale * 3))
    org = (int(0.1 * w), int(rng.uniform(0.55, 0.85) * h))
    cv2.putText(out, text, org, font, scale, (0, 0, 0), thick + max(2, thick // 2), cv2.LINE_AA)
    cv2.putText(out, text, org, font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def perspective(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Perspective warp moving each corner inwards by up to 12% of the side (photo of a screen)."""
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(0.0, 0.12, size=(4, 2)) * np.float32([w, h])
    signs = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    dst = (src + signs * jitter).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Decode(encode(img)) so a later step sees compression artefacts."""
    return cv2.imdecode(np.frombuffer(encode_jpeg(img, quality), np.uint8), cv2.IMREAD_UNCHANGED)


def crop_jpeg_brightness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Off-centre crop, then brightness/contrast, then JPEG q=50 (encoded later at q=50)."""
    return brightness_contrast(offcentre_crop(img, rng), rng)


def screenshot_like(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Small rotation + mirror + 50% downscale after a JPEG q=60 round trip."""
    img = rotate_small(_jpeg_roundtrip(img, 60), rng)
    h, w = img.shape[:2]
    return cv2.flip(cv2.resize(img, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA), 1)


def blur_gray_crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Central crop, grayscale, blur sigma 2."""
    return cv2.GaussianBlur(grayscale(centre_crop(img, rng), rng), (0, 0), sigmaX=2, sigmaY=2)


# name -> (edit, JPEG quality of the saved query)
FAMILIES: dict[str, tuple[Edit, int]] = {
    "jpeg_q30": (lambda img, rng: img, 30),
    "downscale_25": (downscale, DEFAULT_JPEG_QUALITY),
    "crop_centre": (centre_crop, DEFAULT_JPEG_QUALITY),
    "crop_offcentre": (offcentre_crop, DEFAULT_JPEG_QUALITY),
    "rotate_90": (lambda img, rng: cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE), DEFAULT_JPEG_QUALITY),
    "rotate_180": (lambda img, rng: cv2.rotate(img, cv2.ROTATE_180), DEFAULT_JPEG_QUALITY),
    "rotate_270": (lambda img, rng: cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE), DEFAULT_JPEG_QUALITY),
    "rotate_small": (rotate_small, DEFAULT_JPEG_QUALITY),
    "mirror": (lambda img, rng: cv2.flip(img, 1), DEFAULT_JPEG_QUALITY),
    "brightness_contrast": (brightness_contrast, DEFAULT_JPEG_QUALITY),
    "blur_sigma3": (blur, DEFAULT_JPEG_QUALITY),
    "grayscale": (grayscale, DEFAULT_JPEG_QUALITY),
    "text_overlay": (text_overlay, DEFAULT_JPEG_QUALITY),
    "perspective": (perspective, DEFAULT_JPEG_QUALITY),
    "combo_crop_bright_jpeg50": (crop_jpeg_brightness, 50),
    "combo_rot_mirror_half_jpeg": (screenshot_like, 75),
    "combo_crop_gray_blur": (blur_gray_crop, DEFAULT_JPEG_QUALITY),
}


def family_rng(seed: int, family: str, source_index: int) -> np.random.Generator:
    """Generator private to one (family, source) pair."""
    return np.random.default_rng([seed, zlib.crc32(family.encode()), source_index])


def make_query(img: np.ndarray, family: str, source_name: str, source_index: int, seed: int) -> Query:
    """Apply one family's edit to a decoded BGR image and encode it as JPEG."""
    edit, quality = FAMILIES[family]
    out = edit(img, family_rng(seed, family, source_index))
    return Query(family, source_name, encode_jpeg(out, quality))
