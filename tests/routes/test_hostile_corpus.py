"""Every hostile body of tests/fixtures/hostile/ (and a few too large to keep there) posted to its
webhook route: the exact 4xx code, or a 2xx with the exact count — never a 5xx. A refused body
stores nothing, an accepted one stores its events, and /healthz answers afterwards."""

from __future__ import annotations

import json

import pytest

from tests.routes.hostile_hooks import HOSTILE, hooks

__all__ = ["hooks"]
EXPECTED: dict[str, dict] = json.loads((HOSTILE / "expected.json").read_text())
TWO_MIB = 2 * 1024 * 1024


def _generated() -> dict[str, tuple[bytes, dict]]:
    """name → (body, expectation), for bodies built here rather than kept as files."""
    unsubscribe = {"type": "subscriber.unsubscribed", "subscriber": {"email": "a@b.io"}}
    cases = {
        "kommo/leads_status__append_flood": (b"&".join([b"x[]=a"] * 19_990),
                                             {"status": 400, "code": "malformed_body"}),
        "kommo/leads_status__20001_fields": (b"&".join([b"a=1"] * 20_001),
                                             {"status": 413, "code": "too_many_fields"}),
        "kommo/leads_status__overlong_hook_key": (b"leads[status][0][id]=1",
                                                  {"status": 404, "code": "unknown_hook",
                                                   "hook": "overlong"}),
        "mailerlite/batched__10001_events": (
            json.dumps({"events": [unsubscribe] * 10_001}).encode(),
            {"status": 413, "code": "too_many_events"}),
    }
    for route in ("kommo", "mailerlite", "classic", "mailchimp"):
        cases[f"{route}/any__2_mib"] = (b"a" * TWO_MIB, {"status": 413, "code": "payload_too_large"})
    return cases


GENERATED = _generated()


def test_the_corpus_is_complete():
    on_disk = {str(p.relative_to(HOSTILE)) for p in HOSTILE.glob("*/*")}
    assert on_disk == set(EXPECTED)
    assert len(EXPECTED) >= 40
    assert {name.split("/")[0] for name in EXPECTED} == {"kommo", "mailerlite", "classic", "mailchimp"}


@pytest.mark.parametrize("name", [*EXPECTED, *GENERATED])
async def test_a_hostile_body_gets_its_exact_answer_and_never_a_5xx(hooks, name):
    if name in EXPECTED:
        body, expected = (HOSTILE / name).read_bytes(), EXPECTED[name]
    else:
        body, expected = GENERATED[name]
    route = name.split("/")[0]
    response = await hooks.post(route, body, signature=expected.get("signature", "signed"),
                                hook=expected.get("hook", "valid"))
    inbox, jobs = await hooks.stored()
    if expected["status"] == 200:
        assert (response.status_code, response.json()) == (200, {"accepted": expected["accepted"]})
        assert len(jobs) == expected["accepted"]
    else:
        assert (response.status_code, response.json()["error"]["code"]) == (
            expected["status"], expected["code"])
        assert (inbox, jobs) == ([], [])
    assert (await hooks.client.get("/healthz")).status_code == 200


async def test_an_unknown_platform_or_key_on_the_url_check_is_404(hooks):
    for url in ("/webhooks/mailchimp/no-such-key", "/webhooks/nothing/mc-hook-key",
                "/webhooks/mailchimp/" + "k" * 5000):
        response = await hooks.client.get(url)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "unknown_hook")
