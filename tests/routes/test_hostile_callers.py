"""Hostile callers (docs/SECURITY.md): what an anonymous caller can make us send to Kommo, forged
widget tokens, one tenant reaching for another's data, and foreign origins."""

import base64
import json
import secrets

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey
from sqlmodel import select

from backend import contact_states, repository
from backend.app import create_app
from backend.models import ContactState, InboxEvent, Job
from backend.settings import SANDBOX_CLIENT_SECRET
from backend.throttle import Guards
from tests.conftest import make_settings
from tests.kommo.fixtures import ACME, BETA, PUBLIC, install, widget_token

TOKEN_PATH = "/oauth2/access_token"


def client_at(app, ip: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app, client=(ip, 40000)),
                              base_url=PUBLIC)


def anonymous_callback(referer="acme.kommo.com", code=None):
    return {"code": code or "def50200" + secrets.token_hex(24), "referer": referer,
            "from_widget": "1"}


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(kommo_app) -> FrozenClock:
    frozen = FrozenClock()
    kommo_app.state.guards = Guards(clock=frozen)
    return frozen


# --- the OAuth callback -----------------------------------------------------------------------------


@pytest.mark.parametrize("referer", ["evil.example", "acme.kommo.com.evil.example",
                                     "www.kommo.com", "acme.kommo.com@evil.example"])
async def test_a_foreign_referer_sends_nothing_however_often(web, kommo, referer):
    answers = [await web.get("/oauth/kommo/callback", params=anonymous_callback(referer))
               for _ in range(20)]
    assert {(a.status_code, a.json()["error"]["code"]) for a in answers} == {(400, "invalid_referer")}
    assert kommo.requests == []


async def test_sixty_anonymous_callbacks_from_one_address_make_five_token_requests(
        kommo_app, kommo, clock):
    async with client_at(kommo_app, "198.51.100.7") as caller:
        answers = [await caller.get("/oauth/kommo/callback", params=anonymous_callback())
                   for _ in range(60)]
    assert [a.status_code for a in answers] == [400] * 5 + [429] * 55  # Kommo refused the 5 codes
    assert answers[5].json()["error"]["code"] == "too_many_requests"
    assert answers[5].headers["retry-after"] == "60"
    assert len(kommo.calls(TOKEN_PATH)) == 5
    clock.now += 60  # a minute later the address may try again
    async with client_at(kommo_app, "198.51.100.7") as caller:
        again = await caller.get("/oauth/kommo/callback", params=anonymous_callback())
    assert again.status_code == 400 and len(kommo.calls(TOKEN_PATH)) == 6


async def test_sixty_anonymous_callbacks_from_sixty_addresses_make_ten_token_requests(
        kommo_app, kommo, clock):
    statuses = []
    for n in range(60):
        async with client_at(kommo_app, f"203.0.113.{n + 1}") as caller:
            statuses.append((await caller.get("/oauth/kommo/callback",
                                              params=anonymous_callback())).status_code)
    assert statuses == [400] * 10 + [429] * 50  # the process's burst, then 5 a second
    assert len(kommo.calls(TOKEN_PATH)) == 10
    clock.now += 1
    async with client_at(kommo_app, "192.0.2.1") as caller:
        assert (await caller.get("/oauth/kommo/callback", params=anonymous_callback())).status_code == 400
    assert len(kommo.calls(TOKEN_PATH)) == 11


async def test_ipv6_callers_are_counted_per_64(kommo_app, kommo, clock):
    for n in range(6):
        async with client_at(kommo_app, f"2001:db8:1:2::{n + 1}") as caller:
            answer = await caller.get("/oauth/kommo/callback", params=anonymous_callback())
    assert answer.status_code == 429 and len(kommo.calls(TOKEN_PATH)) == 5


async def test_a_code_is_exchanged_once(web, kommo, clock):
    params = anonymous_callback(code=kommo.store.authorize(ACME))
    assert (await web.get("/oauth/kommo/callback", params=params)).status_code == 200
    token_requests = len(kommo.calls(TOKEN_PATH))
    for _ in range(3):
        again = await web.get("/oauth/kommo/callback", params=params)
        assert again.status_code == 400
        assert "This authorization code has already been used." in again.text
    assert len(kommo.calls(TOKEN_PATH)) == token_requests


