"""Per-image features, computed once at ingest.

Every catalog image is reduced to two groups of arrays:

* the *index* part, small enough to read for every candidate of a search
  (about 3 KB, plus 4 bytes a visual word): ``gist``, a 32x32 grayscale
  layout vector, and ``chist``, a coarse colour histogram, both unit vectors
  (a dot product is a similarity, so a whole shard is scored with one matrix
  product); and ``words``, the ORB descriptors hashed to visual words, which
  survive crops, exposure edits and grayscale copies where layout and
  colour do not.
* the *detail* part, read only for a shortlist: the 256x256 grayscale
  thumbnail for SSIM, ORB keypoints and descriptors, and the sparse 32x32x32
  BGR histogram.  These are the original PicTrace's three signals.

Geometry follows the original: the image is resized to a square of side
``min(1024, largest side)`` before ORB and the histogram are computed.

The looks-like part (``mode=similar``) comes from the same decode: the
EfficientNet-Lite0 embedding (1280 float16, 2.5 KB, read in phase 2), its
96 int8 index-row codes and the top :data:`STORED_LABELS` ImageNet labels
with their probabilities (:mod:`pictrace.model.embedding`).  Features made
without the model, and those stored before embeddings, have none
(``embedding is None``); ``pictrace reindex`` adds them.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

import cv2
import numpy as np

from pictrace.core import arrays as container
from pictrace.core.decode import decode
from pictrace.core.probe import probe
from pictrace.errors import CorruptShard

ORB_SIDE = 1024
ORB_FEATURES = 500
THUMB_SIDE = 256
GIST_SIDE = 32
HIST_BINS = 32
CHIST_BINS = 8

# JPEGs are decoded at 1/2, 1/4 or 1/8 scale while the result keeps at least
# this many pixels on its long side: decoding is most of the cost of ingest,
# and a 960-pixel square loses nothing the 1024-pixel one would keep.
DECODE_SIDE = ORB_SIDE * 3 // 4

# Visual words: each ORB descriptor is hashed WORD_TABLES times, each time
# to the WORD_BITS of its 256 bits that one table picks (locality-sensitive
# hashing for Hamming distance, as FLANN's LSH index does).  A descriptor of
# the same corner seen again flips a few bits, so at least one table usually
# still agrees, while two unrelated descriptors share a word about once in
# 2**WORD_BITS.  Table t takes bits _WORD_BIT_ORDER[t*WORD_BITS:(t+1)*WORD_BITS];
# the order is a fixed spread over all 256 bits (101 is coprime to 256).
WORD_TABLES = 4
WORD_BITS = 16
_WORD_BIT_ORDER = (np.arange(256) * 101 + 7) % 256
_WORD_WEIGHTS = (1 << np.arange(WORD_BITS)).astype(np.uint32)

STORED_LABELS = 3  # also the image's "label" filter tags, so the row budget holds
EMBEDDING_DIMS = 1280

FEATURES_FORMAT = "pictrace-features"
FEATURES_VERSION = 2


@dataclass(frozen=True, eq=False)
class ImageFeatures:
    """Everything PicTrace needs to compare one image with another."""

    sha256: str
    width: int
    height: int
    gist: np.ndarray  # (GIST_SIDE**2,) float16, zero mean, unit norm
    chist: np.ndarray  # (CHIST_BINS**3,) float16, unit norm (Hellinger)
    thumb: np.ndarray  # (THUMB_SIDE, THUMB_SIDE) uint8 grayscale
    keypoints: np.ndarray  # (n, 2) float32, x/y in the ORB_SIDE square
    descriptors: np.ndarray  # (n, 32) uint8 ORB descriptors
    hist_index: np.ndarray  # (m,) uint16, non-zero bins of the 32^3 histogram
    hist_value: np.ndarray  # (m,) float32, their L2-normalised values
    words: np.ndarray  # (w,) uint32, sorted distinct visual words of the descriptors
    side: int = ORB_SIDE  # side of the square the keypoints live in
    # Queries only: ORB of the mirrored image, so mirrored copies still match.
    mirror_keypoints: np.ndarray | None = None
    mirror_descriptors: np.ndarray | None = None
    # Looks-like: None for features made without the model or before embeddings.
    embedding: np.ndarray | None = None  # (EMBEDDING_DIMS,) float16, unit norm
    semantic: np.ndarray | None = None  # (SEMANTIC_DIMS,) int8 index-row codes
    labels: tuple[tuple[str, float], ...] = ()  # top ImageNet labels, best first, with probabilities

    @property
    def nbytes_index(self) -> int:
        """Bytes of the part read for every candidate."""
        return int(self.gist.nbytes + self.chist.nbytes + self.words.nbytes + 64 + 8)

    @property
    def nbytes_detail(self) -> int:
        """Bytes of the part read only for shortlisted candidates."""
        return int(
            self.thumb.nbytes
            + self.keypoints.nbytes
            + self.descriptors.nbytes
            + self.hist_index.nbytes
            + self.hist_value.nbytes
            + (0 if self.embedding is None else self.embedding.nbytes)
        )

    def to_bytes(self) -> bytes:
        """Serialise to a :mod:`pictrace.core.arrays` container (the thumbnail and keypoints deflated)."""
        header = {
            "format": FEATURES_FORMAT,
            "version": FEATURES_VERSION,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "side": self.side,
        }
        if self.labels:
            header["labels"] = [[name, p] for name, p in self.labels]
        extra = {}
        if self.mirror_descriptors is not None and self.mirror_keypoints is not None:
            extra = {"mirror_descriptors": self.mirror_descriptors, "mirror_keypoints": self.mirror_keypoints}
        if self.embedding is not None and self.semantic is not None:
            extra.update(embedding=self.embedding, semantic=self.semantic)
        return container.pack(
            {
                "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                **extra,
                "gist": self.gist,
                "chist": self.chist,
                "thumb": self.thumb,
                "keypoints": self.keypoints,
                "descriptors": self.descriptors,
                "hist_index": self.hist_index,
                "hist_value": self.hist_value,
                "words": self.words,
            },
            compress=_DEFLATED,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> "ImageFeatures":
        """Load what :meth:`to_bytes` wrote (or the ``.npz`` of earlier versions); anything else raises CorruptShard."""
        arrays = _unpack(data)
        header = _header(arrays, FEATURES_FORMAT, FEATURES_VERSION)
        try:
            feats = cls(
                sha256=str(header["sha256"]),
                width=int(header["width"]),
                height=int(header["height"]),
                side=int(header["side"]),
                gist=arrays["gist"],
                chist=arrays["chist"],
                thumb=arrays["thumb"],
                keypoints=arrays["keypoints"],
                descriptors=arrays["descriptors"],
                hist_index=arrays["hist_index"],
                hist_value=arrays["hist_value"],
                words=arrays["words"],
                mirror_keypoints=arrays.get("mirror_keypoints"),
                mirror_descriptors=arrays.get("mirror_descriptors"),
                embedding=arrays.get("embedding"),
                semantic=arrays.get("semantic"),
                labels=_labels(header.get("labels", [])),
            )
        except KeyError as exc:
            raise CorruptShard(f"features file lacks {exc.args[0]!r}") from None
        _check_features(feats)
        return feats


def extract_features(data: bytes, *, max_pixels: int = 50_000_000) -> ImageFeatures:
    """Decode image bytes and compute their features.

    Raises the decode errors (``InvalidImage`` and subclasses) for bad input.
    """
    info = probe(data)
    image = decode(data, max_pixels=max_pixels, max_side=DECODE_SIDE)
    return features_from_image(image, hashlib.sha256(data).hexdigest(), original_size=info.oriented_size)


def features_from_image(
    image: np.ndarray, sha256: str, original_size: tuple[int, int] | None = None, *, semantic: bool = True
) -> ImageFeatures:
    """Compute features of a decoded BGR uint8 image.

    ``original_size`` is ``(width, height)`` when ``image`` was decoded at a
    reduced scale; it only affects the reported size.  ``semantic`` adds the
    looks-like embedding, codes and labels (left out if the model is missing).
    """
    h, w = image.shape[:2]
    width, height = original_size or (w, h)
    square = canonical_square(image)
    gray = cv2.cvtColor(square, cv2.COLOR_BGR2GRAY)
    keypoints, descriptors = orb_features(gray)
    hist_index, hist_value = sparse_histogram(square)
    thumb = cv2.resize(gray, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA)
    return ImageFeatures(
        sha256=sha256,
        width=int(width),
        height=int(height),
        gist=gist_vector(thumb),
        chist=coarse_histogram(square),
        thumb=thumb,
        keypoints=keypoints,
        descriptors=descriptors,
        hist_index=hist_index,
        hist_value=hist_value,
        words=visual_words(descriptors),
        side=square.shape[0],
        **(looks_like(image) if semantic else {}),
    )


def looks_like(image: np.ndarray) -> dict:
    """The embedding fields of :class:`ImageFeatures` for a BGR image; {} without the model."""
    from pictrace.model import embedding as model  # cv2.dnn and the net load only when used

    emb = model.try_embed(image)
    if emb is None:
        return {}
    return {
        "embedding": emb.vector.astype(np.float16),
        "semantic": model.semantic_codes(emb.vector),
        "labels": _distinct_labels(emb.labels)[:STORED_LABELS],
    }


def _distinct_labels(labels: list[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """Labels with one entry per name, best first: two ImageNet classes share a clean name
    ("missile"), and their probabilities add up."""
    merged: dict[str, float] = {}
    for name, p in labels:
        merged[name] = merged.get(name, 0.0) + p
    return tuple(sorted(((n, round(p, 6)) for n, p in merged.items()), key=lambda lp: (-lp[1], lp[0])))


def _labels(raw: object) -> tuple[tuple[str, float], ...]:
    if not isinstance(raw, list) or not all(
        isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and isinstance(x[1], (int, float)) for x in raw
    ):
        raise CorruptShard("features header labels are malformed")
    return tuple((str(name), float(p)) for name, p in raw)


def canonical_square(image: np.ndarray) -> np.ndarray:
    """Resize to a square of side ``min(ORB_SIDE, largest side)`` as the original did."""
    side = min(ORB_SIDE, max(image.shape[:2]))
    interp = cv2.INTER_AREA if side < max(image.shape[:2]) else cv2.INTER_LINEAR
    return cv2.resize(image, (side, side), interpolation=interp)


def orb_features(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ORB keypoint positions (n, 2) float32 and descriptors (n, 32) uint8."""
    orb = cv2.ORB_create(nfeatures=ORB_FEATURES)
    # Keypoints keep edgeThreshold pixels from every border, so a smaller
    # image has none; ORB's own pyramid even fails outright on a 1x1 image.
    if min(gray.shape[:2]) <= 2 * orb.getEdgeThreshold():
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    kps, desc = orb.detectAndCompute(gray, None)
    if desc is None or not kps:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    pts = np.array([kp.pt for kp in kps], dtype=np.float32)
    return pts, np.ascontiguousarray(desc, dtype=np.uint8)


