"""One thread pool for the per-candidate work of a search.

OpenCV, numpy and zlib release the GIL, so reading and scoring candidates
in threads uses every core of a container; one pool keeps the number of
threads bounded however many searches run at once.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

WORKERS = min(4, os.cpu_count() or 1)
_POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="pictrace-candidates")


def parallel_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(i) for i in items]``, computed in the pool when there is more than one item."""
    items = list(items)
    return list(_POOL.map(fn, items)) if len(items) > 1 else [fn(i) for i in items]
