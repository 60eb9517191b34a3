import json
import time

import pytest

from backend import jsondata
from backend.errors import MailsyncError


@pytest.mark.parametrize("body, depth", [
    (b"1", 0), (b'"[[{{"', 0), (b"[]", 1), (b'{"a": [1, {"b": "]]}}"}]}', 3),
    (b'["\\"[", [[]]]', 3), (b"[" * 40 + b"]" * 40, 40),
])
def test_depth_skips_strings(body, depth):
    assert jsondata.depth(body) == depth


def test_bodies_within_the_limits_load():
    body = {"events": [{"type": "subscriber.unsubscribed", "subscriber": {"fields": {"a": [1]}}}]}
    assert jsondata.load_object(json.dumps(body).encode()) == body
    assert jsondata.load(b"[" * 32 + b"]" * 32) is not None


@pytest.mark.parametrize("body, status, code", [
    (b"[" * 33 + b"]" * 33, 400, "json_too_deep"),
    (b"[" * 3000 + b"]" * 3000, 400, "json_too_deep"),  # RecursionError in json.loads
    (b"[" * 3000, 400, "json_too_deep"),
    (b'{"a": "\xff"}', 400, "malformed_body"),
    (b'{"a": ' + b"9" * 5000 + b"}", 400, "malformed_body"),  # int() digit limit
    (b"[1]", 400, "malformed_body"),  # not an object
    (b" " * (1024 * 1024 + 1), 413, "payload_too_large"),
])
def test_bodies_past_the_limits_are_refused_with_their_code(body, status, code):
    with pytest.raises(MailsyncError) as refused:
        jsondata.load_object(body)
    assert (refused.value.status_code, refused.value.code) == (status, code)


def test_unclosed_strings_cost_linear_time():
    # A string pattern could backtrack across the body from every quote; it only ever runs on
    # JSON that parsed, so this is refused by the parser first.
    started = time.process_time()
    with pytest.raises(MailsyncError):
        jsondata.load(b'"' + b'\\"' * 400_000)
    assert time.process_time() - started < 0.5
