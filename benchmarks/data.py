"""Real catalog images for the benchmark.

Sources: the wallpaper photos and artwork shipped in Debian's gnome-, mate- and
sway-backgrounds packages (downloaded with ``apt-get download`` and unpacked
with ``dpkg-deb -x``, never installed), plus the scikit-image sample images
that load without a network download.

Images with an alpha channel are flattened over black and stored as PNG:
several MATE wallpapers keep all their content in the alpha channel, so a
decoder that drops alpha would see a blank picture.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
PACKAGES = ("gnome-backgrounds", "mate-backgrounds", "sway-backgrounds")
RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".jxl", ".avif", ".bmp", ".tif", ".tiff")
VECTOR_SUFFIXES = (".svg", ".svgz", ".xml")
SKIMAGE_SAMPLES = (
    "astronaut", "coffee", "chelsea", "cat", "rocket", "hubble_deep_field",
    "immunohistochemistry", "retina", "colorwheel", "logo", "camera", "moon",
    "page", "text", "coins", "horse", "clock", "brick", "grass", "gravel",
    "checkerboard", "microaneurysms", "cell", "shepp_logan_phantom",
    "eagle", "lily", "kidney", "skin", "human_mitosis",
)
# A query source must be big and textured enough to be recognisable at all.
MIN_QUERY_SIDE = 256
MIN_QUERY_GRAY_STD = 8.0


@dataclass(frozen=True)
class CatalogImage:
    """One real catalog image: its name, origin and the bytes that get ingested."""

    name: str
    source: str
    data: bytes
    width: int
    height: int
    gray_std: float

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the ingested bytes."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def megapixels(self) -> float:
        """Pixel count in millions."""
        return self.width * self.height / 1e6


@dataclass
class Catalog:
    """The real-image catalog plus bookkeeping for the report."""

    images: list[CatalogImage]
    skipped: Counter = field(default_factory=Counter)
    duplicates_removed: int = 0
    group_of: dict[str, int] = field(default_factory=dict)

    def per_source(self) -> dict[str, int]:
        """Number of catalog images from each source."""
        return dict(Counter(im.source for im in self.images))

    def query_sources(self) -> list[CatalogImage]:
        """Images big and textured enough to derive queries from."""
        return [im for im in self.images if is_query_source(im)]

    def groups(self) -> list[list[str]]:
        """Sets (of two or more names) counted as the same artwork."""
        members: dict[int, list[str]] = {}
        for name, gid in self.group_of.items():
            members.setdefault(gid, []).append(name)
        return sorted(sorted(m) for m in members.values() if len(m) > 1)


def decode_bgr(data: bytes) -> np.ndarray:
    """Decode bytes to a 3-channel uint8 BGR array; raise ValueError if unreadable."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("cv2 cannot decode image")
    return img


def is_query_source(im: CatalogImage) -> bool:
    """True if the image is large and textured enough to be a query's original."""
    return min(im.width, im.height) >= MIN_QUERY_SIDE and im.gray_std >= MIN_QUERY_GRAY_STD


def fetch_debs(cache: Path = CACHE_DIR) -> dict[str, Path]:
    """Download the wallpaper packages' .deb files into the cache (once)."""
    deb_dir = cache / "debs"
    deb_dir.mkdir(parents=True, exist_ok=True)
    found = {pkg: sorted(deb_dir.glob(f"{pkg}_*.deb")) for pkg in PACKAGES}
    missing = [pkg for pkg, debs in found.items() if not debs]
    if missing:
        if _apt_download(missing, deb_dir) != 0:
            # Only a machine without package lists needs this; it is slow.
            subprocess.run(["apt-get", "update"], check=True, capture_output=True)
            if _apt_download(missing, deb_dir) != 0:
                raise RuntimeError(f"apt-get download failed for {missing}")
        found = {pkg: sorted(deb_dir.glob(f"{pkg}_*.deb")) for pkg in PACKAGES}
    return {pkg: debs[-1] for pkg, debs in found.items()}


def _apt_download(pkgs: list[str], dest: Path) -> int:
    """Run ``apt-get download`` in ``dest``; return its exit code."""
    proc = subprocess.run(["apt-get", "download", *pkgs], cwd=dest, capture_output=True)
    return proc.returncode


def unpack_deb(deb: Path, cache: Path = CACHE_DIR) -> Path:
    """Unpack a .deb (without installing it) into the cache; return the root."""
    root = cache / "unpacked" / deb.stem
    if not (root / ".done").exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        (root / ".done").touch()
    return root


