"""The simulated MailerLite: limits, opt-out rules, batch, signed deliveries, and a real port."""

import asyncio
import json
import socket

import httpx2
import uvicorn

from backend.providers.base import EventKind
from backend.providers.mailerlite.webhooks import parse_webhook
from backend.sandbox.mailerlite import SANDBOX_API_KEY, create_mailerlite_sandbox

AUTH = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}


def client_for(app) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://ml",
                              headers=AUTH)


async def test_budget_per_key_then_429_with_retry_after():
    app = create_mailerlite_sandbox(rate_limit=2, window=30.0, clock=lambda: 50.0)
    async with client_for(app) as client:
        first = await client.get("/api/groups")
        second = await client.get("/api/groups")
        third = await client.get("/api/groups")
    assert [first.headers["x-ratelimit-remaining"], second.headers["x-ratelimit-remaining"]] == [
        "1", "0"]
    assert (third.status_code, third.json(), third.headers["retry-after"]) == (
        429, {"message": "Too Many Attempts."}, "30")


async def test_the_window_rolls_over():
    now = [0.0]
    app = create_mailerlite_sandbox(rate_limit=1, window=60.0, clock=lambda: now[0])
    async with client_for(app) as client:
        assert (await client.get("/api/groups")).status_code == 200
        assert (await client.get("/api/groups")).status_code == 429
        now[0] = 60.0
        assert (await client.get("/api/groups")).status_code == 200


async def test_unknown_key_is_401():
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_mailerlite_sandbox()),
                                  base_url="http://ml") as client:
        answer = await client.get("/api/groups", headers={"Authorization": "Bearer nope"})
    assert (answer.status_code, answer.json()) == (401, {"message": "Unauthenticated."})


async def test_opt_outs_are_not_reactivated_without_resubscribe():
    app = create_mailerlite_sandbox()
    app.state.sandbox.add_subscriber("gone@acme-corp.io", status="bounced")
    async with client_for(app) as client:
        refused = await client.post("/api/subscribers", json={"email": "gone@acme-corp.io",
                                                              "status": "active"})
        kept = await client.post("/api/subscribers", json={"email": "gone@acme-corp.io",
                                                           "fields": {"name": "G"}})
        revived = await client.post("/api/subscribers", json={
            "email": "gone@acme-corp.io", "status": "active", "resubscribe": True})
    assert refused.status_code == 422 and "errors" in refused.json()
    assert (kept.status_code, kept.json()["data"]["status"]) == (200, "bounced")
    assert revived.json()["data"]["status"] == "active"


async def test_batch_limits_and_import_budget():
    app = create_mailerlite_sandbox(import_limit=1, clock=lambda: 0.0)
    upsert = {"method": "POST", "path": "api/subscribers", "body": {"email": "a@acme-corp.io"}}
    async with client_for(app) as client:
        too_many = await client.post("/api/batch", json={"requests": [upsert] * 51})
        first = await client.post("/api/batch", json={"requests": [upsert]})
        second = await client.post("/api/batch", json={"requests": [upsert]})
        mixed = await client.post("/api/batch", json={"requests": [
            upsert, {"method": "GET", "path": "api/subscribers/a@acme-corp.io"}]})
    assert too_many.status_code == 422
    assert first.json()["responses"][0]["code"] == 201
    assert (second.status_code, second.json()["message"]) == (
        429, "You're being rate limited on import creation.")
    assert [r["code"] for r in mixed.json()["responses"]] == [200, 200]


async def test_group_import_skips_opted_out_addresses():
    app = create_mailerlite_sandbox()
    sandbox = app.state.sandbox
    group = sandbox.add_group("Won")
    sandbox.add_subscriber("gone@acme-corp.io", status="unsubscribed")
    async with client_for(app) as client:
        started = await client.post(f"/api/groups/{group}/import-subscribers", json={
            "subscribers": [{"email": "gone@acme-corp.io"}, {"email": "new@acme-corp.io"}]})
        report = await client.get(started.json()["import_progress_url"].split("connect.mailerlite.com")[1])
    data = report.json()["data"]
    assert (data["imported"], data["unsubscribed"]) == (1, ["gone@acme-corp.io"])
    assert sandbox.subscriber("gone@acme-corp.io")["groups"] == []


async def test_signed_deliveries_single_and_batched():
    app = create_mailerlite_sandbox()
    sandbox = app.state.sandbox
    sandbox.add_subscriber("ann@acme-corp.io", status="unsubscribed")
    single = sandbox.add_webhook("http://us/single", ["subscriber.unsubscribed"])
    batched = sandbox.add_webhook("http://us/batched", ["subscriber.unsubscribed"], batchable=True)
    received = []

    def receiver(request: httpx2.Request) -> httpx2.Response:
        hook = single if request.url.path == "/single" else batched
        received.append(parse_webhook(request.content, signature=request.headers["Signature"],
                                      secret=hook["secret"]))
        return httpx2.Response(200)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(receiver)) as client:
        answers = await sandbox.deliver("subscriber.unsubscribed", "ann@acme-corp.io", client=client)
    assert [a.status_code for a in answers] == [200, 200]
    assert [[(e.kind, e.email) for e in events] for events in received] == [
        [(EventKind.UNSUBSCRIBED, "ann@acme-corp.io")]] * 2
    assert single["response_code"] == 200


async def test_serves_on_a_real_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # accepted into the backlog before uvicorn starts: no need to wait for it
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_mailerlite_sandbox(), log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as client:
            answer = await client.post("/api/subscribers", content=json.dumps(
                {"email": "port@acme-corp.io"}), headers={"Content-Type": "application/json"})
        assert answer.status_code == 201
    finally:
        server.should_exit = True
        await task
        sock.close()
