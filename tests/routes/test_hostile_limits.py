"""The limits against hostile webhook input (issue 13), one test per finding: linear form parsing
that never stalls the event loop, stored bodies capped, bounded JSON, a platform's batch of
thousands acknowledged in one inbox write and split by the worker, and failed authentications
throttled per address without ever holding back valid deliveries."""

from __future__ import annotations

import json
import threading

import pytest

from backend.inbox import MAX_BODY_CHARS
from backend.jobs import ClaimedJob
from backend.routes import webhooks as webhooks_route
from backend.sync.handlers import HANDLERS
from tests.kommo.fixtures import install, widget_token
from tests.routes.hostile_hooks import KOMMO_ACCOUNT, client_at, hooks, lead_items

__all__ = ["hooks"]


@pytest.fixture
def parse_threads(monkeypatch) -> list[int]:
    """The threads the webhook routes parse bodies on: a large body parsed on the event loop's
    own thread would hold every other request (`/healthz` included) until it is done. How long
    that takes is measured by `bench/hostile.py`, not asserted here."""
    seen: list[int] = []
    for name in ("kommo_delivery", "esp_deliveries"):
        def spy(*args, _real=getattr(webhooks_route, name)):
            seen.append(threading.get_ident())
            return _real(*args)
        monkeypatch.setattr(webhooks_route, name, spy)
    return seen


async def test_an_append_flood_is_parsed_off_the_event_loop(hooks, parse_threads):
    body = "&".join(["x[]=a"] * 19_990).encode()  # 120 KB: 10-12 s of parsing before the fix
    response = await hooks.post("kommo", body)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "malformed_body")
    assert parse_threads and threading.get_ident() not in parse_threads
    assert await hooks.stored() == ([], [])


async def test_a_maximum_size_kommo_batch_is_accepted_and_stored_capped(hooks, parse_threads):
    body = f"{lead_items(620)}&account%5Bid%5D={KOMMO_ACCOUNT}".encode()
    assert 1_000_000 < len(body) <= 1024 * 1024 and body.count(b"&") + 1 == 15_501
    response = await hooks.post("kommo", body)
    assert (response.status_code, response.json()) == (200, {"accepted": 620})
    assert parse_threads and threading.get_ident() not in parse_threads
    [row], jobs = await hooks.stored()
    assert len(jobs) == 620 and len(row.body) <= MAX_BODY_CHARS
    stored = json.loads(row.body)
    assert stored["events"][0] == {"entity": "lead", "action": "status", "id": 1000,
                                   "last_modified": 1732540000, "pipeline_id": 7654321,
                                   "status_id": 142, "old_status_id": 67548619}
    assert len(stored["events"]) + stored["omitted"] == 620


@pytest.mark.parametrize("padding", ["pad={}", "leads%5Bstatus%5D%5B0%5D%5Bnote%5D={}"])
async def test_padding_around_one_real_event_is_not_stored(hooks, padding):
    event = lead_items(1).encode() + f"&account%5Bid%5D={KOMMO_ACCOUNT}&".encode()
    body = event + padding.format("x" * (1024 * 1024 - len(event) - len(padding))).encode()
    assert len(body) <= 1024 * 1024
    response = await hooks.post("kommo", body)
    assert (response.status_code, response.json()) == (200, {"accepted": 1})
    [row], [job] = await hooks.stored()
    assert json.loads(row.body) == {"events": [{
        "entity": "lead", "action": "status", "id": 1000, "last_modified": 1732540000,
        "pipeline_id": 7654321, "status_id": 142, "old_status_id": 67548619}]}
    assert job.payload["lead_id"] == 1000


@pytest.mark.parametrize("body, code", [
    (b"a=1&" * 20_000 + b"a=1", "too_many_fields"),
    (b"leads[status][" + b"9" * 5000 + b"][id]=1", "bad_form_key"),
    (b"leads[status][1234567890123][id]=1&account[id]=29085424", "bad_form_index"),
    (b"leads[status][%C2%B2][id]=1&account[id]=29085424", "bad_form_key"),
    (b"leads" + b"[a]" * 12 + b"=1", "form_too_deep"),
])
async def test_form_limits_have_their_own_codes(hooks, body, code):
    response = await hooks.post("kommo", body)
    status = 413 if code == "too_many_fields" else 400
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert await hooks.stored() == ([], [])


def unsubscribes(count: int, *, first: int = 0) -> bytes:
    events = [{"type": "subscriber.unsubscribed",
               "subscriber": {"id": str(n), "email": f"u{n}@shop.io",
                              "unsubscribed_at": "2026-03-26 21:40:57"}}
              for n in range(first, first + count)]
    return json.dumps({"events": events, "total": count}, separators=(",", ":")).encode()


