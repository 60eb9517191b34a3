"""PUT/DELETE /api/widget/provider, GET lists, GET/POST segments, against the simulated ESPs."""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey
from sqlmodel import select

from backend import db, jobs, repository
from backend.app import create_app
from backend.models import EspConnection, Job, MappingRule, utcnow
from backend.sandbox.mailchimp import SANDBOX_API_KEY as MC_KEY
from backend.sandbox.mailchimp import create_mailchimp_sandbox
from backend.sandbox.mailerlite import SANDBOX_API_KEY as ML_KEY
from backend.sandbox.mailerlite import SANDBOX_CLASSIC_KEY, create_mailerlite_sandbox
from tests.conftest import make_settings

ACCOUNT = 29085424


@dataclass
class World:
    client: httpx2.AsyncClient
    resources: Any
    ml: Any
    mc: Any
    list_id: str
    hooks_seen: list[tuple[str, bool]]

    def token(self, *, admin: bool = True, account: int = ACCOUNT) -> dict[str, str]:
        settings = self.resources.settings
        now = int(time.time())
        claims = {"aud": settings.public_origin, "nbf": now, "exp": now + 600,
                  "account_id": account, "user_id": 7, "is_admin": admin}
        token = jwt.encode({"alg": "HS256"}, claims,
                           OctKey.import_key(settings.client_secret.reveal()))
        return {"X-Auth-Token": token}

    async def connection(self) -> EspConnection | None:
        async with self.resources.sessions() as session:
            return await repository.get_esp_connection(session, ACCOUNT)

    def outbound(self) -> int:
        return len(self.ml.requests) + len(self.mc.requests)


@pytest.fixture
async def world(database_url, engine) -> AsyncIterator[World]:
    settings = make_settings(database_url, MAILERLITE_API_BASE_URL="http://ml.sandbox/api",
                             MAILERLITE_CLASSIC_API_BASE_URL="http://ml.sandbox/api/v2",
                             MAILCHIMP_API_BASE_URL="http://mc.sandbox/{dc}/3.0")
    hooks_seen: list[tuple[str, bool]] = []
    sessions = db.session_factory(engine)

    async def our_webhook_url(request: httpx2.Request) -> httpx2.Response:
        """Stands in for the GET /webhooks/mailchimp/{key} route: 200 only for a committed key."""
        key = request.url.path.rsplit("/", 1)[1]
        async with sessions() as session:
            known = await repository.find_esp_connection_by_hook_key(session, key) is not None
        hooks_seen.append((key, known))
        return httpx2.Response(200 if known else 404)

    validator = httpx2.AsyncClient(transport=httpx2.MockTransport(our_webhook_url))
    ml_app, mc_app = create_mailerlite_sandbox(), create_mailchimp_sandbox(validator=validator)
    list_id = mc_app.state.sandbox.add_audience("Acme news").id
    outbound = httpx2.AsyncClient(mounts={
        "http://ml.sandbox": httpx2.ASGITransport(app=ml_app),
        "http://mc.sandbox": httpx2.ASGITransport(app=mc_app)})
    app = create_app(settings, engine=engine, http_client=outbound)
    async with app.router.lifespan_context(app):
        async with sessions() as session:
            await repository.upsert_account(session, ACCOUNT, host="acme.kommo.com", subdomain="acme")
            await repository.replace_mapping(session, ACCOUNT, [MappingRule(
                account_id=ACCOUNT, pipeline_id=1, status_id=142, action="segment", segment_id="g")])
            await session.commit()
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                      base_url="http://testserver") as client:
            yield World(client, app.state.resources, ml_app.state.sandbox, mc_app.state.sandbox,
                        list_id, hooks_seen)
    await outbound.aclose()
    await validator.aclose()


async def test_connect_mailerlite_registers_a_signed_webhook(world):
    answer = await world.client.put("/api/widget/provider", headers=world.token(),
                                    json={"kind": "mailerlite", "api_key": ML_KEY})
    assert answer.status_code == 200
    assert answer.json()["provider"] == {"kind": "mailerlite", "label": "MailerLite", "status": "ok"}
    row = await world.connection()
    [hook] = world.ml.state.webhooks.values()
    assert hook["url"] == f"https://mailsync.test/webhooks/mailerlite/{row.hook_key}"
    assert (row.classic, row.webhook_id) == (False, hook["id"])
    assert world.resources.vault.decrypt(row.webhook_secret_enc) == hook["secret"]
    assert world.resources.vault.decrypt(row.api_key_enc) == ML_KEY
    assert hook["batchable"] is True and "subscriber.unsubscribed" in hook["events"]
    assert [(r.method, r.path) for r in world.ml.requests] == [
        ("GET", "/api/subscribers"), ("POST", "/api/webhooks")]


async def test_a_classic_key_is_detected_and_recorded(world):
    answer = await world.client.put("/api/widget/provider", headers=world.token(),
                                    json={"kind": "mailerlite", "api_key": SANDBOX_CLASSIC_KEY})
    assert answer.json()["provider"] == {"kind": "mailerlite", "label": "MailerLite Classic", "status": "ok"}
    row = await world.connection()
    assert row.classic is True and row.webhook_secret_enc is None
    assert len(row.webhook_id.split(",")) == 4
    assert world.ml.requests[0].path == "/api/v2/groups"  # tried as Classic first, by its shape


async def test_a_wrong_key_is_422_and_nothing_is_stored(world):
    answer = await world.client.put("/api/widget/provider", headers=world.token(),
                                    json={"kind": "mailerlite", "api_key": "eyJa.eyJb.c"})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_api_key"
    assert await world.connection() is None and world.ml.state.webhooks == {}


