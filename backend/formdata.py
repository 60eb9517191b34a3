"""Bracketed form keys (`a[b][0][c]=v`, PHP's `http_build_query` style) → nested dicts and lists.

Kommo and Mailchimp post `application/x-www-form-urlencoded` bodies this way, with the brackets
percent-encoded or not. Every value stays a string, as sent. Objects whose keys are all whole
numbers become lists in index order. Pure functions, no I/O.

The bodies come from outside, so parsing is linear in the body and bounded (docs/ARCHITECTURE.md
§3, "Hostile input"): at most `MAX_FIELDS` pairs, keys of at most `MAX_KEY_LENGTH` ASCII
characters and `MAX_DEPTH` segments, numeric segments of at most `MAX_INDEX_DIGITS` digits.
A 1 MiB body of real Kommo items (~16,000 pairs) costs ~40 ms of CPU (2-core test machine), so
the webhook route parses large bodies in a worker thread (`routes/webhook_guard.py`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from backend.errors import MalformedBody, PayloadTooLarge

# A Kommo item is 15–40 pairs (id, stage, dates, custom fields): 20,000 pairs is ~600 leads,
# about what fits in the 1 MiB webhook body limit anyway. Refusing a real batch would make Kommo
# retry it and, after 100 refusals, switch the webhook off.
MAX_FIELDS = 20_000
# Kommo's custom field values already use 8: `leads[status][0][custom_fields][0][values][0][value]`.
MAX_DEPTH = 12
MAX_KEY_LENGTH = 256
MAX_INDEX_DIGITS = 12  # Kommo ids have 8–10 digits (`linked_leads_id[15318175][ID]`)


class _Node(dict):
    """A dict that, once `a[]` has appended to it, knows the next index (one past the largest
    seen), so each further append costs O(1) instead of a count of the node's keys."""

    __slots__ = ("next_index",)

    def __init__(self) -> None:
        super().__init__()
        self.next_index: int | None = None


def parse_form(body: bytes | str) -> dict[str, Any]:
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedBody("the form body is not UTF-8") from None
    if body.count("&") >= MAX_FIELDS:
        raise PayloadTooLarge(f"the form body has more than {MAX_FIELDS} fields",
                              code="too_many_fields")
    # Decoding the brackets once over the whole body keeps the per-key unquote on its fast path
    # (no `%`); "%5B" can only ever decode to "[", so the result is the same.
    body = body.replace("%5B", "[").replace("%5D", "]").replace("%5b", "[").replace("%5d", "]")
    root = _Node()
    for chunk in body.split("&"):
        if chunk:
            key, _, value = chunk.partition("=")
            key = _decode(key)
            _insert(root, split_key(key), _decode(value), key)
    # The root stays an object even when every key is a number: callers read it by name.
    return {name: _listify(child) if child.__class__ is _Node else child
            for name, child in root.items()}


def _decode(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text) if "%" in text else text


def split_key(key: str) -> list[str]:
    """`a[b][0][]` → ["a", "b", "0", ""]."""
    if len(key) > MAX_KEY_LENGTH:
        raise MalformedBody(f"form key {key[:60]!r}… is longer than {MAX_KEY_LENGTH} characters",
                            code="bad_form_key")
    if not key.isascii():
        raise MalformedBody(f"form key {key[:60]!r} is not ASCII", code="bad_form_key")
    head, bracket, rest = key.partition("[")
    if not head or "]" in head or (bracket and not rest.endswith("]")):
        raise MalformedBody(f"malformed form key {key[:60]!r}", code="bad_form_key")
    if not bracket:
        return [head]
    parts = rest[:-1].split("][")
    if len(parts) >= MAX_DEPTH:
        raise MalformedBody(f"form key {key[:60]!r} is nested more than {MAX_DEPTH} deep",
                            code="form_too_deep")
    inner = "".join(parts)
    if "[" in inner or "]" in inner:
        raise MalformedBody(f"malformed form key {key[:60]!r}", code="bad_form_key")
    return [head, *parts]


def _insert(node: _Node, path: list[str], value: str, key: str) -> None:
    *groups, leaf = path
    for part in groups:
        if not part or node.next_index is not None:
            part = _index(node, part)
        child = node.get(part)
        if child is None:
            child = node[part] = _Node()
        elif child.__class__ is not _Node:
            raise MalformedBody(f"form key {key[:60]!r} is both a value and a group")
        node = child
    if not leaf or node.next_index is not None:
        leaf = _index(node, leaf)
    if node.get(leaf).__class__ is _Node:
        raise MalformedBody(f"form key {key[:60]!r} is both a value and a group")
    node[leaf] = value


def _index(node: _Node, part: str) -> str:
    """`[]` appends, as PHP does; a number given explicitly moves the next append past it."""
    if part == "":
        if node.next_index is None:  # the first append scans the node once
            node.next_index = max((int(k) + 1 for k in node if k.isdigit()), default=0)
        part = str(node.next_index)
        node.next_index += 1
    elif node.next_index is not None and part.isdigit() and int(part) >= node.next_index:
        node.next_index = int(part) + 1
    return part


def _listify(node: _Node) -> dict[str, Any] | list[Any]:
    """In place, children first: a node whose keys are all numbers becomes a list."""
    for name, child in node.items():
        if child.__class__ is _Node:
            node[name] = _listify(child)
    if not "".join(node).isdigit():  # str methods over the keys at once, not a loop per key
        return node
    if max(map(len, node)) > MAX_INDEX_DIGITS:
        raise MalformedBody(f"a form index has more than {MAX_INDEX_DIGITS} digits",
                            code="bad_form_index")
    return [node[k] for k in sorted(node, key=int)]
