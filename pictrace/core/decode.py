"""Decode untrusted image bytes into an upright 8-bit BGR array.

The header is probed first, so the pixel cap is enforced before OpenCV
allocates anything. Every supported format comes out the same way: BGR,
uint8, three channels, C-contiguous, alpha flattened onto white, and turned
upright according to the file's orientation metadata.

Orientation is applied here rather than by OpenCV so that the result does not
depend on which formats a given OpenCV build reads EXIF from, and so the
decoded size can be checked against the header. The exception is TIFF, whose
decoder (libtiff) always applies its own Orientation tag, whatever the flags.

OpenCV also has its own pixel limit (environment variable
``OPENCV_IO_MAX_IMAGE_PIXELS``, 2**30 by default). It is not relied on, but a
``max_pixels`` above it makes images between the two fail as
:class:`CorruptImage` (OpenCV raises) rather than :class:`ImageTooLarge`.

A pixel cap alone does not bound the cost of decoding: a 16-bit RGBA image
takes eight bytes a pixel, a progressive JPEG keeps every coefficient, and
each of its scans is one more pass over them. So before decoding, the
header's layout is turned into the peak memory the decode will take
(:func:`decode_bytes`), which is capped by ``max_decode_bytes``, and JPEG
scans are capped by :data:`MAX_JPEG_SCANS`. Decoder output is converted to
BGR in bands of rows, so conversion adds one BGR image, never full-size
temporaries.
"""

from __future__ import annotations

import cv2
import numpy as np

from pictrace.core.probe import FORMAT_NAMES, ImageInfo, probe
from pictrace.errors import CorruptImage, ImageTooComplex, ImageTooLarge, UnsupportedFormat

DEFAULT_MAX_PIXELS = 50_000_000
MiB = 1024 * 1024
# Peak decoder memory allowed per image: 8-bit images within the pixel cap
# fit (50 MP of BGRA, held twice, is 382 MiB), and a request stays far inside
# a 1,769 MB function next to the ~115 MiB the API process holds once imported.
DEFAULT_MAX_DECODE_BYTES = 512 * MiB
# libjpeg's progressive script has 10 scans (6 for grey); encoders that tune
# their scans stay under about 20. Each scan is a pass over all coefficients.
MAX_JPEG_SCANS = 48
# Rows converted at a time by to_bgr8: big enough for whole-array speed,
# small enough that the temporaries are a few MiB at any width.
_BAND_ROWS = 256

# JPEG can be decoded at 1/2, 1/4 or 1/8 scale inside the DCT, which skips
# most of the work when the caller only needs a small image.
_JPEG_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_BMP_CORE_HEADER = (12).to_bytes(4, "little")
# Formats whose decoder applies the orientation tag itself.
_SELF_ORIENTING = frozenset({"tiff"})


