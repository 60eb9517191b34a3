"""The simulated Mailchimp: connection limit, compliance errors, URL validation, form deliveries."""

import asyncio

import httpx2

from backend.providers.base import EventKind
from backend.providers.mailchimp.webhooks import parse_webhook
from backend.sandbox.mailchimp import SANDBOX_API_KEY, create_mailchimp_sandbox, md5


def client_for(app) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://mc/us21/3.0",
                              auth=("any", SANDBOX_API_KEY))


async def wait_in_flight(sandbox, count: int) -> None:
    async with sandbox.changed:
        await sandbox.changed.wait_for(lambda: sandbox.in_flight.get(SANDBOX_API_KEY, 0) >= count)


async def test_eleventh_simultaneous_request_is_429():
    app = create_mailchimp_sandbox()
    sandbox = app.state.sandbox
    sandbox.gate = asyncio.Event()
    async with client_for(app) as client:
        held = [asyncio.create_task(client.get("/ping")) for _ in range(10)]
        await wait_in_flight(sandbox, 10)
        refused = await client.get("/ping")
        sandbox.gate.set()
        answers = await asyncio.gather(*held)
    assert refused.status_code == 429
    assert refused.json()["title"] == "TooManyRequests"
    assert refused.headers["content-type"] == "application/problem+json"
    assert [a.status_code for a in answers] == [200] * 10


async def test_wrong_data_centre_or_key_is_401():
    app = create_mailchimp_sandbox()
    async with client_for(app) as client:
        wrong_dc = await client.get("http://mc/us1/3.0/ping")
        wrong_key = await client.get("/ping", auth=("any", "nope-us21"))
    assert [wrong_dc.status_code, wrong_key.status_code] == [401, 401]
    assert wrong_key.json()["title"] == "API Key Invalid"


async def test_compliance_forgotten_and_fake_addresses():
    app = create_mailchimp_sandbox()
    sandbox = app.state.sandbox
    audience = sandbox.add_audience("A").id
    sandbox.add_member(audience, "gone@acme-corp.io", "unsubscribed")
    async with client_for(app) as client:
        compliance = await client.put(f"/lists/{audience}/members/{md5('gone@acme-corp.io')}", json={
            "email_address": "gone@acme-corp.io", "status": "subscribed"})
        kept = await client.put(f"/lists/{audience}/members/{md5('gone@acme-corp.io')}", json={
            "email_address": "gone@acme-corp.io", "status_if_new": "subscribed"})
        fake = await client.put(f"/lists/{audience}/members/{md5('a@example.com')}", json={
            "email_address": "a@example.com", "status_if_new": "subscribed"})
        await client.post(f"/lists/{audience}/members/{md5('gone@acme-corp.io')}"
                          "/actions/delete-permanent")
        forgotten = await client.put(f"/lists/{audience}/members/{md5('gone@acme-corp.io')}", json={
            "email_address": "gone@acme-corp.io", "status_if_new": "subscribed"})
    assert (compliance.status_code, compliance.json()["title"]) == (400, "Member In Compliance State")
    assert kept.json()["status"] == "unsubscribed"
    assert fake.json()["detail"] == "a@example.com looks fake or invalid, please enter a real email address."
    assert forgotten.json()["title"] == "Forgotten Email Not Subscribed"


async def test_webhook_url_is_validated_with_a_get_and_deliveries_are_forms():
    seen = []

    def our_side(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.method)
        if request.method == "POST":
            seen.append(parse_webhook(request.content))
        return httpx2.Response(200)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(our_side)) as ours:
        app = create_mailchimp_sandbox(validator=ours)
        sandbox = app.state.sandbox
        audience = sandbox.add_audience("A").id
        async with client_for(app) as client:
            created = await client.post(f"/lists/{audience}/webhooks", json={
                "url": "https://mailsync.test/webhooks/mailchimp/k",
                "events": {"unsubscribe": True, "cleaned": True},
                "sources": {"user": True, "admin": True, "api": False}})
        assert created.status_code == 200
        sent = await sandbox.deliver(audience, "unsubscribe", {"email": "Ann@Acme-Corp.io",
                                                              "reason": "manual"}, client=ours)
        echoed = await sandbox.deliver(audience, "unsubscribe", {"email": "b@acme-corp.io"},
                                       client=ours, source="api")
    assert [a.status_code for a in sent] == [200] and echoed == []
    assert seen[0] == "GET" and seen[1] == "POST"
    [event] = seen[2]
    assert (event.kind, event.email, event.reason) == (EventKind.UNSUBSCRIBED, "ann@acme-corp.io",
                                                       "manual")


async def test_optional_request_budget_with_retry_after():
    app = create_mailchimp_sandbox(rate_limit=1, window=20.0, clock=lambda: 5.0)
    async with client_for(app) as client:
        assert (await client.get("/ping")).status_code == 200
        limited = await client.get("/ping")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "20")


async def test_the_request_log_reads_over_http_without_keys_or_budget():
    app = create_mailchimp_sandbox(rate_limit=1, window=20.0, clock=lambda: 5.0)
    audience = app.state.sandbox.add_audience("A").id
    async with client_for(app) as client:
        tagged = await client.post(f"/lists/{audience}/members/{md5('a@acme-corp.io')}/tags",
                                   json={"tags": [{"name": "won", "status": "active"}]})
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://mc") as http:
        log = (await http.get("/_sandbox/requests")).json()
    assert tagged.status_code == 404  # no such member: logged all the same
    assert log == [{"method": "POST", "path": f"/lists/{audience}/members/{md5('a@acme-corp.io')}/tags",
                    "query": {}, "json": {"tags": [{"name": "won", "status": "active"}]}}]