async def test_a_real_install_still_works_after_a_flood_from_elsewhere(kommo_app, kommo, clock):
    async with client_at(kommo_app, "198.51.100.7") as flood:
        for _ in range(60):
            await flood.get("/oauth/kommo/callback", params=anonymous_callback())
    clock.now += 1  # the process's bucket refills; the admin's address was never throttled
    async with client_at(kommo_app, "192.0.2.44") as admin:
        assert (await install(admin, kommo)).status_code == 200


async def test_sandbox_mode_without_the_simulated_kommo_sends_nothing(database_url, engine):
    """No keys and no KOMMO_API_BASE_URL: the public sandbox keys would go to the real Kommo."""
    sent: list[httpx2.Request] = []
    recorder = httpx2.AsyncClient(transport=httpx2.MockTransport(
        lambda request: sent.append(request) or httpx2.Response(500)))
    app = create_app(make_settings(database_url), engine=engine, http_client=recorder)
    async with recorder, app.router.lifespan_context(app), client_at(app, "192.0.2.1") as web:
        answer = await web.get("/oauth/kommo/callback", params=anonymous_callback())
    assert (answer.status_code, answer.json()["error"]["code"]) == (500, "sandbox_only")
    assert sent == []


# --- the disconnect hook ----------------------------------------------------------------------------


async def test_a_forged_disconnect_changes_nothing_and_sends_nothing(web, kommo, kommo_resources,
                                                                     outbound):
    await install(web, kommo)
    outbound.requests.clear()
    forged = {"client_uuid": "mailsync-sandbox-client", "account_id": str(ACME),
              "signature": "0" * 64}
    answer = await web.get("/oauth/kommo/disconnect", params=forged)
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "bad_signature")
    assert outbound.requests == []
    async with kommo_resources.sessions() as session:
        assert (await repository.get_account(session, ACME)).status == "active"


# --- widget tokens ----------------------------------------------------------------------------------


def unsigned(settings, account_id=ACME) -> str:
    claims = json.loads(base64.urlsafe_b64decode(
        widget_token(settings, account_id).split(".")[1] + "=="))
    part = lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def forgeries(settings) -> dict[str, str]:
    key = OctKey.import_key(settings.client_secret.reveal())
    claims = json.loads(base64.urlsafe_b64decode(widget_token(settings).split(".")[1] + "=="))
    return {
        "alg none": unsigned(settings),
        "HS256 with another secret": widget_token(settings, secret="another-secret-of-32-bytes-long!"),
        "HS512 with our secret": jwt.encode({"alg": "HS512"}, claims, key, algorithms=["HS512"]),
        "expired": widget_token(settings, now=int(claims["iat"]) - 1800 - 31),
        "wrong aud": widget_token(settings, aud="https://evil.example"),
        "aud of another integration": widget_token(settings, aud="https://other-integration.example"),
    }


@pytest.mark.parametrize("case", ["alg none", "HS256 with another secret", "HS512 with our secret",
                                  "expired", "wrong aud", "aud of another integration"])
@pytest.mark.parametrize("method, path", [("GET", "/api/widget/account"),
                                          ("GET", "/api/widget/contacts/1"),
                                          ("PUT", "/api/widget/mapping"),
                                          ("DELETE", "/api/widget/provider")])
async def test_forged_widget_tokens_get_401(web, kommo, kommo_settings, outbound, case, method, path):
    await install(web, kommo)
    outbound.requests.clear()
    answer = await web.request(method, path, headers={"X-Auth-Token": forgeries(kommo_settings)[case]},
                               json={"rules": [], "options": {}} if method == "PUT" else None)
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "invalid_token")
    assert outbound.requests == []


