"""How a minimum score splits edited copies from unrelated pictures, on scikit-image's samples.

For every sample, a catalog of the others is searched with the sample and its
edits (the best score is then an unrelated picture's), and a catalog with it
is searched with its edits (the original's score when it ranks first). For
each threshold it prints the share of edited copies whose original is first
and scores at least that much, and the share of unrelated best matches that
would still be shown.

    python -m benchmarks.min_score
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage import data as samples

from pictrace.api import LocalIndex

NAMES = (
    "astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page", "horse",
    "immunohistochemistry", "hubble_deep_field", "retina", "brick", "grass", "gravel",
    "colorwheel", "logo", "text", "clock", "motorcycle_left",
)  # fmt: skip
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55)


def jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def load(name: str) -> np.ndarray:
    img = getattr(samples, name)()
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.dtype != np.uint8:
        img = (255 * (img - img.min()) / max(1e-9, float(np.ptp(img)))).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)


def _crop(im: np.ndarray, f: int = 8) -> np.ndarray:
    h, w = im.shape[:2]
    return im[h // f : h - h // f, w // f : w - w // f]


EDITS = {
    "crop": _crop,
    "mirror": lambda im: im[:, ::-1],
    "rot90": np.rot90,
    "jpeg30": lambda im: cv2.imdecode(np.frombuffer(jpeg(im, 30), np.uint8), cv2.IMREAD_COLOR),
    "bright": lambda im: cv2.convertScaleAbs(im, alpha=1.0, beta=50),
    "gray": lambda im: cv2.cvtColor(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR),
    "blur": lambda im: cv2.GaussianBlur(im, (9, 9), 3),
    "crop+exposure": lambda im: cv2.convertScaleAbs(im[im.shape[0] // 5 :, im.shape[1] // 6 :], alpha=1.2, beta=30),
}


def main() -> None:
    images = {n: load(n) for n in NAMES if hasattr(samples, n)}
    copies, unrelated = [], []
    for held, img in images.items():
        index = LocalIndex()
        for name, other in images.items():
            if name != held:
                index.add(jpeg(other), {"name": name})
        for edit in ("none", *EDITS):
            query = img if edit == "none" else EDITS[edit](img)
            unrelated.append(index.search(jpeg(query), k=1)[0].score)
        index.add(jpeg(img), {"name": held})
        for edit, change in EDITS.items():
            top = index.search(jpeg(change(img)), k=1)[0]
            copies.append(top.score if top.meta["name"] == held else -1.0)
    print(f"{len(images)} images, {len(copies)} edited copies, {len(unrelated)} unrelated searches")
    for t in THRESHOLDS:
        kept = sum(s >= t for s in copies) / len(copies)
        shown = sum(s >= t for s in unrelated) / len(unrelated)
        print(f"min_score {t:.2f}: copies found first and kept {kept:.1%}, unrelated still shown {shown:.1%}")


if __name__ == "__main__":
    main()
