"""Trim an installed layer tree to what the Lambda runtime needs.

Usage: python prune.py SITE_DIR

SITE_DIR is a `pip install --target` tree. The layer must stay small because a
function and all its layers share one 250 MB (unzipped) budget, and OpenCV
with NumPy already takes most of it.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

# The Lambda Python runtime ships boto3 and everything it depends on. pip pulls
# botocore in again through aws-xray-sdk; a second copy would cost ~100 MB and
# could shadow the runtime's own.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)

# Directory names never imported at run time.
DEAD_DIRS = frozenset({"__pycache__", "tests"})


def normalize(name: str) -> str:
    """Return the PEP 503 normalized form of a distribution name."""
    return name.lower().replace("_", "-").replace(".", "-")


def dist_name(dist_info: Path) -> str:
    """Return the normalized distribution name of a `*.dist-info` directory."""
    return normalize(dist_info.name[: -len(".dist-info")].rsplit("-", 1)[0])


def remove_distribution(site: Path, dist_info: Path) -> int:
    """Delete every file a distribution's RECORD lists, then its metadata.

    Returns the number of files removed. Directories left empty are removed
    too; files outside `site` (console scripts under ../bin) are skipped.
    """
    removed = 0
    site = site.resolve()
    touched_dirs: set[Path] = set()
    with open(dist_info / "RECORD", newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if not row:
                continue
            path = (site / row[0]).resolve()
            if site not in path.parents or not path.is_file():
                continue
            path.unlink()
            removed += 1
            touched_dirs.add(path.parent)
    shutil.rmtree(dist_info, ignore_errors=True)
    # Deepest first, so a parent is examined after its emptied children.
    for directory in sorted(touched_dirs, key=lambda p: len(p.parts), reverse=True):
        while directory != site and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
            directory = directory.parent
    return removed


def remove_runtime_provided(site: Path) -> list[str]:
    """Remove the distributions the Lambda runtime already provides.

    Returns the normalized names that were removed.
    """
    gone = []
    for dist_info in sorted(site.glob("*.dist-info")):
        name = dist_name(dist_info)
        if name in RUNTIME_PROVIDED:
            remove_distribution(site, dist_info)
            gone.append(name)
    return gone


def remove_dead_weight(site: Path) -> None:
    """Remove test suites, bytecode caches and console scripts from `site`."""
    for directory in sorted(site.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if directory.is_dir() and directory.name in DEAD_DIRS:
            shutil.rmtree(directory)
    # Console scripts carry the build host's interpreter path in their shebang.
    shutil.rmtree(site / "bin", ignore_errors=True)


def tree_size(root: Path) -> int:
    """Return the total size in bytes of the regular files under `root`."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    site = Path(argv[1])
    before = tree_size(site)
    gone = remove_runtime_provided(site)
    remove_dead_weight(site)
    after = tree_size(site)
    print(
        f"pruned {site}: removed {', '.join(gone) or 'nothing'}; "
        f"{before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
