"""Compact JSON on the hot path.

orjson encodes in well under a microsecond where ``json.dumps`` takes over
ten. :func:`dumps` is for values the runtime builds itself; :func:`strict_dumps`
for values from outside it (in-process intents, tool outputs), which must
have an exact JSON form or be refused.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """UTF-8 JSON without spaces; the same text ``json.dumps`` would give for
    values with string keys and finite numbers."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError derives from TypeError
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def strict_dumps(value: Any) -> bytes:
    """UTF-8 JSON without spaces; ValueError or TypeError if ``value`` has no
    exact JSON form (non-string keys, lone surrogates, integers beyond 64 bits,
    NaN or Infinity, other types)."""
    encoded = orjson.dumps(value)
    # orjson writes NaN and Infinity as null; the standard encoder, asked
    # only when a null appears, refuses them.
    if b"null" in encoded:
        json.dumps(value, allow_nan=False)
    return encoded
