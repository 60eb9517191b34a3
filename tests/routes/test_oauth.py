"""GET /oauth/kommo/callback and /oauth/kommo/disconnect against the simulated Kommo."""

import asyncio
import socket
import time
from datetime import timedelta

import httpx2
import pytest
import uvicorn
from sqlmodel import select

from backend import jobs, repository
from backend.app import create_app
from backend.kommo.oauth import sign_state
from backend.models import AccountStatus, EspConnection, Job, JobState, MappingRule, utcnow
from backend.sandbox import kommo_render
from backend.sandbox.kommo import KommoSandbox
from backend.sandbox.kommo_store import KommoProblem
from backend.security import hmac_sha256_hex
from backend.settings import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from tests.conftest import make_settings
from tests.kommo.fixtures import (
    ACME,
    BETA,
    install,
    stored_tokens,
    widget_token,
)
from tests.polling import eventually

INSTALL_CALLS = ["POST /oauth2/access_token", "GET /api/v4/account", "GET /api/v4/webhooks",
                 "POST /api/v4/webhooks"]
SETTINGS = ["add_lead", "update_lead", "status_lead", "delete_lead", "add_contact", "update_contact",
            "delete_contact"]


async def account_row(resources, account_id=ACME):
    async with resources.sessions() as session:
        return await repository.get_account(session, account_id)


async def test_install_stores_the_account_and_subscribes_the_webhook(web, kommo, kommo_resources, outbound):
    started = utcnow()
    answer = await install(web, kommo)
    assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
    assert "<h1>mailsync is installed</h1>" in answer.text and "Acme Corp" in answer.text
    assert outbound.paths() == INSTALL_CALLS  # what one install costs
    account = await account_row(kommo_resources)
    assert (account.host, account.subdomain, account.name, account.status) == (
        "acme.kommo.com", "acme", "Acme Corp", "active")
    assert account.kommo_webhook_registered is True
    tokens = await stored_tokens(kommo_resources)
    assert kommo.store.account_for_token(tokens.access_token.reveal()).id == ACME
    assert started + timedelta(hours=24) <= tokens.expires_at <= utcnow() + timedelta(hours=24)
    async with kommo_resources.sessions() as session:
        row = await repository.get_kommo_token_row(session, ACME)
    assert tokens.access_token.reveal() not in row.access_token_enc  # encrypted at rest
    assert tokens.refresh_token.reveal() not in row.refresh_token_enc
    destination = f"https://mailsync.test/webhooks/kommo/{account.hook_key}"
    [hook] = kommo.store.account(ACME).webhooks.values()
    assert (hook["destination"], hook["settings"], hook["disabled"]) == (destination, SETTINGS, False)


async def test_access_denied_renders_a_page_and_calls_nobody(web, kommo_resources, outbound):
    answer = await web.get("/oauth/kommo/callback", params={
        "error": "access_denied", "client_id": SANDBOX_CLIENT_ID, "state": "x"})
    assert answer.status_code == 200
    assert "Access was declined in Kommo" in answer.text
    assert outbound.requests == []
    assert await account_row(kommo_resources) is None


@pytest.mark.parametrize("referer", [
    None, "", "evil.example", "https://acme.kommo.com", "acme.kommo.com:8443", "acme.kommo.com/x",
    "acme.kommo.com.evil.example", "127.0.0.1", "kommo.com",
])
async def test_a_bad_referer_is_refused_before_any_outbound_call(web, kommo, outbound, referer):
    params = {"code": kommo.store.authorize(ACME), "from_widget": "1"}
    if referer is not None:
        params["referer"] = referer
    answer = await web.get("/oauth/kommo/callback", params=params)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_referer"
    assert outbound.requests == []


@pytest.mark.parametrize("params, code", [
    ({"state": "tampered"}, "bad_state"),
    ({"client_id": "another-integration"}, "unknown_client"),
    ({"code": ""}, "missing_code"),
])
async def test_other_bad_callbacks_are_refused_before_any_outbound_call(web, kommo, outbound, params, code):
    answer = await install(web, kommo, **params)
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, code)
    assert outbound.requests == []


async def test_a_signed_state_is_accepted(web, kommo, kommo_resources):
    state = sign_state(kommo_resources, {"from": "site-button"})
    answer = await install(web, kommo, state=state, client_id=SANDBOX_CLIENT_ID)
    assert answer.status_code == 200