def flatten_alpha(img: np.ndarray) -> np.ndarray:
    """Composite a BGRA array over black; pass BGR through unchanged."""
    if img.ndim == 3 and img.shape[2] == 4:
        alpha = img[..., 3:4].astype(np.float32) / 255.0
        return np.round(img[..., :3].astype(np.float32) * alpha).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img


def _png(img: np.ndarray) -> bytes:
    """Lossless PNG encoding of a BGR or grayscale array."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def _make_image(name: str, source: str, data: bytes, pixels: np.ndarray) -> CatalogImage:
    """Build a CatalogImage, measuring size and texture on the decoded pixels."""
    gray = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (256, 256), interpolation=cv2.INTER_AREA)
    h, w = pixels.shape[:2]
    return CatalogImage(name, source, data, w, h, float(small.std()))


def image_from_file(path: Path, name: str, source: str) -> CatalogImage | None:
    """Read one raster file; None if cv2 cannot decode it."""
    data = path.read_bytes()
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        return None
    if raw.dtype != np.uint8:
        raw = cv2.convertScaleAbs(raw, alpha=255.0 / max(1, int(raw.max())))
    if raw.ndim == 3 and raw.shape[2] == 4:
        flat = flatten_alpha(raw)
        return _make_image(name, source, _png(flat), flat)
    return _make_image(name, source, data, flatten_alpha(raw))


def package_images(root: Path, source: str, skipped: Counter) -> list[CatalogImage]:
    """All cv2-readable raster images in an unpacked package; count the rest in ``skipped``."""
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        if suffix in VECTOR_SUFFIXES:
            skipped[f"{source}: vector/xml"] += 1
            continue
        if suffix not in RASTER_SUFFIXES:
            continue
        image = image_from_file(path, f"{source}/{path.name}", source)
        if image is None:
            skipped[f"{source}: unreadable {suffix}"] += 1
        else:
            out.append(image)
    return out


def _sample_to_bgr(arr: np.ndarray) -> np.ndarray:
    """Convert a scikit-image sample (RGB/RGBA/gray, bool/float/uint8) to uint8 BGR."""
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = np.clip(np.round(arr.astype(np.float64) / max(float(arr.max()), 1e-9) * 255), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    if arr.shape[2] == 4:
        return flatten_alpha(cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA))
    return cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)


def skimage_images(skipped: Counter) -> list[CatalogImage]:
    """scikit-image samples that load offline, as PNG; count those needing a download."""
    import skimage.data

    out = []
    for name in SKIMAGE_SAMPLES:
        try:
            arr = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - samples needing pooch/network raise various errors
            skipped["skimage: needs download"] += 1
            continue
        bgr = _sample_to_bgr(np.asarray(arr))
        gray_input = np.asarray(arr).ndim == 2
        pixels = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if gray_input else bgr
        out.append(_make_image(f"skimage/{name}", "skimage", _png(pixels), bgr))
    return out


def dedupe(images: list[CatalogImage]) -> tuple[list[CatalogImage], int]:
    """Keep the first image for each SHA-256; return kept images and the number dropped."""
    seen: set[str] = set()
    kept = []
    for im in images:
        if im.sha256 not in seen:
            seen.add(im.sha256)
            kept.append(im)
    return kept, len(images) - len(kept)


def artwork_key(name: str) -> str:
    """Name shared by one picture's resolution/crop variants (e.g. Elephants_3840x2160.jpg)."""
    stem = name.rsplit(".", 1)[0]
    return re.sub(r"_\d+x\d+(_Portrait)?$", "", stem)


def colourway_key(name: str) -> str:
    """Name shared by one design's colour variants (GNOME -l/-d, MATE colourways)."""
    key = artwork_key(name)
    key = re.sub(r"-[ld]$", "", key)
    key = re.sub(r"-(Cold|Dark|Radioactive|Warm)-no-logo$", "", key)
    return re.sub(r"-(Dark|Light)$", "", key)


def artwork_groups(images: list[CatalogImage]) -> dict[str, int]:
    """Map each name to a group id; one group per picture's resolution/crop variants."""
    ids: dict[str, int] = {}
    return {im.name: ids.setdefault(artwork_key(im.name), len(ids)) for im in images}


def load_catalog(cache: Path = CACHE_DIR) -> Catalog:
    """Fetch, unpack, decode and deduplicate all real catalog images."""
    skipped: Counter = Counter()
    images: list[CatalogImage] = []
    for pkg, deb in fetch_debs(cache).items():
        images += package_images(unpack_deb(deb, cache), pkg, skipped)
    images += skimage_images(skipped)
    kept, dropped = dedupe(images)
    return Catalog(kept, skipped, dropped, artwork_groups(kept))
