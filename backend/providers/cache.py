"""A per-process cache of each ESP account's field keys, so a job does not re-read them.

Kept per HTTP client (one per process; tests build their own) and keyed on (service, base URL,
key hash, list): never on the key itself. Short TTL because an admin may delete a field in the
ESP's own UI; providers also drop the entry when the ESP refuses a field.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

TTL_SECONDS = 600.0
_ENTRIES: weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], tuple[float, Any]]] = \
    weakref.WeakKeyDictionary()


def get(owner: Any, key: tuple[str, ...]) -> Any | None:
    entry = _ENTRIES.get(owner, {}).get(key)
    if entry is None or entry[0] < time.monotonic():
        return None
    return entry[1]


def put(owner: Any, key: tuple[str, ...], value: Any) -> None:
    _ENTRIES.setdefault(owner, {})[key] = (time.monotonic() + TTL_SECONDS, value)


def drop(owner: Any, key: tuple[str, ...]) -> None:
    _ENTRIES.get(owner, {}).pop(key, None)
