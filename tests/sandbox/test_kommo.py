"""The simulated Kommo: webhook bodies identical to the reference captures, OAuth rotation rules,
the 7 requests/s limit, 204s and problem+json, and the HTTP controls."""

from pathlib import Path

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backend.kommo.webhooks import parse_webhook
from backend.sandbox.kommo import KommoSandbox, create_kommo_sandbox
from backend.sandbox.kommo_render import lead_hook
from backend.sandbox.kommo_store import KommoStore
from backend.settings import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kommo"
ACME = 29085424
QUALIFIED, PROPOSAL = 67548607, 67548619


class Receiver:
    """Where the sandbox posts its webhooks: remembers each body."""

    def __init__(self, status=200):
        self.bodies: list[str] = []
        self.status = status
        self.app = Starlette(routes=[Route("/hook/{name}", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> JSONResponse:
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        self.bodies.append((await request.body()).decode())
        return JSONResponse({"accepted": 1}, status_code=self.status)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
async def scene():
    """Acme's account with the leads and the contact of the reference bodies, at their times."""
    receiver, clock = Receiver(), Clock(1732533000)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=receiver.app)) as hooks:
        sandbox = KommoSandbox(KommoStore(clock=clock), webhook_client=hooks)
        store = sandbox.store
        store.add_account(ACME, "acme")
        for lead_id, status in ((15318175, QUALIFIED), (15318176, PROPOSAL), (15318177, QUALIFIED)):
            store.add_lead(ACME, lead_id=lead_id, status_id=status, price=1200, fields={1118164: "1000"})
        store.add_contact(ACME, "Ann Lee", contact_id=24870011, phones=["+15550100"],
                          emails=[("ann.lee@acme-corp.io", "WORK"), ("ann@home-mail.io", "PRIV")])
        store.lead(ACME, 15318175).contacts = [(24870011, True)]
        yield sandbox, receiver, clock


def fixture(name):
    return (FIXTURES / name).read_text()


async def test_a_stage_change_of_two_leads_is_the_reference_body(scene):
    sandbox, receiver, clock = scene
    clock.now = 1732540000
    first = sandbox.store.move_lead(ACME, 15318175, PROPOSAL)
    clock.now = 1732540001
    second = sandbox.store.move_lead(ACME, 15318176, 142)
    items = [lead_hook(sandbox.store, first), lead_hook(sandbox.store, second)]
    await sandbox.fire(ACME, "leads", "status", items, url="http://receiver/hook/a")
    assert receiver.bodies == [fixture("leads_status__two_leads.txt")]


async def test_lead_added_and_deleted_are_the_reference_bodies(scene):
    sandbox, receiver, _ = scene
    sandbox.store.lead(ACME, 15318177).updated_at = 1732540300
    await sandbox.fire_lead(ACME, 15318177, "add", url="http://receiver/hook/a")
    sandbox.store.move_lead(ACME, 15318175, PROPOSAL)
    await sandbox.fire_lead(ACME, 15318175, "delete", url="http://receiver/hook/a")
    assert receiver.bodies == [fixture("leads_add__one.txt"), fixture("leads_delete__basic.txt")]


async def test_contact_added_and_deleted_are_the_reference_bodies(scene):
    sandbox, receiver, _ = scene
    sandbox.store.contact(ACME, 24870011).updated_at = 1732540100
    await sandbox.fire_contact(ACME, 24870011, "add", url="http://receiver/hook/a")
    await sandbox.fire_contact(ACME, 24870011, "delete", url="http://receiver/hook/a")
    assert receiver.bodies == [fixture("contacts_add__email_phone.txt"),
                               fixture("contacts_delete__basic.txt")]


async def test_webhooks_go_to_enabled_subscriptions_of_that_event(scene):
    sandbox, receiver, _ = scene
    account = sandbox.store.account(ACME)
    for name, settings, disabled in (("status", ["status_lead"], False), ("contacts", ["add_contact"], False),
                                     ("off", ["status_lead"], True)):
        account.webhooks[name] = {"destination": f"http://receiver/hook/{name}", "settings": settings,
                                  "disabled": disabled}
    [delivery] = await sandbox.change_stage(ACME, 15318175, 143)
    assert (delivery.url, delivery.status) == ("http://receiver/hook/status", 200)
    [event] = parse_webhook(receiver.bodies[0]).events
    assert (event.id, event.status_id, event.old_status_id) == (15318175, 143, QUALIFIED)
    assert sandbox.deliveries == [delivery]


async def test_an_unreachable_receiver_is_recorded_not_raised():
    sandbox = KommoSandbox()
    sandbox.store.add_account(ACME)
    lead = sandbox.store.add_lead(ACME)
    [delivery] = await sandbox.fire_lead(ACME, lead.id, "update", url="http://127.0.0.1:9/hook")
    assert delivery.status is None


# --- HTTP ------------------------------------------------------------------------------------------


@pytest.fixture
async def kommo():
    sandbox = KommoSandbox()
    sandbox.store.add_account(ACME, "acme")
    sandbox.store.add_account(31000001, "beta")
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=sandbox.app),
                                  base_url="http://kommo.test") as http:
        yield sandbox, http


