"""JSON bodies from outside, bounded before they are parsed. Pure functions, no I/O.

`json.loads` recurses once per nesting level: a body nested a few thousand levels deep raises
`RecursionError` (a 500 unless caught), and one a few hundred deep parses but is a trap for any
code that walks it. So the parse's `RecursionError` is a 400, and the nesting of what did parse
is measured in one linear pass of C-level string operations over the bytes (valid JSON by then,
so every string is closed and the string pattern cannot backtrack across the body).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from backend.errors import MalformedBody, PayloadTooLarge

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32  # a MailerLite batch is 4 deep (`events[n].subscriber.fields`), the widget's 4

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # string contents may hold brackets
_OPEN, _CLOSE = b"[{", b"]}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _OPEN + _CLOSE)
# Openers → 1, closers → 255 (-1 once read as signed bytes).
_STEPS = bytes.maketrans(_OPEN + _CLOSE, b"\x01\x01\xff\xff")


def depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects (0 for a scalar), strings skipped."""
    steps = _STRING.sub(b"", body).translate(_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(steps).cast("b")), default=0)


def load(body: bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed body; 413 `payload_too_large` over `max_bytes`, 400 `json_too_deep` over
    `max_depth`, 400 `malformed_body` when it is not UTF-8 JSON."""
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes // 1024} KiB")
    try:
        payload = json.loads(body.decode("utf-8-sig"))
    except RecursionError:
        raise _too_deep(max_depth) from None
    except ValueError:  # UnicodeDecodeError is a ValueError
        raise MalformedBody("the body is not JSON") from None
    if depth(body) > max_depth:
        raise _too_deep(max_depth)
    return payload


def _too_deep(max_depth: int) -> MalformedBody:
    return MalformedBody(f"the JSON body is nested more than {max_depth} deep", code="json_too_deep")


def load_object(body: bytes, **bounds: int) -> dict[str, Any]:
    payload = load(body, **bounds)
    if not isinstance(payload, dict):
        raise MalformedBody("the body must be a JSON object")
    return payload