async def test_an_expired_code_shows_kommos_hint_in_plain_words(web, kommo, kommo_resources, outbound):
    code = kommo.store.authorize(ACME)
    kommo.store.clock = lambda: time.time() + 21 * 60
    answer = await web.get("/oauth/kommo/callback", params={"code": code, "referer": "acme.kommo.com"})
    assert answer.status_code == 400
    assert "The authorization code has expired (Kommo codes are valid for 20 minutes)." in answer.text
    assert outbound.paths() == ["POST /oauth2/access_token"]
    assert await account_row(kommo_resources) is None


async def test_a_used_code_says_so(web, kommo):
    code = kommo.store.authorize(ACME)
    params = {"code": code, "referer": "acme.kommo.com"}
    assert (await web.get("/oauth/kommo/callback", params=params)).status_code == 200
    again = await web.get("/oauth/kommo/callback", params=params)
    assert again.status_code == 400 and "This authorization code has already been used." in again.text


async def test_reinstall_keeps_configuration_and_does_not_subscribe_twice(
        web, kommo, kommo_resources, outbound):
    await install(web, kommo)
    first = await account_row(kommo_resources)
    first_tokens = await stored_tokens(kommo_resources)
    rule = MappingRule(account_id=ACME, pipeline_id=7654321, status_id=142, action="segment", segment_id="g1")
    async with kommo_resources.sessions() as session, session.begin():
        await repository.replace_mapping(session, ACME, [rule])
        await repository.save_options(session, ACME, {"notes_on_sync": True})
        await repository.save_esp_connection(session, EspConnection(
            account_id=ACME, kind="mailerlite", api_key_enc=kommo_resources.vault.encrypt("k"),
            hook_key="esp-hook-key"))
    outbound.requests.clear()
    answer = await install(web, kommo)
    assert answer.status_code == 200 and "mailsync is reconnected" in answer.text
    assert outbound.paths() == INSTALL_CALLS[:3]  # the webhook is already there
    again = await account_row(kommo_resources)
    assert again.hook_key == first.hook_key and again.installed_at == first.installed_at
    assert (await stored_tokens(kommo_resources)).refresh_token != first_tokens.refresh_token
    async with kommo_resources.sessions() as session:
        assert [r.segment_id for r in await repository.get_mapping(session, ACME)] == ["g1"]
        assert await repository.get_options(session, ACME) == {"notes_on_sync": True}
        assert (await repository.get_esp_connection(session, ACME)).hook_key == "esp-hook-key"
    assert len(kommo.store.account(ACME).webhooks) == 1


async def test_a_disabled_webhook_is_subscribed_again_on_reinstall(web, kommo):
    await install(web, kommo)
    [hook] = kommo.store.account(ACME).webhooks.values()
    hook["disabled"] = True
    await install(web, kommo)
    [hook] = kommo.store.account(ACME).webhooks.values()
    assert hook["disabled"] is False


async def test_a_refused_webhook_subscription_still_installs_with_a_warning(
        web, kommo, kommo_resources, monkeypatch):
    def refuse(*args):
        raise KommoProblem(403, "Your plan does not include API webhooks")

    monkeypatch.setattr(kommo_render, "add_webhook", refuse)
    answer = await install(web, kommo)
    assert answer.status_code == 200
    assert "Kommo did not accept mailsync's webhook subscription" in answer.text
    assert (await account_row(kommo_resources)).kommo_webhook_registered is False


async def test_kommo_unreachable_renders_a_failure_page(web, kommo, monkeypatch):
    def down(form):
        raise KommoProblem(503, "maintenance")

    monkeypatch.setattr(kommo.store, "token", down)
    answer = await install(web, kommo)
    assert answer.status_code == 503
    assert "Kommo could not be reached to finish the installation." in answer.text


# --- disconnect -----------------------------------------------------------------------------------


def disconnect_params(account_id, *, secret=SANDBOX_CLIENT_SECRET, client_uuid=SANDBOX_CLIENT_ID):
    signature = hmac_sha256_hex(secret, f"{SANDBOX_CLIENT_ID}|{account_id}")
    return {"client_uuid": client_uuid, "account_id": str(account_id), "signature": signature}


