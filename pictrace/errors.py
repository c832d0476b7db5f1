"""One error type per failure class.

Every error PicTrace raises on purpose derives from :class:`PicTraceError` and
carries a stable machine-readable ``code`` and the HTTP status it maps to.
The HTTP layer, the CLI and the scoring fan-out translate these in one place
each; nothing matches on message text.
"""

from __future__ import annotations


class PicTraceError(Exception):
    """Base of every deliberate PicTrace failure."""

    code: str = "error"
    status: int = 400

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def log_fields(self) -> dict[str, object]:
        """Fields for a structured log line ("message" is reserved by logging)."""
        return {"error": self.code, "reason": self.message}

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        body.update(self.details)
        return body


# --- input images -----------------------------------------------------------


class InvalidImage(PicTraceError):
    """The bytes are not a usable image."""

    code = "invalid_image"
    status = 422


class UnsupportedFormat(InvalidImage):
    """Recognised as something, but not an image format we decode (SVG, PDF, HTML, ...)."""

    code = "unsupported_format"
    status = 415


class CorruptImage(InvalidImage):
    """Looks like a supported format but cannot be decoded (truncated, bad data)."""

    code = "corrupt_image"
    status = 422


class ImageTooLarge(InvalidImage):
    """Pixel count, or the memory decoding would take, above its cap (checked from the header)."""

    code = "image_too_large"
    status = 413


class ImageTooComplex(InvalidImage):
    """Decoding would take more passes than allowed (a JPEG with too many scans), from the header."""

    code = "image_too_complex"
    status = 422


# --- requests ----------------------------------------------------------------


class BadRequest(PicTraceError):
    """The request itself is malformed (bad JSON, bad parameter, missing field)."""

    code = "bad_request"
    status = 400


class PayloadTooLarge(PicTraceError):
    """The request body or a fetched resource exceeds its byte cap."""

    code = "payload_too_large"
    status = 413


class InvalidMeta(BadRequest):
    """An image's ``meta`` is not a storable JSON object (not an object, too deep, a bad field name, too many filterable values)."""

    code = "invalid_meta"


class MetaTooLarge(PayloadTooLarge):
    """An image's ``meta`` is larger than its byte bound."""

    code = "meta_too_large"


class InvalidFilter(BadRequest):
    """A search or listing ``filter`` is malformed or above its bounds."""

    code = "invalid_filter"


class Conflict(PicTraceError):
    """The resource kept changing while the request tried to change it; trying again is safe."""

    code = "conflict"
    status = 409


class NotFound(PicTraceError):
    code = "not_found"
    status = 404


# --- fetching untrusted URLs ---------------------------------------------------


class FetchError(PicTraceError):
    """A remote resource could not be fetched (timeout, HTTP error, bad content)."""

    code = "fetch_failed"
    status = 502


class BudgetExceeded(PicTraceError):
    """One request's fetches together would pass its budget (bytes held, images, or time).

    ``limit`` says which: ``request_bytes``, ``request_images`` or ``request_time``.
    A request naming several URLs keeps what fitted and lists the rest as skipped.
    """

    code = "request_budget_exceeded"
    status = 413


class BlockedURL(FetchError):
    """The URL's scheme, host or resolved address is not allowed."""

    code = "blocked_url"
    status = 400


# --- stored data and fan-out ---------------------------------------------------


class CorruptShard(PicTraceError):
    """A shard or feature file is damaged, foreign or of an unknown version."""

    code = "corrupt_shard"
    status = 502


class OutdatedIndex(CorruptShard):
    """The index was written in an earlier format; `pictrace reindex` rebuilds it."""

    code = "outdated_index"
    status = 409


class DamagedRecord(PicTraceError):
    """A catalog record in the bucket is unreadable; DELETE of its id still removes it."""

    code = "damaged_record"
    status = 409


class ScoringFailed(PicTraceError):
    """A scoring batch failed after its retries."""

    code = "scoring_failed"
    status = 502


class JobUnavailable(PicTraceError):
    """A background job (the duplicate-groups scan) could not be started (a deployment fault)."""

    code = "job_unavailable"
    status = 503


# --- the embedding model ---------------------------------------------------------


class ModelUnavailable(PicTraceError):
    """The embedding model file is missing or unreadable (a deployment fault, not bad input)."""

    code = "model_unavailable"
    status = 503


class DocsUnavailable(PicTraceError):
    """The API description needs pydantic, which this deployment does not ship (a deployment fault)."""

    code = "docs_unavailable"
    status = 503


class UnsafeWeights(PicTraceError):
    """A weights file asks for anything but tensors (it would run code if unpickled normally)."""

    code = "unsafe_weights"
    status = 422
