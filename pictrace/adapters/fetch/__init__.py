"""Fetching untrusted URLs: address filtering, a guarded HTTP client, page scraping.

``addresses`` decides what may be reached, ``client`` fetches under a
:class:`FetchPolicy`, ``budget`` bounds what all the fetches of one request
use together, ``page`` classifies bodies and lists a page's images.
"""

from .addresses import check_address, check_url, classify, parse_host
from .budget import FetchBudget
from .client import (
    Fetched,
    FetchPolicy,
    GuardedResolver,
    fetch,
    fetch_many,
    fetch_sync,
    open_session,
    resolve_allowed,
)
from .page import PAGE_MAX_BYTES, harvest_images, primary_image, sniff_kind

__all__ = [
    "PAGE_MAX_BYTES",
    "FetchBudget",
    "Fetched",
    "FetchPolicy",
    "GuardedResolver",
    "check_address",
    "check_url",
    "classify",
    "fetch",
    "fetch_many",
    "fetch_sync",
    "harvest_images",
    "open_session",
    "parse_host",
    "primary_image",
    "resolve_allowed",
    "sniff_kind",
]