def decode(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> np.ndarray:
    """Decode ``data`` to an upright BGR uint8 array of shape ``(H, W, 3)``.

    ``max_pixels`` caps the header's width*height, and ``max_decode_bytes``
    the peak memory the decode would take (:func:`decode_bytes`); larger
    images raise :class:`ImageTooLarge` without any pixel being decoded. A
    JPEG of more than :data:`MAX_JPEG_SCANS` scans raises
    :class:`ImageTooComplex`, also before decoding.

    ``max_side`` is a hint that the caller will shrink the result so that
    its longer side is about ``max_side``: a JPEG whose longer side is at
    least twice that is decoded at 1/2, 1/4 or 1/8 scale (the strongest
    reduction that keeps the longer side at or above ``max_side``). Other
    formats, and JPEGs too small to halve, are decoded at full size. The
    result is never resized beyond that.

    Raises :class:`UnsupportedFormat`, :class:`InvalidImage` or
    :class:`CorruptImage` (see :func:`probe`), :class:`ImageTooLarge`,
    :class:`ImageTooComplex`, and :class:`CorruptImage` when the pixel data
    cannot be decoded or does not match its header.
    """
    info = probe(data)
    check_pixel_cap(info, max_pixels)
    check_scans(info)
    factor = reduction_factor(info, max_side)
    check_decode_bytes(info, factor, max_decode_bytes)
    raw = _imdecode(data, info, factor)
    _check_decoded_size(raw, info, factor)
    image = to_bgr8(raw)
    del raw  # the decoder's output is dropped before the orientation copy is made
    if info.format not in _SELF_ORIENTING:
        image = apply_orientation(image, info.orientation)
    return np.ascontiguousarray(image)


def check_pixel_cap(info: ImageInfo, max_pixels: int) -> None:
    """Raise :class:`ImageTooLarge` if the header's pixel count exceeds ``max_pixels``."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if info.pixels > max_pixels:
        raise ImageTooLarge(
            f"image is {info.width}x{info.height} = {info.pixels:,} pixels; "
            f"the limit is {max_pixels:,} pixels",
            width=info.width,
            height=info.height,
            pixels=info.pixels,
            max_pixels=max_pixels,
        )


def check_scans(info: ImageInfo) -> None:
    """Raise :class:`ImageTooComplex` if a JPEG has more than :data:`MAX_JPEG_SCANS` scans."""
    if info.scans > MAX_JPEG_SCANS:
        raise ImageTooComplex(
            f"{FORMAT_NAMES[info.format]} image has {info.scans:,} scans; the limit is {MAX_JPEG_SCANS}",
            scans=info.scans,
            max_scans=MAX_JPEG_SCANS,
        )


def decode_bytes(info: ImageInfo, factor: int = 1) -> int:
    """Peak memory, in bytes, of decoding ``info`` at ``1/factor`` scale with :func:`decode`.

    The largest of three moments: OpenCV's decoder holds its image, a copy of
    it handed to Python and its own buffers (:attr:`ImageInfo.buffer_bytes`);
    then the decoder's output and its BGR conversion coexist; then the BGR
    image and its turned copy.
    """
    width, height = -(-info.width // factor), -(-info.height // factor)
    bgr = width * height * 3
    if info.format == "jpeg":
        output, converted = bgr, 0  # libjpeg writes BGR itself
    else:
        output = width * height * info.channels * info.sample_bytes
        converted = 0 if info.channels == 3 and info.sample_bytes == 1 else bgr
    turned = bgr if info.orientation != 1 and info.format not in _SELF_ORIENTING else 0
    return max(2 * output + info.buffer_bytes, output + converted, bgr + turned)


def check_decode_bytes(info: ImageInfo, factor: int, max_decode_bytes: int) -> None:
    """Raise :class:`ImageTooLarge` if decoding ``info`` would take more than ``max_decode_bytes``."""
    if max_decode_bytes < 1:
        raise ValueError(f"max_decode_bytes must be positive, got {max_decode_bytes}")
    needed = decode_bytes(info, factor)
    if needed > max_decode_bytes:
        depth = f"{info.channels} x {8 * info.sample_bytes}-bit samples"
        raise ImageTooLarge(
            f"decoding this {info.width}x{info.height} {FORMAT_NAMES[info.format]} image "
            f"({depth} a pixel) would take {needed / MiB:,.0f} MiB; "
            f"the limit is {max_decode_bytes / MiB:,.0f} MiB",
            width=info.width,
            height=info.height,
            pixels=info.pixels,
            decode_bytes=needed,
            max_decode_bytes=max_decode_bytes,
        )


def reduction_factor(info: ImageInfo, max_side: int | None) -> int:
    """Scale divisor (1, 2, 4 or 8) to decode ``info`` at, given ``max_side``."""
    if max_side is None:
        return 1
    if max_side < 1:
        raise ValueError(f"max_side must be positive, got {max_side}")
    if info.format != "jpeg":
        return 1
    longest = max(info.width, info.height)
    for factor in (8, 4, 2):
        if longest >= factor * max_side:
            return factor
    return 1


def _imdecode(data: bytes, info: ImageInfo, factor: int) -> np.ndarray:
    """Run OpenCV's decoder, turning its failures into :class:`CorruptImage`."""
    name = FORMAT_NAMES[info.format]
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _decode_flags(data, info, factor))
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise CorruptImage(f"{name} data could not be decoded: {reason}", format=info.format) from exc
    if image is None or image.size == 0:
        raise CorruptImage(
            f"{name} data could not be decoded (truncated or damaged)", format=info.format
        )
    return image


