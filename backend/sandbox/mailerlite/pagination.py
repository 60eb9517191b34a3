"""MailerLite's two list envelopes: page-numbered and cursor-based."""

from __future__ import annotations

import math
from typing import Any

from backend.sandbox.mailerlite.store import BASE


def page_of(request_path: str, items: list[Any], query: dict[str, str], default: int) -> dict:
    """Laravel length-aware pagination, as `GET /groups`, `/fields`, `/webhooks` answer."""
    limit = max(1, int(query.get("limit") or default))
    page = max(1, int(query.get("page") or 1))
    last = max(1, math.ceil(len(items) / limit))
    chunk = items[(page - 1) * limit: page * limit]
    url = lambda n: f"{BASE}/{request_path}?page={n}"  # noqa: E731
    links = [{"url": url(page - 1) if page > 1 else None, "label": "&laquo; Previous",
              "active": False}]
    links += [{"url": url(n), "label": str(n), "active": n == page} for n in range(1, last + 1)]
    links.append({"url": url(page + 1) if page < last else None, "label": "Next &raquo;",
                  "active": False})
    return {"data": chunk,
            "links": {"first": url(1), "last": url(last), "prev": url(page - 1) if page > 1 else None,
                      "next": url(page + 1) if page < last else None},
            "meta": {"current_page": page, "from": (page - 1) * limit + 1 if chunk else None,
                     "last_page": last, "links": links, "path": f"{BASE}/{request_path}",
                     "per_page": limit, "to": (page - 1) * limit + len(chunk) if chunk else None,
                     "total": len(items)}}


def cursor_page(request_path: str, items: list[Any], query: dict[str, str], default: int) -> dict:
    limit = max(1, int(query.get("limit") or default))
    start = int(query.get("cursor") or 0) if (query.get("cursor") or "0").isdigit() else 0
    chunk = items[start:start + limit]
    more = start + limit < len(items)
    next_cursor = str(start + limit) if more else None
    return {"data": chunk,
            "links": {"first": None, "last": None, "prev": None,
                      "next": f"{BASE}/{request_path}?cursor={next_cursor}" if more else None},
            "meta": {"path": f"{BASE}/{request_path}", "per_page": limit,
                     "next_cursor": next_cursor, "prev_cursor": None}}
