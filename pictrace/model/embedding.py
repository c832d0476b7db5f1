"""Looks-like embeddings: EfficientNet-Lite0 run by cv2.dnn (numpy and cv2 only).

``embed(bgr)`` returns the 1280 pooled features as a float32 unit vector
(cosine similarity is a dot product) and the top-5 ImageNet labels with
their softmax probabilities. The net is loaded once per process, on first
use, from ``Config.model_path`` (default: the file the build writes inside
this package); a missing file raises :class:`ModelUnavailable` naming the
command that builds it.

Preprocessing is TF EfficientNet-Lite's: RGB, short side resized to 224
(area interpolation), centre crop 224x224, (x - 127) / 128.

What an index row keeps is :func:`semantic_codes`: the vector projected to
96 dimensions by :func:`projection` (a fixed seeded random orthonormal
basis: no data is fitted, so every machine and every build agree) and
stored as int8 (96 bytes). :func:`try_embed` is the ingest path's entry: a
missing model is logged once and answered with None, so copy detection
keeps working and ``pictrace reindex`` fills the embeddings in later.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from pictrace.errors import InvalidImage, ModelUnavailable

SIZE = 224
DIMS = 1280
TOP_LABELS = 5
# int8 codes: component * QUANT_SCALE, rounded and clipped to [-127, 127].
# Unit vectors of 1280 non-negative pooled activations rarely have a
# component above 0.3 (the scikit-image samples peak at 0.30), so 400 keeps
# ~1.6 bits more resolution than 127 would while clipping almost nothing.
QUANT_SCALE = 400.0
DEFAULT_MODEL = Path(__file__).with_name("data") / "efficientnet_lite0.onnx"
BUILD_COMMAND = "python -m pictrace.model.convert --out " + str(DEFAULT_MODEL)
_LABELS = Path(__file__).with_name("imagenet_labels.txt")
# Index-row codes: a unit vector of SEMANTIC_DIMS has components up to about
# 0.5 (0.4997 over 1,391 photos), so 254 uses the whole int8 range unclipped.
SEMANTIC_DIMS = 96
SEMANTIC_SCALE = 254.0
_log = logging.getLogger(__name__)
_warned: set[str] = set()


@dataclass(frozen=True)
class Embedding:
    """One image's looks-like vector (float32, unit norm, (1280,)) and top-5 (label, probability)."""

    vector: np.ndarray
    labels: list[tuple[str, float]] = field(default_factory=list)


@lru_cache(maxsize=1)
def labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names, by class index."""
    names = tuple(_LABELS.read_text(encoding="utf-8").splitlines())
    assert len(names) == 1000, _LABELS
    return names


class _Net:
    """cv2.dnn nets are not safe to run from two threads at once, hence the lock."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ModelUnavailable(f"embedding model {path} is missing; build it with: {BUILD_COMMAND}")
        try:
            self.net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as err:
            raise ModelUnavailable(f"embedding model {path} cannot be loaded ({err.msg.strip()}); rebuild it with: {BUILD_COMMAND}") from None
        self.lock = threading.Lock()

    def run(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            self.net.setInput(blob, "image")
            features, logits = self.net.forward(["features", "logits"])
        return features[0], logits[0]


_nets: dict[Path, _Net] = {}
_nets_lock = threading.Lock()


def _net(path: str = "") -> _Net:
    if not path:
        from pictrace.config import Config

        path = Config.from_env().model_path  # read once: the net is cached by path
    key = Path(path) if path else DEFAULT_MODEL
    with _nets_lock:
        if key not in _nets:
            _nets[key] = _Net(key)
        return _nets[key]


def preprocess(bgr: np.ndarray) -> np.ndarray:
    """The 1x3x224x224 float32 input blob for a BGR (or grayscale) uint8 image.

    Resized and cropped in BGR, then swapped, shifted and scaled by one
    ``blobFromImage`` ((x - 127) * (1 / 128) is exact in float32): the same
    values as converting the whole image to RGB first, without doing so.
    """
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    if bgr.ndim != 3 or bgr.shape[2] not in (3, 4) or min(bgr.shape[:2]) < 1:
        raise InvalidImage(f"cannot embed an image of shape {bgr.shape}")
    h, w = bgr.shape[:2]
    scale = SIZE / min(h, w)
    size = (max(SIZE, round(w * scale)), max(SIZE, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(bgr[..., :3], size, interpolation=interp)
    y, x = (resized.shape[0] - SIZE) // 2, (resized.shape[1] - SIZE) // 2
    crop = resized[y:y + SIZE, x:x + SIZE]
    return cv2.dnn.blobFromImage(crop, 1.0 / 128.0, None, (127.0, 127.0, 127.0), swapRB=True, crop=False)


def embed(bgr: np.ndarray, model_path: str = "") -> Embedding:
    """The embedding and top-5 labels of one BGR uint8 image (any size, 3 or 4 channels, or gray).

    ``model_path`` "" means ``Config.model_path`` (``PICTRACE_MODEL_PATH``), else the packaged file.
    """
    features, logits = _net(model_path).run(preprocess(bgr))
    vector = features.astype(np.float32)
    norm = float(np.linalg.norm(vector))
    vector = vector / norm if norm > 0 else vector
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(-probs, kind="stable")[:TOP_LABELS]
    names = labels()
    return Embedding(vector.astype(np.float32), [(names[i], round(float(probs[i]), 6)) for i in top])


def try_embed(bgr: np.ndarray, model_path: str = "") -> Embedding | None:
    """:func:`embed`, or None when the model file is missing or unreadable (logged once per path)."""
    try:
        return embed(bgr, model_path)
    except ModelUnavailable as err:
        if model_path not in _warned:
            _warned.add(model_path)
            _log.warning("images are indexed without embeddings until the model is installed: %s", err.message)
        return None


def semantic_codes(vector: np.ndarray, dims: int = SEMANTIC_DIMS) -> np.ndarray:
    """The (dims,) int8 index-row codes of a unit embedding: projected, renormalised, times SEMANTIC_SCALE."""
    return np.clip(np.rint(project(vector, dims) * SEMANTIC_SCALE), -127, 127).astype(np.int8)


def quantise(vector: np.ndarray) -> np.ndarray:
    """int8 codes of a unit vector: round(v * QUANT_SCALE), clipped to [-127, 127]."""
    return np.clip(np.rint(np.asarray(vector, np.float32) * QUANT_SCALE), -127, 127).astype(np.int8)


def dequantise(codes: np.ndarray) -> np.ndarray:
    """The float32 vector int8 ``codes`` stand for (codes / QUANT_SCALE); not renormalised."""
    return np.asarray(codes, np.float32) / QUANT_SCALE


@lru_cache(maxsize=4)
def projection(dims: int = 256, seed: int = 12) -> np.ndarray:
    """A fixed (1280, dims) random orthonormal projection; the same for a seed on every machine."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((DIMS, dims)))
    return q.astype(np.float32)


def project(vector: np.ndarray, dims: int = 256) -> np.ndarray:
    """``vector`` projected to ``dims`` and renormalised to unit length (float32)."""
    p = np.asarray(vector, np.float32) @ projection(dims)
    n = float(np.linalg.norm(p))
    return p / n if n > 0 else p