async def test_a_token_signed_with_the_public_sandbox_secret_is_refused_by_a_real_server(
        database_url, engine):
    settings = make_settings(database_url, KOMMO_CLIENT_ID="real-id",
                             KOMMO_CLIENT_SECRET="real-client-secret-0123456789abcdef")
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app), client_at(app, "192.0.2.1") as web:
        async with app.state.resources.sessions() as session, session.begin():
            await repository.upsert_account(session, ACME, host="acme.kommo.com", subdomain="acme")
        token = widget_token(settings, secret=SANDBOX_CLIENT_SECRET)
        answer = await web.get("/api/widget/account", headers={"X-Auth-Token": token})
        assert (answer.status_code, answer.json()["error"]["code"]) == (401, "invalid_token")
        good = await web.get("/api/widget/account", headers={"X-Auth-Token": widget_token(settings)})
        assert good.status_code == 200


async def test_a_non_admin_cannot_write(web, kommo, kommo_settings):
    await install(web, kommo)
    token = widget_token(kommo_settings, is_admin=False)
    answer = await web.put("/api/widget/mapping", headers={"X-Auth-Token": token},
                           json={"rules": [], "options": {}})
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "admin_required")


async def test_a_token_for_acme_never_reaches_betas_data(web, kommo, kommo_resources, kommo_settings):
    """Ids in paths and bodies are looked up inside the token's account only."""
    await install(web, kommo, ACME)
    await install(web, kommo, BETA)
    async with kommo_resources.sessions() as session, session.begin():
        await contact_states.save_contact_state(session, ContactState(
            account_id=BETA, contact_id=777, email="secret@beta.example", esp_status="active"))
    as_acme = {"X-Auth-Token": widget_token(kommo_settings, ACME)}
    as_beta = {"X-Auth-Token": widget_token(kommo_settings, BETA, subdomain="beta")}
    assert (await web.get("/api/widget/contacts/777", headers=as_beta)).status_code == 200
    answer = await web.get("/api/widget/contacts/777", headers=as_acme)
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "contact_not_found")
    assert "beta" not in answer.text
    activity = await web.get("/api/widget/activity", headers=as_acme)
    assert "secret@beta.example" not in activity.text
    queued = await web.post("/api/widget/resync", headers=as_acme, json={"contact_id": 777})
    assert queued.status_code == 202
    async with kommo_resources.sessions() as session:
        jobs = (await session.exec(select(Job).where(Job.kind == "reconcile_contact"))).all()
    assert [job.account_id for job in jobs] == [ACME]  # ACME's own Kommo is asked, never BETA's


async def test_betas_hook_key_does_not_take_events_for_acme(web, kommo, kommo_resources):
    await install(web, kommo, ACME)
    await install(web, kommo, BETA)
    async with kommo_resources.sessions() as session:
        beta = await repository.get_account(session, BETA)
        before = len((await session.exec(select(InboxEvent))).all())
    body = f"leads[status][0][id]=5&leads[status][0][status_id]=142&account[id]={ACME}".encode()
    answer = await web.post(f"/webhooks/kommo/{beta.hook_key}", content=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "account_mismatch")
    async with kommo_resources.sessions() as session:
        assert len((await session.exec(select(InboxEvent))).all()) == before


# --- CORS -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["https://evil.example", "https://acme.kommo.com.evil.example",
                                    "http://acme.kommo.com", "null", "https://evilkommo.com"])
async def test_foreign_origins_get_no_cors_grant(web, kommo, kommo_settings, origin):
    await install(web, kommo)
    preflight = await web.options("/api/widget/account", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "X-Auth-Token"})
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    simple = await web.get("/api/widget/account", headers={
        "Origin": origin, "X-Auth-Token": widget_token(kommo_settings)})
    assert "access-control-allow-origin" not in simple.headers  # the browser hides the answer


@pytest.mark.parametrize("origin", ["https://acme.kommo.com", "https://acme.amocrm.ru"])
async def test_kommo_account_origins_get_the_cors_grant(web, kommo, kommo_settings, origin):
    await install(web, kommo)
    simple = await web.get("/api/widget/account", headers={
        "Origin": origin, "X-Auth-Token": widget_token(kommo_settings)})
    assert simple.status_code == 200
    assert simple.headers["access-control-allow-origin"] == origin
    assert "access-control-allow-credentials" not in simple.headers
