"""A per-process cache of each ESP account's field keys, so a job does not re-read them.

Keyed on (service, base URL, key hash, list): never on the key itself. Short TTL because an admin
may delete a field in the ESP's own UI; providers also drop the entry when the ESP refuses a field.
"""

from __future__ import annotations

import time
from typing import Any

TTL_SECONDS = 600.0
_ENTRIES: dict[tuple[str, ...], tuple[float, Any]] = {}


def get(key: tuple[str, ...]) -> Any | None:
    entry = _ENTRIES.get(key)
    if entry is None or entry[0] < time.monotonic():
        return None
    return entry[1]


def put(key: tuple[str, ...], value: Any) -> None:
    _ENTRIES[key] = (time.monotonic() + TTL_SECONDS, value)


def drop(key: tuple[str, ...]) -> None:
    _ENTRIES.pop(key, None)


def clear() -> None:
    _ENTRIES.clear()