KEYS = {"client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET}


async def token(http, **fields):
    return await http.post("/oauth2/access_token", data={**KEYS, **fields})


async def test_refresh_tokens_rotate_with_a_grace_for_the_last_one(kommo):
    sandbox, http = kommo
    first = (await http.post("/oauth2/access_token", json={
        **KEYS, "grant_type": "authorization_code", "code": sandbox.store.authorize(ACME)})).json()
    assert (first["token_type"], first["expires_in"]) == ("Bearer", 86400)
    second = (await token(http, grant_type="refresh_token", refresh_token=first["refresh_token"])).json()
    # The response may have been lost: the old refresh token still works once more...
    third = (await token(http, grant_type="refresh_token", refresh_token=first["refresh_token"])).json()
    # ...which kills its other successor; using the newest one kills the old one.
    refused = await token(http, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert (refused.status_code, refused.json()["hint"]) == (400, "Invalid refresh token")
    newest = await token(http, grant_type="refresh_token", refresh_token=third["refresh_token"])
    assert newest.status_code == 200
    assert (await token(http, grant_type="refresh_token",
                        refresh_token=first["refresh_token"])).json()["hint"] == "Invalid refresh token"


@pytest.mark.parametrize("fields, hint", [
    ({"client_id": "other"}, "Check the `client_id` parameter"),
    ({"client_secret": "other"}, "Check the `client_secret` parameter"),
    ({"code": "forged"}, "Cannot decrypt the authorization code"),
])
async def test_the_token_endpoint_refuses_like_kommo(kommo, fields, hint):
    sandbox, http = kommo
    answer = await token(http, **{"grant_type": "authorization_code", "code": sandbox.store.authorize(ACME),
                                  **fields})
    assert answer.status_code == 400 and answer.headers["content-type"] == "application/problem+json"
    assert answer.json() == {"title": "Некорректный запрос", "status": 400, "hint": hint,
                             "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
                             "detail": "В запросе отсутствует ряд параметров или параметры невалидны"}


async def bearer(sandbox, http, account_id=ACME):
    code = sandbox.store.authorize(account_id)
    issued = (await token(http, grant_type="authorization_code", code=code)).json()
    return {"Authorization": f"Bearer {issued['access_token']}"}


async def test_more_than_seven_requests_a_second_get_429(kommo):
    sandbox, http = kommo
    acme, beta = await bearer(sandbox, http), await bearer(sandbox, http, 31000001)
    statuses = [(await http.get("/api/v4/account", headers=acme)).status_code for _ in range(8)]
    assert statuses == [200] * 7 + [429]
    limited = await http.get("/api/v4/account", headers=acme)
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.json()["retry_after"] == 1 and limited.json()["status"] == 429
    assert (await http.get("/api/v4/account", headers=beta)).status_code == 200  # per account


async def test_empty_lists_are_204_and_errors_are_problem_json(kommo):
    sandbox, http = kommo
    acme = await bearer(sandbox, http)
    for path in ("/api/v4/leads", "/api/v4/contacts?query=nobody", "/api/v4/webhooks"):
        answer = await http.get(path, headers=acme)
        assert (answer.status_code, answer.content) == (204, b"")
    missing = await http.get("/api/v4/leads/1", headers=acme)
    assert (missing.status_code, missing.headers["content-type"]) == (404, "application/problem+json")
    assert (await http.get("/api/v4/account")).json()["detail"] == "Invalid user name or password"
    assert (await http.get("/api/v4/nothing-here", headers=acme)).json()["status"] == 404
    too_many = await http.get("/api/v4/leads?limit=251", headers=acme)
    assert (too_many.status_code, too_many.json()["detail"]) == (422, "Limit 250 per page")
    [req] = sandbox.calls("/api/v4/leads/1")
    assert (req.account_id, req.status) == (ACME, 404)


async def test_tags_are_replaced_and_null_detaches_all(kommo):
    sandbox, http = kommo
    acme = await bearer(sandbox, http)
    ann = sandbox.store.add_contact(ACME, "Ann")
    await http.patch(f"/api/v4/contacts/{ann.id}", headers=acme,
                     json={"_embedded": {"tags": [{"name": "a"}, {"name": "b"}]}})
    tag_a = ann.tags[0]["id"]
    await http.patch(f"/api/v4/contacts/{ann.id}", headers=acme,
                     json={"_embedded": {"tags": [{"id": tag_a}]}})
    assert [t["name"] for t in ann.tags] == ["a"]
    await http.patch(f"/api/v4/contacts/{ann.id}", headers=acme, json={"_embedded": {"tags": None}})
    assert ann.tags == []


async def test_http_controls_for_a_sandbox_served_with_uvicorn():
    app = create_kommo_sandbox()
    sandbox = app.state.sandbox
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://k") as http:
        created = (await http.post("/_sandbox/accounts", json={"id": 5, "subdomain": "demo"})).json()
        assert (created["id"], created["host"]) == (5, "demo.kommo.com")
        grant = (await http.post("/_sandbox/accounts/5/authorize")).json()
        assert grant["referer"] == "demo.kommo.com"
        issued = await token(http, grant_type="authorization_code", code=grant["code"])
        assert issued.status_code == 200
        contact = (await http.post("/_sandbox/accounts/5/contacts", json={
            "name": "Ann Lee", "emails": [["ann@demo.io", "PRIV"]], "phones": ["+1555"]})).json()
        assert contact["custom_fields_values"][1]["values"] == [
            {"value": "ann@demo.io", "enum_id": 552490, "enum_code": "PRIV"}]
        lead = (await http.post("/_sandbox/accounts/5/leads", json={
            "name": "Deal", "status_id": 67548607, "contacts": [contact["id"]]})).json()
        assert lead["_embedded"]["contacts"][0]["id"] == contact["id"] and lead["status_id"] == 67548607
        moved = await http.post(f"/_sandbox/accounts/5/leads/{lead['id']}/stage", json={"status_id": 142})
        assert moved.json() == {"deliveries": []}
        assert sandbox.store.lead(5, lead["id"]).status_id == 142
        log = (await http.get("/_sandbox/requests")).json()
        assert [(r["path"], r["grant_type"], r["status"]) for r in log] == [
            ("/oauth2/access_token", "authorization_code", 200)]
        unknown = await http.post("/_sandbox/accounts/99/authorize")
        assert unknown.status_code == 404
