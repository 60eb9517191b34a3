"""Bracketed form keys (`a[b][0][c]=v`, PHP's `http_build_query` style) → nested dicts and lists.

Kommo and Mailchimp post `application/x-www-form-urlencoded` bodies this way, with the brackets
percent-encoded or not. Every value stays a string, as sent. Objects whose keys are all whole
numbers become lists in index order. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from backend.errors import MalformedBody

MAX_FIELDS = 20_000
MAX_DEPTH = 12
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def parse_form(body: bytes | str) -> dict[str, Any]:
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedBody("the form body is not UTF-8") from None
    try:
        pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_FIELDS)
    except ValueError as exc:
        raise MalformedBody(f"the form body cannot be read: {exc}") from None
    root: dict[str, Any] = {}
    for key, value in pairs:
        _insert(root, split_key(key), value, key)
    return _listify(root)


def split_key(key: str) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        raise MalformedBody(f"malformed form key {key!r}")
    path = [match.group(1), *_SEGMENT.findall(match.group(2))]
    if len(path) > MAX_DEPTH:
        raise MalformedBody(f"form key {key[:60]!r} is nested too deeply")
    return path


def _insert(node: dict[str, Any], path: list[str], value: str, key: str) -> None:
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if part == "":  # `a[]=x`: append, as PHP does
            part = str(sum(1 for k in node if k.isdigit()))
        if last:
            if isinstance(node.get(part), dict):
                raise MalformedBody(f"form key {key!r} is both a value and a group")
            node[part] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise MalformedBody(f"form key {key!r} is both a value and a group")
        node = child


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted
