"""What all the fetches of one request may use together: bytes held, images, and time.

A :class:`FetchPolicy` bounds one response; a request naming 100 pages of 50
images each would still be bounded only by their product. A
:class:`FetchBudget` is shared by every fetch of one request:

* ``max_bytes`` bounds the bodies held at once. Each chunk is charged as it
  arrives, so a fetch stops the moment the request's total would pass the
  cap; a body that is dropped (a failed fetch, a page once read, a duplicate)
  is refunded, so what counts is memory, not traffic.
* ``max_images`` bounds how many images one request takes; the caller asks
  for a slot with :meth:`FetchBudget.take_image` before fetching one.
* ``seconds`` is one deadline for the whole request: a fetch still running
  then is cut off, one not started yet is never started.

Nothing here sleeps or reads a wall clock; the deadline is on the event
loop's clock, set by :meth:`FetchBudget.start`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pictrace.errors import BudgetExceeded


@dataclass
class FetchBudget:
    """Limits shared by every fetch of one request, and what has been used of them."""

    max_bytes: int
    max_images: int
    seconds: float
    held: int = 0
    images: int = 0
    _deadline: float | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the clock (on the running loop's time) if it is not running yet."""
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self.seconds

    @property
    def deadline(self) -> float:
        """The loop time at which fetching must stop; :meth:`start` must have run."""
        if self._deadline is None:
            raise RuntimeError("FetchBudget.start() was not called")
        return self._deadline

    def check_time(self) -> None:
        """Raise :class:`BudgetExceeded` once the deadline has passed."""
        if asyncio.get_running_loop().time() >= self.deadline:
            raise self.out_of_time()

    def out_of_time(self) -> BudgetExceeded:
        return BudgetExceeded(
            f"the request's {self.seconds:g} s for fetching ran out", limit="request_time", seconds=self.seconds
        )

    def charge(self, size: int) -> None:
        """Count ``size`` more bytes as held; :class:`BudgetExceeded` (nothing charged) past the cap."""
        if self.held + size > self.max_bytes:
            raise BudgetExceeded(
                f"the request's fetched bodies would pass {self.max_bytes} bytes",
                limit="request_bytes",
                max_bytes=self.max_bytes,
            )
        self.held += size

    def refund(self, size: int) -> None:
        """Bytes no longer held (a dropped body, or the chunks of a fetch that failed)."""
        self.held -= size

    @property
    def images_left(self) -> int:
        return max(0, self.max_images - self.images)

    def take_image(self) -> None:
        """Claim one image slot; :class:`BudgetExceeded` when all are taken."""
        if not self.images_left:
            raise self.too_many_images()
        self.images += 1

    def too_many_images(self) -> BudgetExceeded:
        return BudgetExceeded(
            f"at most {self.max_images} images per request", limit="request_images", max_images=self.max_images
        )