async def split(hooks) -> None:
    """Run the pending batch jobs as the worker would."""
    _, jobs = await hooks.stored()
    for job in jobs:
        if job.kind == "esp_batch" and job.state == "pending":
            await HANDLERS["esp_batch"](hooks.resources, ClaimedJob(job.id, job.account_id, job.kind,
                                                                    job.payload, 1))
            async with hooks.resources.sessions() as session, session.begin():
                (await session.get(type(job), job.id)).state = "done"


async def test_a_signed_batch_of_8000_is_one_inbox_write_split_by_the_worker(hooks, parse_threads):
    body = unsubscribes(8000)
    assert len(body) <= 1024 * 1024
    response = await hooks.post("mailerlite", body)
    assert (response.status_code, response.json()) == (200, {"accepted": 8000})
    assert parse_threads and threading.get_ident() not in parse_threads
    [row], [job] = await hooks.stored()
    assert (row.source, job.kind, len(job.payload["events"])) == ("mailerlite", "esp_batch", 8000)
    assert len(row.body) <= MAX_BODY_CHARS and json.loads(row.body)["omitted"] > 0

    await split(hooks)
    inbox, jobs = await hooks.stored()
    events = [j for j in jobs if j.kind == "esp_event"]
    assert (len(inbox), len(events)) == (8001, 8000)
    assert {j.payload["email"] for j in events} == {f"u{n}@shop.io" for n in range(8000)}
    # The per-event rows carry the keys a lone delivery of the same event would have.
    assert {r.dedupe_key for r in inbox[1:]} == {f"1:{j.payload['dedupe_key']}" for j in events}

    assert (await hooks.post("mailerlite", body)).json() == {"accepted": 0}  # redelivered
    overlapping = unsubscribes(8000, first=7900)  # 100 seen, 7,900 new
    assert (await hooks.post("mailerlite", overlapping)).json() == {"accepted": 8000}
    await split(hooks)
    inbox, jobs = await hooks.stored()
    assert len([j for j in jobs if j.kind == "esp_event"]) == 8000 + 7900
    assert len(inbox) == 8001 + 1 + 7900


async def test_a_small_batch_still_stores_each_event_at_once(hooks):
    response = await hooks.post("mailerlite", unsubscribes(100))
    assert (response.status_code, response.json()) == (200, {"accepted": 100})
    inbox, jobs = await hooks.stored()
    assert (len(inbox), {j.kind for j in jobs}, len(jobs)) == (100, {"esp_event"}, 100)


async def test_more_events_than_a_batch_may_hold_is_413(hooks):
    events = [{"type": "subscriber.unsubscribed", "subscriber": {"email": f"{n}@s.io"}}
              for n in range(10_001)]
    body = json.dumps({"events": events}, separators=(",", ":")).encode()
    assert len(body) <= 1024 * 1024
    response = await hooks.post("mailerlite", body)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "too_many_events")
    assert await hooks.stored() == ([], [])


async def test_failed_authentications_are_throttled_per_address_and_valid_ones_never(hooks, offline_app):
    async with client_at(offline_app, "203.0.113.7") as attacker, \
            client_at(offline_app, "198.51.100.1") as bystander:
        for _ in range(30):
            response = await hooks.post("kommo", b"x=1", hook="unknown", client=attacker)
            assert (response.status_code, response.json()["error"]["code"]) == (404, "unknown_hook")
        for route, options in (("kommo", {"hook": "unknown"}), ("mailerlite", {"signature": "forged"}),
                               ("classic", {"signature": "non_ascii"}), ("mailchimp", {"hook": "overlong"})):
            response = await hooks.post(route, b"{}", client=attacker, **options)
            assert (response.status_code, response.json()["error"]["code"]) == (429, "too_many_failures")
            assert 1 <= int(response.headers["Retry-After"]) <= 60
        # Valid deliveries from the same address pass, however many.
        body = (f"{lead_items(1)}&account%5Bid%5D={KOMMO_ACCOUNT}").encode()
        assert (await hooks.post("kommo", body, client=attacker)).json() == {"accepted": 1}
        for n in range(40):
            response = await hooks.post("mailerlite", unsubscribes(1, first=n), client=attacker)
            assert (response.status_code, response.json()) == (200, {"accepted": 1})
        # Another address is not held back by the first one's failures.
        response = await hooks.post("kommo", b"x=1", hook="unknown", client=bystander)
        assert response.status_code == 404


async def test_a_deeply_nested_widget_body_is_400(web, kommo, kommo_settings):
    await install(web, kommo)
    body = b"[" * 3000 + b"]" * 3000
    answer = await web.put("/api/widget/mapping", content=b'{"rules":' + body + b"}",
                           headers={"X-Auth-Token": widget_token(kommo_settings),
                                    "Content-Type": "application/json"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "json_too_deep")