def visual_words(descriptors: np.ndarray) -> np.ndarray:
    """Sorted distinct visual words (uint32: table << WORD_BITS | hash) of ORB descriptors."""
    if len(descriptors) == 0:
        return np.zeros(0, np.uint32)
    bits = np.unpackbits(descriptors, axis=1)[:, _WORD_BIT_ORDER[: WORD_TABLES * WORD_BITS]]
    hashes = bits.reshape(len(descriptors), WORD_TABLES, WORD_BITS).astype(np.uint32) @ _WORD_WEIGHTS
    tables = np.arange(WORD_TABLES, dtype=np.uint32) << WORD_BITS
    return np.unique(hashes + tables)


def dense_histogram(bgr: np.ndarray) -> np.ndarray:
    """The original's 32x32x32 BGR histogram, L2-normalised, flattened (float32)."""
    hist = cv2.calcHist([bgr], [0, 1, 2], None, [HIST_BINS] * 3, [0, 256] * 3)
    cv2.normalize(hist, hist)
    return hist.reshape(-1)


def sparse_histogram(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero bins of :func:`dense_histogram` as (uint16 indices, float32 values)."""
    dense = dense_histogram(bgr)
    idx = np.flatnonzero(dense)
    return idx.astype(np.uint16), dense[idx].astype(np.float32)


def gist_vector(thumb: np.ndarray) -> np.ndarray:
    """32x32 layout of a grayscale thumbnail, zero mean and unit norm (float16).

    A dot product of two such vectors is their normalised cross-correlation,
    which ignores brightness and contrast changes.
    """
    small = cv2.resize(thumb, (GIST_SIDE, GIST_SIDE), interpolation=cv2.INTER_AREA)
    return _unit(small.astype(np.float32).reshape(-1), center=True)


def coarse_histogram(bgr: np.ndarray) -> np.ndarray:
    """8x8x8 BGR histogram as a Hellinger unit vector (float16).

    The square root damps dominant colours so that shared palettes, not one
    large sky, decide the similarity.
    """
    hist = cv2.calcHist([bgr], [0, 1, 2], None, [CHIST_BINS] * 3, [0, 256] * 3)
    return _unit(np.sqrt(hist.reshape(-1)), center=False)


def _unit(v: np.ndarray, *, center: bool) -> np.ndarray:
    v = v.astype(np.float32)
    if center:
        v = v - v.mean()
    norm = float(np.linalg.norm(v))
    if norm > 0:
        v = v / norm
    return v.astype(np.float16)


# What compresses: the thumbnail and keypoint coordinates; descriptors and
# hashes are close to random bytes.
_DEFLATED = frozenset({"thumb", "keypoints", "mirror_keypoints"})


def _unpack(data: bytes) -> dict[str, np.ndarray]:
    return container.unpack(data, "features") if container.is_container(data) else _load_npz(data, "features")


def _load_npz(data: bytes, what: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except Exception as exc:  # numpy raises many types for foreign bytes
        raise CorruptShard(f"not a PicTrace {what} file: {type(exc).__name__}") from None


def _header(arrays: dict[str, np.ndarray], fmt: str, version: int) -> dict:
    raw = arrays.get("header")
    if raw is None or raw.dtype != np.uint8:
        raise CorruptShard(f"not a PicTrace file: no {fmt} header")
    try:
        header = json.loads(raw.tobytes())
    except ValueError:
        raise CorruptShard("unreadable header") from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise CorruptShard(f"not a {fmt} file")
    if header.get("version") != version:
        raise CorruptShard(f"{fmt} version {header.get('version')!r} is not supported (expected {version})")
    return header


def _check_features(f: ImageFeatures) -> None:
    expect = {
        "gist": ((GIST_SIDE * GIST_SIDE,), np.float16),
        "chist": ((CHIST_BINS**3,), np.float16),
        "thumb": ((THUMB_SIDE, THUMB_SIDE), np.uint8),
    }
    for name, (shape, dtype) in expect.items():
        arr = getattr(f, name)
        if arr.shape != shape or arr.dtype != dtype:
            raise CorruptShard(f"features field {name} has shape {arr.shape} {arr.dtype}")
    if f.descriptors.dtype != np.uint8 or f.descriptors.ndim != 2 or f.descriptors.shape[1:] != (32,):
        raise CorruptShard("features field descriptors is malformed")
    if f.keypoints.shape != (len(f.descriptors), 2):
        raise CorruptShard("keypoints and descriptors disagree")
    m = f.mirror_descriptors
    if m is not None and (m.dtype != np.uint8 or m.ndim != 2 or m.shape[1:] != (32,)):
        raise CorruptShard("features field mirror_descriptors is malformed")
    if m is not None and (f.mirror_keypoints is None or f.mirror_keypoints.shape != (len(m), 2)):
        raise CorruptShard("mirrored keypoints and descriptors disagree")
    e, c = f.embedding, f.semantic
    if (e is None) != (c is None):
        raise CorruptShard("features hold an embedding without codes, or codes without one")
    if e is not None and (e.dtype != np.float16 or e.shape != (EMBEDDING_DIMS,) or c.dtype != np.int8 or c.ndim != 1):
        raise CorruptShard("features field embedding or semantic is malformed")
    if f.hist_index.shape != f.hist_value.shape or f.hist_index.dtype != np.uint16:
        raise CorruptShard("histogram arrays are malformed")
    check_words(f.words, "features field words")


def check_words(words: np.ndarray, what: str) -> None:
    """Raise CorruptShard unless ``words`` is a 1-D uint32 array of valid visual words."""
    if words.dtype != np.uint32 or words.ndim != 1:
        raise CorruptShard(f"{what} is malformed")
    if len(words) and int(words.max()) >= WORD_TABLES << WORD_BITS:
        raise CorruptShard(f"{what} holds values out of range")
