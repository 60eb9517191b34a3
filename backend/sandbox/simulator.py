"""What the MailerLite and Mailchimp simulators share: the request log, the fixed-window request
budget, and a regex route table that their HTTP fronts and MailerLite's `/batch` dispatch through.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

Answer = tuple[int, Any]
Routes = list[tuple[str, re.Pattern[str], str]]
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
K = TypeVar("K", bound=Hashable)


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    key: str | None
    batch: bool = False  # MailerLite only: dispatched from inside a `/batch` call


def select_calls(requests: Iterable[LoggedRequest], method: str | None = None,
                 path: str | None = None) -> list[LoggedRequest]:
    return [r for r in requests
            if (method is None or r.method == method) and (path is None or r.path == path)]


def take_window(windows: dict[K, tuple[float, int]], key: K, limit: int, window: float,
                clock: Callable[[], float]) -> tuple[int, float]:
    """Fixed window per key: (remaining after this request or -1 when refused, reset in s)."""
    start, count = windows.get(key, (clock(), 0))
    if clock() - start >= window:
        start, count = clock(), 0
    reset = max(0.0, start + window - clock())
    if count >= limit:
        windows[key] = (start, count)
        return -1, reset
    windows[key] = (start, count + 1)
    return limit - count - 1, reset


def compile_routes(table: Iterable[tuple[str, str, str]]) -> Routes:
    """(method, path regex, handler name) rows; each regex must match the whole path."""
    return [(method, re.compile(f"^{pattern}$"), handler) for method, pattern, handler in table]


def find_route(routes: Routes, method: str, path: str) -> tuple[str, tuple[str, ...]] | None:
    """The first route for `method` whose pattern matches: (handler name, captured groups)."""
    for route_method, pattern, handler in routes:
        match = pattern.match(path)
        if match and route_method == method:
            return handler, match.groups()
    return None
