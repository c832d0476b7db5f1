"""Image metadata and search filters: what may be stored, what may be asked for, and how they meet.

An image's ``meta`` is a JSON object of the client's own fields, bounded so
that a record stays small: at most :data:`MAX_META_BYTES` of compact UTF-8
JSON, nested at most :data:`MAX_META_DEPTH` levels, top-level field names of
1 to :data:`MAX_FIELD_CHARS` characters.  Any JSON value may be stored; the
*filterable* ones are the top-level strings and the strings of top-level
lists (:func:`meta_tags`), at most :data:`MAX_TAGS` (field, value) pairs an
image, because each becomes one 32-bit token of the image's index row and a
row must stay under 1 KB (:mod:`pictrace.core.compact`).  Numbers, booleans,
null and nested objects are kept and returned, never matched: store
``"2024"`` rather than ``2024`` to filter by it.

A :class:`Filter` is ``{field: value}`` or ``{field: [value, ...]}``: string
equality, several fields ANDed, a list meaning any of.  Phase 1 applies it
with the tokens (:meth:`Filter.tokens`); since two pairs share a token once
in 2**32, phase 2 checks the stored values themselves (:meth:`Filter.matches`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from pictrace.errors import InvalidFilter, InvalidMeta, MetaTooLarge

MAX_META_BYTES = 4096
MAX_META_DEPTH = 4
MAX_FIELD_CHARS = 64
# Seven of an index row's ten tags; the other three are the image's labels.
MAX_TAGS = 7
MAX_FILTER_FIELDS = 10
MAX_FILTER_VALUES = 100  # over all of a filter's fields
MAX_FILTER_BYTES = 4096


def check_meta(meta: object) -> dict:
    """``meta`` if it is a storable metadata object; InvalidMeta (400) or MetaTooLarge (413) otherwise."""
    if not isinstance(meta, dict):
        raise InvalidMeta(f"meta must be a JSON object, got {_kind(meta)}")
    if _depth(meta, MAX_META_DEPTH + 1) > MAX_META_DEPTH:
        raise InvalidMeta(f"meta is nested more than {MAX_META_DEPTH} levels deep")
    for name in meta:
        _check_name(name, InvalidMeta, "meta")
    _check_numbers(meta)
    try:
        size = len(compact_json(meta))
    except (TypeError, ValueError):
        raise InvalidMeta("meta must hold JSON values only (objects, lists, strings, numbers, booleans, null)") from None
    if size > MAX_META_BYTES:
        raise MetaTooLarge(f"meta is {size} bytes of JSON; the limit is {MAX_META_BYTES}")
    tags = meta_tags(meta)
    if len(tags) > MAX_TAGS:
        raise InvalidMeta(
            f"meta has {len(tags)} filterable values (top-level strings and strings in top-level lists); "
            f"an image may have at most {MAX_TAGS}"
        )
    return meta


def meta_tags(meta: Mapping) -> list[tuple[str, str]]:
    """The (field, value) pairs a filter can select an image by, sorted and distinct."""
    pairs = set()
    for name, value in meta.items():
        if isinstance(value, str):
            pairs.add((name, value))
        elif isinstance(value, list):
            pairs.update((name, v) for v in value if isinstance(v, str))
    return sorted(pairs)


def parse_json_object(text: str, what: str, error: type) -> object:
    """A query parameter holding URL-decoded JSON; ``error`` (a BadRequest) when it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise error(f"{what} is not valid JSON: {reason}") from None


def compact_json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class Filter:
    """Fields and the values each may have, sorted; empty means no filter."""

    fields: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.fields)

    @classmethod
    def parse(cls, raw: object) -> "Filter":
        """From a request's ``filter`` (None or ``{}``: no filter); InvalidFilter when malformed."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise InvalidFilter(f"filter must be a JSON object of field -> value, got {_kind(raw)}")
        if len(raw) > MAX_FILTER_FIELDS:
            raise InvalidFilter(f"filter has {len(raw)} fields; at most {MAX_FILTER_FIELDS}")
        fields, count = [], 0
        for name, value in raw.items():
            _check_name(name, InvalidFilter, "filter")
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                raise InvalidFilter(
                    f"filter field {name!r} must be a string or a non-empty list of strings, got {_kind(value)}"
                )
            count += len(values)
            fields.append((name, tuple(sorted(set(values)))))
        if count > MAX_FILTER_VALUES:
            raise InvalidFilter(f"filter has {count} values; at most {MAX_FILTER_VALUES}")
        size = len(compact_json(raw))
        if size > MAX_FILTER_BYTES:
            raise InvalidFilter(f"filter is {size} bytes of JSON; the limit is {MAX_FILTER_BYTES}")
        return cls(tuple(sorted(fields)))

    def to_dict(self) -> dict[str, list[str]]:
        """The normalised filter, as answers and scoring events carry it."""
        return {name: list(values) for name, values in self.fields}

    def tokens(self) -> list[np.ndarray]:
        """Per field, the sorted uint32 tokens of its values (what partitions index)."""
        from pictrace.core.compact import filter_tokens  # OpenCV only where rows are built

        return [filter_tokens((name, v) for v in values) for name, values in self.fields]

    def matches(self, meta: Mapping) -> bool:
        """Whether stored ``meta`` has, for every field, one of the field's values (exactly)."""
        for name, values in self.fields:
            value = meta.get(name)
            have = [value] if isinstance(value, str) else value if isinstance(value, list) else []
            if not any(isinstance(v, str) and v in values for v in have):
                return False
        return True


def _check_name(name: object, error: type, what: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_FIELD_CHARS:
        raise error(f"{what} field names must have 1 to {MAX_FIELD_CHARS} characters, got {str(name)[:80]!r}")
    if any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in name):
        raise error(f"{what} field name {name[:80]!r} holds control characters")


def _depth(value: object, stop: int) -> int:
    """Levels of objects and lists in ``value`` (a scalar is 0), counted no further than ``stop``."""
    if stop <= 0 or not isinstance(value, (dict, list)):
        return 0
    children: Iterable = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(v, stop - 1) for v in children), default=0)


def _check_numbers(value: object) -> None:
    # json.loads takes NaN and Infinity, which are not JSON and cannot be sent back.
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidMeta("meta holds a number that is not finite (NaN or Infinity)")
    if isinstance(value, dict):
        for v in value.values():
            _check_numbers(v)
    elif isinstance(value, list):
        for v in value:
            _check_numbers(v)


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )
