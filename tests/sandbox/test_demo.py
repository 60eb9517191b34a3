"""`mailsync sandbox` without a browser: one in-process server on a free port, the demo installed
through the real OAuth callback, and every endpoint the sandbox page uses."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path
from urllib.parse import parse_qsl

import httpx2
import pytest
import uvicorn
import xstatic.pkg.jquery
from joserfc import jwt
from joserfc.jwk import OctKey

from backend import db, repository
from backend.sandbox import demo
from backend.sandbox.server import create_sandbox
from backend.settings import SANDBOX_CLIENT_SECRET
from tests.conftest import TEST_SECRET_KEY
from tests.polling import eventually
from tests.test_cli import _free_port

pytestmark = pytest.mark.slow
STAGES = ["New inquiry", "Contacted", "Qualified", "Proposal sent", "Negotiation", "Closed - won",
          "Closed - lost"]


@contextlib.asynccontextmanager
async def running(tmp_path: Path):
    port = _free_port()
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/sandbox.db", "SECRET_KEY": TEST_SECRET_KEY,
           "ENV": "test"}
    app = create_sandbox(env, "127.0.0.1", port)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           lifespan="on"))
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx2.AsyncClient(base_url=base, timeout=10) as client:
            await eventually(lambda: _ready(client), within=30, message="the sandbox was not ready")
            yield client, app.app.state.world
    finally:
        server.should_exit = True
        await task


async def _ready(client: httpx2.AsyncClient) -> bool:
    try:
        return (await client.get("/readyz")).status_code == 200
    except httpx2.TransportError:
        return False


async def _token(client: httpx2.AsyncClient) -> str:
    return (await client.post("/sandbox/api/token")).json()["token"]


async def test_the_demo_account_is_installed_through_the_oauth_callback(tmp_path):
    async with running(tmp_path) as (_client, world):
        assert [c.grant_type for c in world.kommo.calls("/oauth2/access_token")] == ["authorization_code"]
        engine = db.create_engine(world.settings.database_url)
        try:
            async with db.session_factory(engine)() as session:
                [account] = await repository.list_all_accounts(session)
        finally:
            await engine.dispose()
        assert (account.id, account.host, account.name, account.status, account.kommo_webhook_registered) \
            == (demo.ACCOUNT_ID, "demo.kommo.com", "Sunrise Coffee Roasters", "active", True)
        [hook] = world.kommo.store.account(demo.ACCOUNT_ID).webhooks.values()
        assert hook["destination"] == f"{world.settings.public_url}/webhooks/kommo/{account.hook_key}"


async def test_the_board_has_five_stages_won_lost_and_thirty_leads(tmp_path):
    async with running(tmp_path) as (client, _world):
        board = (await client.get("/sandbox/api/board")).json()
    assert [s["name"] for s in board["pipeline"]["stages"]] == STAGES
    per_stage = [sum(1 for lead in board["leads"] if lead["status_id"] == s["id"])
                 for s in board["pipeline"]["stages"]]
    assert per_stage == [6, 5, 5, 5, 4, 3, 2]
    assert all(lead["contact"]["email"] and lead["contact"]["name"] for lead in board["leads"])
    assert sum(1 for lead in board["leads"] if lead["company"]) == 21
    assert len({lead["contact"]["email"] for lead in board["leads"]}) == 30


async def test_moving_a_lead_sends_kommos_form_webhook_to_mailsync(tmp_path):
    async with running(tmp_path) as (client, world):
        lead_id = world.demo.leads[6]  # "Barista training day", in Contacted
        answer = await client.post(f"/sandbox/api/leads/{lead_id}/stage", json={"status_id": 81_000_013})
        assert answer.status_code == 200
        [delivery] = answer.json()["deliveries"]
        assert delivery["status"] == 200 and "/webhooks/kommo/" in delivery["url"]
        form = dict(parse_qsl(world.kommo.deliveries[-1].body))
        assert (form["leads[status][0][id]"], form["leads[status][0][status_id]"],
                form["leads[status][0][old_status_id]"]) == (str(lead_id), "81000013", "81000012")
        assert answer.json()["lead"]["status_id"] == 81_000_013


async def test_the_minted_token_opens_the_widget_api(tmp_path):
    async with running(tmp_path) as (client, world):
        token = await _token(client)
        account = await client.get("/api/widget/account", headers={"X-Auth-Token": token})
        assert (account.status_code, account.json()["account_id"]) == (200, demo.ACCOUNT_ID)
    claims = jwt.decode(token, OctKey.import_key(SANDBOX_CLIENT_SECRET), algorithms=["HS256"]).claims
    assert (claims["aud"], claims["account_id"], claims["subdomain"], claims["is_admin"],
            claims["exp"] - claims["iat"]) == (
        world.settings.public_origin, demo.ACCOUNT_ID, "demo", True, 1800)


async def test_widget_files_config_and_jquery_are_served(tmp_path):
    async with running(tmp_path) as (client, _world):
        config = await client.get("/sandbox/widget/classes/config.js")
        script = await client.get("/sandbox/widget/script.js")
        escape = await client.get("/sandbox/widget/%2e%2e/manifest.json")
        jquery = await client.get("/sandbox/vendor/jquery.js")
        requirejs = await client.get("/sandbox/vendor/require.js")
        page = await client.get("/sandbox/?lang=es")
    assert config.text == ("define([], function () {\n  'use strict';\n"
                           f"  return {{BACKEND_URL: \"{str(client.base_url).rstrip('/')}\"}};\n}});\n")
    assert script.status_code == 200 and "define(" in script.text
    assert escape.status_code == 404
    assert jquery.content == (Path(xstatic.pkg.jquery.BASE_DIR) / "jquery.js").read_bytes()
    assert requirejs.status_code == 404  # SANDBOX_REQUIREJS is not set: the page uses the shim
    assert '<script src="/sandbox/static/amd.js"></script>' in page.text
    assert '"lang": "es"' in page.text


async def test_the_widgets_same_origin_kommo_calls_answer_from_the_simulated_store(tmp_path):
    async with running(tmp_path) as (client, world):
        lead_id = world.demo.leads[0]
        lead = (await client.get(f"/api/v4/leads/{lead_id}", params={"with": "contacts"})).json()
        [link] = lead["_embedded"]["contacts"]
        contact = (await client.get(f"/api/v4/contacts/{link['id']}")).json()
        missing = await client.get("/api/v4/leads/1")
    assert (lead["name"], link["is_main"]) == ("Office espresso machine", True)
    assert (contact["name"], contact["custom_fields_values"][0]["values"][0]["value"]) == (
        "Olivia Martins", "olivia.martins@northwind.io")
    assert missing.status_code == 404


async def test_unsubscribing_at_mailerlite_reaches_mailsync_once_connected(tmp_path):
    async with running(tmp_path) as (client, world):
        email = "newsletter.fan@fastmail.com"
        before = await client.post("/sandbox/api/esp/unsubscribe",
                                   json={"kind": "mailerlite", "email": email})
        assert before.json() == {"email": email, "deliveries": []}  # nobody listens yet
        token = await _token(client)
        connected = await client.put("/api/widget/provider", headers={"X-Auth-Token": token},
                                     json={"kind": "mailerlite", "api_key": demo.MAILERLITE_KEY})
        assert connected.status_code == 200
        esp = (await client.get("/sandbox/api/esp")).json()
        assert (esp["connected"], [g["name"] for g in esp["mailerlite"]["segments"]]) == (
            "mailerlite", ["Newsletter", "Webinar attendees"])
        other = "olivia.martins@northwind.io"
        after = await client.post("/sandbox/api/esp/unsubscribe", json={"kind": "mailerlite", "email": other})
        assert after.json() == {"email": other, "deliveries": [200]}
        assert world.mailerlite.subscriber(other)["status"] == "unsubscribed"
        assert world.mailerlite.subscriber(email)["status"] == "unsubscribed"


async def test_unsubscribing_at_mailchimp_changes_the_member(tmp_path):
    async with running(tmp_path) as (client, world):
        list_id, email = demo.MAILCHIMP_AUDIENCES[0][0], "chloe.martin@gmail.com"
        answer = await client.post("/sandbox/api/esp/unsubscribe",
                                   json={"kind": "mailchimp", "list_id": list_id, "email": email})
        unknown = await client.post("/sandbox/api/esp/unsubscribe",
                                    json={"kind": "mailchimp", "list_id": list_id, "email": "no@one.io"})
    assert answer.json() == {"email": email, "deliveries": []}
    member = world.mailchimp.audiences[list_id].members[hashlib.md5(email.encode()).hexdigest()]  # noqa: S324
    assert member["status"] == "unsubscribed"
    assert unknown.status_code == 404


async def test_a_restart_is_a_fresh_demo_on_the_same_database(tmp_path):
    async with running(tmp_path) as (client, _world):
        token = await _token(client)
        connected = await client.put("/api/widget/provider", headers={"X-Auth-Token": token},
                                     json={"kind": "mailerlite", "api_key": demo.MAILERLITE_KEY})
        assert connected.json()["provider"]["kind"] == "mailerlite"
    async with running(tmp_path) as (client, world):
        account = (await client.get("/api/widget/account",
                                    headers={"X-Auth-Token": await _token(client)})).json()
        assert (account["account_id"], account["provider"], account["mapping"]["rules"]) == (
            demo.ACCOUNT_ID, None, [])
        assert len(world.kommo.store.account(demo.ACCOUNT_ID).webhooks) == 1