async def test_disconnect_erases_secrets_and_stops_jobs(web, kommo, kommo_resources, outbound):
    await install(web, kommo)
    async with kommo_resources.sessions() as session, session.begin():
        await repository.replace_mapping(session, ACME, [
            MappingRule(account_id=ACME, pipeline_id=1, status_id=142, action="remove")])
        await repository.save_esp_connection(session, EspConnection(
            account_id=ACME, kind="mailchimp", api_key_enc="x", webhook_secret_enc="y",
            hook_key="esp-key"))
        await jobs.enqueue(session, [jobs.JobSpec(ACME, "reconcile_lead", "lead:7", {"lead_id": 7})])
    outbound.requests.clear()
    kommo.store.revoke(ACME)  # the admin disabled mailsync in Kommo
    answer = await web.get("/oauth/kommo/disconnect", params=disconnect_params(ACME),
                           headers={"User-Agent": "amoService-oAuth-Code-Sender/1.0"})
    assert (answer.status_code, answer.json()) == (200, {"account_id": ACME, "disconnected": True})
    # One refresh, refused: Kommo really revoked us (a replayed hook would find it accepted).
    assert outbound.paths() == ["POST /oauth2/access_token"]
    assert outbound.requests[0].content.count(b"grant_type=refresh_token") == 1
    assert (await account_row(kommo_resources)).status == AccountStatus.DISCONNECTED
    assert await stored_tokens(kommo_resources) is None
    async with kommo_resources.sessions() as session:
        esp = await repository.get_esp_connection(session, ACME)  # kept for its hook key (410)
        assert (esp.api_key_enc, esp.webhook_secret_enc) == ("", None)
        assert len(await repository.get_mapping(session, ACME)) == 1
        [job] = (await session.exec(select(Job))).all()
    assert job.state == JobState.DONE


@pytest.mark.parametrize("change", [
    {"signature": "0" * 64},
    {"signature": ""},
    {"client_uuid": "another-integration"},
    {"account_id": str(BETA)},  # a signature for another account
])
async def test_a_bad_disconnect_signature_is_refused(web, kommo, kommo_resources, outbound, change):
    await install(web, kommo)
    outbound.requests.clear()
    answer = await web.get("/oauth/kommo/disconnect", params={**disconnect_params(ACME), **change})
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "bad_signature")
    assert outbound.requests == []
    assert (await account_row(kommo_resources)).status == AccountStatus.ACTIVE
    assert await stored_tokens(kommo_resources) is not None


async def test_a_signature_made_with_another_secret_is_refused(web):
    answer = await web.get("/oauth/kommo/disconnect", params=disconnect_params(ACME, secret="not-ours"))
    assert answer.status_code == 403


async def test_a_replayed_disconnect_erases_nothing_while_kommo_still_accepts_us(
        web, kommo, kommo_resources, outbound):
    """The signature covers only client id and account id: anyone who saw the URL once can
    replay it. Kommo still honouring our refresh token proves the hook did not come from it."""
    await install(web, kommo)
    async with kommo_resources.sessions() as session, session.begin():
        await repository.save_esp_connection(session, EspConnection(
            account_id=ACME, kind="mailchimp", api_key_enc=kommo_resources.vault.encrypt("key-us21"),
            hook_key="esp-key"))
    before = await stored_tokens(kommo_resources)
    outbound.requests.clear()
    answer = await web.get("/oauth/kommo/disconnect", params=disconnect_params(ACME))
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "still_authorized"
    assert outbound.paths() == ["POST /oauth2/access_token"]  # the one check, accepted
    account = await account_row(kommo_resources)
    assert (account.status, account.kommo_webhook_registered) == (AccountStatus.ACTIVE, True)
    after = await stored_tokens(kommo_resources)
    assert after is not None and after.refresh_token != before.refresh_token  # the new pair is kept
    async with kommo_resources.sessions() as session:
        esp = await repository.get_esp_connection(session, ACME)
    assert kommo_resources.vault.decrypt(esp.api_key_enc) == "key-us21"
    # Replayed again at once: the same answer, and Kommo is not asked again.
    again = await web.get("/oauth/kommo/disconnect", params=disconnect_params(ACME))
    assert (again.status_code, again.json()["error"]["code"]) == (409, "still_authorized")
    assert len(outbound.requests) == 1


