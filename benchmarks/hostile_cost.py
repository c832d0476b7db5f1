"""Peak memory and CPU of the costliest hostile image files, one fresh process each.

Each case is a small file built by ``tests/hostile/corpus.py`` that used to
cost far more to decode than its size suggests. Every case runs in its own
child process, which resets the kernel's peak-RSS mark after importing
everything and reading the file, then computes the image's features (what
``POST /images`` and ``POST /search`` do with it). It reports the rise of
peak RSS (VmHWM) over the RSS before the call, the CPU seconds of the call,
and its outcome: the decoded size, or the error code a client would get.

    python -m benchmarks.hostile_cost                   # this tree's pictrace/
    python -m benchmarks.hostile_cost --src /tmp/before  # a folder holding another pictrace/

(``git archive <rev> pictrace | tar -x -C /tmp/before`` makes such a folder.)

``--json`` prints one JSON object per case instead of a table;
``benchmarks/hostile-cost-results.json`` holds a run before and after the
decoder's bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable

MiB = 1024 * 1024


def _cases() -> dict[str, Callable[[], bytes]]:
    from tests.hostile import corpus as c

    return {
        "tiff: repeated size tags, 16000x16000 decoded, 64x48 claimed": lambda: c.tiff_grey_deflate(
            16000, 16000, claimed=(64, 48)
        ),
        "jpeg: 50,000 repeated progressive scans, 4000x4000": lambda: c.jpeg_repeated_scans(4000, 4000, 50_000),
        "jpeg: 48 progressive scans (the most allowed), 7071x7071": lambda: c.jpeg_repeated_scans(7071, 7071, 48),
        "png: 16-bit RGBA, 7000x7000 (49 MP)": lambda: c.png_flat(7000, 7000),
        "png: 16-bit RGBA, 5700x5700 (32 MP, about the most allowed)": lambda: c.png_flat(5700, 5700),
        "png: 8-bit RGBA, 7000x7000 (49 MP)": lambda: c.png_flat(7000, 7000, bit_depth=8),
        "bmp: RLE8, 7071x7071 (50 MP)": lambda: c.bmp_rle8_flat(7071, 7071),
        "gif: one-pixel frame on a 7071x7071 screen": lambda: c.gif_tiny_frame(7071, 7071),
        "webp: lossless with alpha, 7071x7071": lambda: c.webp_flat(7071, 7071),
        "jpeg: EXIF Orientation typed LONG8": lambda: c.jpeg_with_exif_block(c.jpeg(c.photo()), c.exif_long8()),
    }


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _measure(path: str, src: str | None) -> dict[str, object]:
    """Child side: features of the file at ``path``; the cost of that call alone."""
    import time

    if src:
        sys.path.insert(0, src)

    from pictrace.core.features import extract_features
    from pictrace.errors import PicTraceError

    with open(path, "rb") as f:
        data = f.read()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmRSS")
    cpu = time.process_time()
    try:
        feats = extract_features(data)
        outcome = f"ok {feats.width}x{feats.height}"
    except PicTraceError as exc:
        outcome = f"{exc.status} {exc.code}"
    except Exception as exc:  # the point is to see crashes, not to hide them
        outcome = f"crash {exc.__class__.__name__}"
    return {
        "cpu_s": round(time.process_time() - cpu, 3),
        "rss_delta_mib": round((_status_kib("VmHWM") - before) / 1024, 1),
        "outcome": outcome,
    }


def run(names: list[str] | None = None, src: str | None = None) -> list[dict[str, object]]:
    """Build each case, measure it in a fresh interpreter, return one row per case."""
    rows = []
    for name, build in _cases().items():
        if names and not any(n in name for n in names):
            continue
        data = build()
        with tempfile.NamedTemporaryFile(suffix=".img") as f:
            f.write(data)
            f.flush()
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.hostile_cost", "--child", f.name, *(["--src", src] if src else [])],
                capture_output=True, text=True, check=True, env=os.environ,
            )
        rows.append({"case": name, "bytes": len(data), **json.loads(child.stdout.splitlines()[-1])})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--only", nargs="*", help="run the cases whose name contains one of these")
    parser.add_argument("--src", help="folder whose pictrace/ package is measured instead of this tree's")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args.child, args.src)))
        return
    for row in run(args.only, args.src):
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['case']:<62} {row['bytes']:>9,} B  {row['rss_delta_mib']:>7} MiB  "
                  f"{row['cpu_s']:>7} s  {row['outcome']}")


if __name__ == "__main__":
    main()