def _decode_flags(data: bytes, info: ImageInfo, factor: int) -> int:
    """OpenCV read flags that keep what :func:`to_bgr8` needs and nothing more."""
    if info.format == "jpeg":
        # JPEG has no alpha or deep samples worth keeping here, and libjpeg
        # converts grey, YCbCr and Adobe CMYK/YCCK straight to BGR.
        return _JPEG_REDUCED[factor] | cv2.IMREAD_IGNORE_ORIENTATION
    if info.format == "bmp" and data[14:18] == _BMP_CORE_HEADER:
        # OS/2 1.x bitmaps cannot carry alpha, and OpenCV's UNCHANGED path
        # misreads their 24-bit pixels as grey.
        return cv2.IMREAD_COLOR
    # UNCHANGED keeps alpha and 16-bit samples; it also never applies EXIF
    # orientation, which apply_orientation does instead.
    return cv2.IMREAD_UNCHANGED


def _check_decoded_size(image: np.ndarray, info: ImageInfo, factor: int) -> None:
    """Make sure the decoder produced the size the (capped) header promised."""
    width, height = info.oriented_size if info.format in _SELF_ORIENTING else (info.width, info.height)
    expected = (-(-height // factor), -(-width // factor))  # libjpeg rounds scaled sizes up
    if image.shape[:2] != expected:
        raise CorruptImage(
            f"decoded size {image.shape[1]}x{image.shape[0]} does not match the "
            f"{FORMAT_NAMES[info.format]} header's {expected[1]}x{expected[0]}",
            format=info.format,
        )


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Convert any decoder output (grey, grey+alpha, BGR, BGRA; 8/16-bit or float) to BGR uint8.

    8-bit BGR is returned as it is. Anything else is converted band by band
    into one new array, so the temporaries of scaling and flattening alpha
    are a few rows deep rather than full-size copies.
    """
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels not in (1, 2, 3, 4):
        raise UnsupportedFormat(f"images with {channels} channels are not supported", channels=channels)
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise UnsupportedFormat(f"{image.dtype} samples are not supported", dtype=str(image.dtype))
    out = np.empty((*image.shape[:2], 3), np.uint8)
    for top in range(0, image.shape[0], _BAND_ROWS):
        out[top : top + _BAND_ROWS] = _band_to_bgr8(image[top : top + _BAND_ROWS])
    return out


def _band_to_bgr8(image: np.ndarray) -> np.ndarray:
    """:func:`to_bgr8` of a few rows; its temporaries are the size of those rows."""
    image = _to_uint8(image)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if channels == 2:
        grey = _flatten_on_white(image[..., :1], image[..., 1])
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return image
    if channels == 4:
        return _flatten_on_white(image[..., :3], image[..., 3])
    raise UnsupportedFormat(f"images with {channels} channels are not supported", channels=channels)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale samples to 0..255: 16-bit by 255/65535, float by 255 (0..1 range)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        # convertScaleAbs rounds and saturates; 257 = 65535 / 255.
        return cv2.convertScaleAbs(image, alpha=1 / 257)
    if image.dtype in (np.float32, np.float64):
        unit = np.clip(np.nan_to_num(image, nan=0.0), 0.0, 1.0)
        return cv2.convertScaleAbs(unit, alpha=255)
    raise UnsupportedFormat(f"{image.dtype} samples are not supported", dtype=str(image.dtype))


def _flatten_on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite ``colour`` (H, W, C) over white using 8-bit ``alpha`` (H, W)."""
    if colour.shape[2] == 1:
        colour = colour.reshape(colour.shape[:2])
    if cv2.countNonZero(255 - alpha) == 0:  # fully opaque: nothing to blend
        return np.ascontiguousarray(colour)
    weight = alpha if colour.ndim == 2 else cv2.merge([alpha] * colour.shape[2])
    # white - (white - c) * a  ==  c * a + white * (1 - a)
    return 255 - cv2.multiply(255 - colour, weight, scale=1 / 255)


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored image upright according to an EXIF orientation value (1..8)."""
    if orientation == 2:  # mirrored left-right
        return cv2.flip(image, 1)
    if orientation == 3:  # rotated 180
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:  # mirrored top-bottom
        return cv2.flip(image, 0)
    if orientation == 5:  # mirrored along the main diagonal
        return cv2.transpose(image)
    if orientation == 6:  # needs a quarter turn clockwise
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:  # mirrored along the anti-diagonal
        return cv2.flip(cv2.transpose(image), -1)
    if orientation == 8:  # needs a quarter turn counter-clockwise
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image
