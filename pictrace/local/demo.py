"""The demo ``pictrace serve`` shows: a catalog of sample photos and one search.

The photos are the samples scikit-image ships inside its package, read
straight from its data folder so that nothing is ever downloaded.  They go in
through ``POST /images`` like any user's upload, and the demo query (a
tilted, cropped, quarter-turned and re-compressed copy of ``coffee.png``) goes
through ``POST /search``.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable

from pictrace.client import Client, Outcome, Source, add_all

SAMPLES = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "camera.png",
    "coins.png",
    "moon.png",
    "page.png",
    "horse.png",
    "motorcycle_left.png",
)
QUERY_OF = "coffee.png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sample_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def sample_paths() -> list[Path]:
    """The demo samples present in the installed scikit-image, in :data:`SAMPLES` order."""
    folder = sample_dir()
    return [folder / name for name in SAMPLES if (folder / name).is_file()]


def drop_png_chunks(data: bytes, kinds: frozenset[bytes] = frozenset({b"iCCP"})) -> bytes:
    """``data`` without the PNG chunks of the given types; other bytes pass unchanged.

    ``page.png`` carries a colour profile libpng warns about on every
    decode; the pixels are the same without it.
    """
    if not data.startswith(PNG_SIGNATURE):
        return data
    out, pos = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 12 + length  # length, type, data, CRC
        if data[pos + 4 : pos + 8] not in kinds:
            out.append(data[pos:end])
        pos = end
    return b"".join(out) + data[pos:]


def sample_sources() -> list[Source]:
    return [Source(path.name, data=drop_png_chunks(path.read_bytes()), path=path) for path in sample_paths()]


def query_image() -> bytes:
    """The demo query: ``coffee.png`` tilted 8 degrees, cropped by a tenth, turned a quarter, JPEG at quality 55."""
    import cv2
    import numpy as np

    data = drop_png_chunks((sample_dir() / QUERY_OF).read_bytes())
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    tilt = cv2.getRotationMatrix2D((w / 2, h / 2), 8, 1.0)
    img = cv2.warpAffine(img, tilt, (w, h), borderMode=cv2.BORDER_REFLECT)
    img = img[h // 10 : h - h // 10, w // 10 : w - w // 10]
    img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 55])[1].tobytes()


def seed(client: Client, log: Callable[[str], None] = print) -> list[Outcome]:
    """Add the samples through the API if the catalog is empty; returns what happened."""
    if client.images(limit=1)["total"]:
        log("the catalog already has images; not seeding the demo")
        return []
    sources = sample_sources()
    outcomes = add_all(client, sources)
    added = sum(len(o.added) for o in outcomes)
    failed = [f"{what or o.source.label} ({why})" for o in outcomes for what, why in o.failed]
    trouble = f"; failed: {', '.join(failed)}" if failed else ""
    log(f"demo catalog: added {added} of scikit-image's sample photos{trouble}")
    return outcomes


def run(client: Client, log: Callable[[str], None] = print, k: int = 5, fresh: bool = True) -> dict | None:
    """Seed (if the store is ``fresh`` and the catalog empty) and run the demo search.

    The API's answer, or None without scikit-image.  ``pictrace serve``
    passes ``fresh=False`` for a store that already holds anything, so a
    catalog emptied on purpose stays empty across restarts.
    """
    try:
        sample_dir()
    except ImportError:
        log("no demo: scikit-image is not installed (pip install 'pictrace[local]')")
        return None
    if fresh:
        seed(client, log)
    else:
        log("the store already has data; not seeding the demo")
    log(f"demo search: {QUERY_OF} tilted 8 degrees, cropped, turned a quarter and saved as a JPEG at quality 55")
    return client.search(Source("demo query", data=query_image()), k=k)