async def test_a_disconnect_kommo_cannot_confirm_erases_nothing(web, kommo, kommo_resources,
                                                                monkeypatch):
    await install(web, kommo)

    def down(form):
        raise KommoProblem(503, "maintenance")

    monkeypatch.setattr(kommo.store, "token", down)
    answer = await web.get("/oauth/kommo/disconnect", params=disconnect_params(ACME))
    assert (answer.status_code, answer.json()["error"]["code"]) == (503, "disconnect_unconfirmed")
    assert (await account_row(kommo_resources)).status == AccountStatus.ACTIVE
    assert await stored_tokens(kommo_resources) is not None


async def test_an_account_kommo_already_refused_is_erased_without_asking_again(
        web, kommo, kommo_resources, outbound):
    await install(web, kommo)
    async with kommo_resources.sessions() as session, session.begin():
        await repository.set_account_status(session, ACME, AccountStatus.NEEDS_REAUTH)
    outbound.requests.clear()
    answer = await web.get("/oauth/kommo/disconnect", params=disconnect_params(ACME))
    assert (answer.status_code, answer.json()) == (200, {"account_id": ACME, "disconnected": True})
    assert outbound.requests == []
    assert await stored_tokens(kommo_resources) is None


async def test_disconnecting_an_unknown_account_is_a_no_op(web):
    answer = await web.get("/oauth/kommo/disconnect", params=disconnect_params(55555))
    assert (answer.status_code, answer.json()) == (200, {"account_id": 55555, "disconnected": False})


async def test_an_account_reinstalls_after_a_disconnect(web, kommo, kommo_resources, kommo_settings):
    await install(web, kommo)
    kommo.store.revoke(ACME)
    assert (await web.get("/oauth/kommo/disconnect", params=disconnect_params(ACME))).json() == {
        "account_id": ACME, "disconnected": True}
    kommo.store.account(ACME).revoked = False  # the admin enables mailsync again
    token = widget_token(kommo_settings)
    seen = await web.get("/api/widget/account", headers={"X-Auth-Token": token})
    assert seen.json()["status"] == "disconnected"
    assert (await install(web, kommo)).status_code == 200
    seen = await web.get("/api/widget/account", headers={"X-Auth-Token": token})
    assert seen.json()["status"] == "active"
    assert (await account_row(kommo_resources)).kommo_webhook_registered is True


# --- over real HTTP ---------------------------------------------------------------------------------


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def serve(app, sock, *, lifespan):
    server = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, log_config=None, log_level="warning",
                                           ws="none", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await eventually(lambda: server.started or task.done(), message="uvicorn did not start")
    assert not task.done()
    return server, task


@pytest.mark.slow
async def test_install_over_http_against_the_simulated_kommo_under_uvicorn(database_url, engine):
    kommo_sock, app_sock = free_socket(), free_socket()
    kommo_url = f"http://127.0.0.1:{kommo_sock.getsockname()[1]}"
    public_url = f"http://127.0.0.1:{app_sock.getsockname()[1]}"
    sandbox = KommoSandbox()
    sandbox.store.add_account(ACME, "acme", "Acme Corp")
    lead = sandbox.store.add_lead(ACME, status_id=67548607)
    settings = make_settings(database_url, PUBLIC_URL=public_url, KOMMO_API_BASE_URL=kommo_url)
    servers = [await serve(sandbox.app, kommo_sock, lifespan="off"),
               await serve(create_app(settings, engine=engine), app_sock, lifespan="on")]
    try:
        async with httpx2.AsyncClient(base_url=public_url) as browser:
            answer = await browser.get("/oauth/kommo/callback", params={
                "code": sandbox.store.authorize(ACME), "referer": "acme.kommo.com", "from_widget": "1"})
            assert answer.status_code == 200 and "mailsync is installed" in answer.text
            assert [f"{r.method} {r.path}" for r in sandbox.requests] == INSTALL_CALLS
            [hook] = sandbox.store.account(ACME).webhooks.values()
            assert hook["destination"].startswith(f"{public_url}/webhooks/kommo/")
            pipelines = await browser.get("/api/widget/pipelines",
                                          headers={"X-Auth-Token": widget_token(settings)})
            stages = [stage["id"] for stage in pipelines.json()[0]["stages"]]
            assert stages == [67548601, 67548607, 67548619, 142, 143]
            [delivery] = await sandbox.change_stage(ACME, lead.id, 142)
            assert delivery.status == 200  # Kommo's webhook reached our ingest route
    finally:
        for server, task in servers:
            server.should_exit = True
            await task