async def test_a_mailchimp_key_without_data_centre_makes_no_call(world):
    answer = await world.client.put("/api/widget/provider", headers=world.token(),
                                    json={"kind": "mailchimp", "api_key": "abc123"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid_api_key")
    assert world.outbound() == 0 and await world.connection() is None


async def test_non_admins_cannot_connect_or_disconnect(world):
    for method in ("PUT", "DELETE"):
        answer = await world.client.request(method, "/api/widget/provider",
                                            headers=world.token(admin=False),
                                            json={"kind": "mailerlite", "api_key": ML_KEY})
        assert answer.status_code == 403
    assert world.outbound() == 0 and await world.connection() is None


async def test_connect_mailchimp_commits_the_hook_key_before_registering(world):
    answer = await world.client.put("/api/widget/provider", headers=world.token(),
                                    json={"kind": "mailchimp", "api_key": MC_KEY})
    assert answer.json()["provider"] == {"kind": "mailchimp", "label": "Mailchimp (Acme news)",
                                         "status": "ok", "list_id": world.list_id,
                                         "list_name": "Acme news"}
    row = await world.connection()
    assert world.hooks_seen == [(row.hook_key, True)]  # Mailchimp's GET found the stored key
    [hook] = world.mc.audiences[world.list_id].webhooks.values()
    assert hook["url"] == f"https://mailsync.test/webhooks/mailchimp/{row.hook_key}"
    assert hook["sources"] == {"user": True, "admin": True, "api": False}
    assert (row.dc, row.webhook_id, row.webhook_secret_enc) == ("us21", hook["id"], None)


async def test_failed_webhook_registration_leaves_nothing_stored(world):
    world.mc.validator = httpx2.AsyncClient(transport=httpx2.MockTransport(
        lambda request: httpx2.Response(404)))
    answer = await world.client.put("/api/widget/provider", headers=world.token(),
                                    json={"kind": "mailchimp", "api_key": MC_KEY,
                                          "list_id": world.list_id})
    await world.mc.validator.aclose()
    assert answer.status_code == 502
    assert await world.connection() is None


async def test_lists_and_segments(world):
    headers = world.token()
    assert (await world.client.get("/api/widget/provider/segments", headers=headers)).json()[
        "error"]["code"] == "provider_not_connected"
    world.mc.add_audience("Second list")
    await world.client.put("/api/widget/provider", headers=headers,
                           json={"kind": "mailchimp", "api_key": MC_KEY, "list_id": world.list_id})
    lists = (await world.client.get("/api/widget/provider/lists", headers=headers)).json()
    assert [(a["name"], a["member_count"]) for a in lists] == [("Acme news", 0), ("Second list", 0)]
    created = await world.client.post("/api/widget/provider/segments", headers=headers,
                                      json={"name": "Won"})
    assert created.json() == {"id": "Won", "name": "Won"}
    segments = await world.client.get("/api/widget/provider/segments",
                                      headers=world.token(admin=False))
    assert segments.json() == [{"id": "Won", "name": "Won"}]
    refused = await world.client.post("/api/widget/provider/segments",
                                      headers=world.token(admin=False), json={"name": "X"})
    assert refused.status_code == 403


async def test_mailerlite_has_no_lists_and_groups_as_segments(world):
    headers = world.token()
    await world.client.put("/api/widget/provider", headers=headers,
                           json={"kind": "mailerlite", "api_key": ML_KEY})
    assert (await world.client.get("/api/widget/provider/lists", headers=headers)).json() == []
    group = (await world.client.post("/api/widget/provider/segments", headers=headers,
                                     json={"name": "Won"})).json()
    assert group["name"] == "Won" and group["id"] in world.ml.state.groups


async def test_delete_removes_the_webhook_and_keeps_the_mapping(world):
    headers = world.token()
    await world.client.put("/api/widget/provider", headers=headers,
                           json={"kind": "mailerlite", "api_key": ML_KEY})
    answer = await world.client.delete("/api/widget/provider", headers=headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["provider"] is None
    assert body["mapping"]["rules"] == [{"pipeline_id": 1, "status_id": 142, "action": "segment",
                                         "segment_id": "g"}]
    assert world.ml.state.webhooks == {} and await world.connection() is None


async def test_reconnecting_replaces_the_old_webhook(world):
    headers = world.token()
    for _ in range(2):
        await world.client.put("/api/widget/provider", headers=headers,
                               json={"kind": "mailerlite", "api_key": ML_KEY})
    row = await world.connection()
    assert [h["id"] for h in world.ml.state.webhooks.values()] == [row.webhook_id]
    async with world.resources.sessions() as session:
        rows = (await session.exec(select(EspConnection))).all()
    assert len(rows) == 1


async def test_a_new_key_clears_the_rejection_and_brings_waiting_jobs_forward(world):
    headers = world.token()
    await world.client.put("/api/widget/provider", headers=headers,
                           json={"kind": "mailerlite", "api_key": ML_KEY})
    later = utcnow() + timedelta(hours=1)
    async with world.resources.sessions() as session, session.begin():
        assert await repository.mark_key_rejected(session, ACCOUNT)
        assert not await repository.mark_key_rejected(session, ACCOUNT)  # once per key
        await jobs.enqueue(session, [jobs.JobSpec(ACCOUNT, "reconcile_lead", "l:1", {"lead_id": 1})],
                           run_at=later)
    shown = await world.client.get("/api/widget/account", headers=headers)
    assert shown.json()["provider"]["status"] == "key_rejected"
    answer = await world.client.put("/api/widget/provider", headers=headers,
                                    json={"kind": "mailerlite", "api_key": ML_KEY})
    assert answer.json()["provider"]["status"] == "ok"
    async with world.resources.sessions() as session:
        [job] = (await session.exec(select(Job))).all()
    assert job.run_at <= utcnow()
