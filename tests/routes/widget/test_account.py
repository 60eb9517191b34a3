"""GET /api/widget/account, /pipelines and /contact-fields: the widget's token decides the account."""

import pytest

from backend import repository
from backend.kommo import tokens
from backend.models import MappingRule, utcnow
from backend.sync.options import SyncOptions
from tests.kommo.fixtures import (
    ACME,
    BETA,
    install,
    seed_tokens,
    widget_token,
)

STAGES = [{"id": 67548601, "name": "Incoming leads", "color": "#c1c1c1"},
          {"id": 67548607, "name": "Qualified", "color": "#99ccff"},
          {"id": 67548619, "name": "Proposal", "color": "#ffcc66"},
          {"id": 142, "name": "Closed - won", "color": "#CCFF66"},
          {"id": 143, "name": "Closed - lost", "color": "#D5D8DB"}]


def body_of(account_id, subdomain, status="active", rules=()):
    return {"account_id": account_id, "subdomain": subdomain, "status": status, "provider": None,
            "mapping": {"rules": list(rules)}, "options": SyncOptions().to_json(),
            "stats": {"synced_contacts": 0, "pending_jobs": 0, "failed_jobs": 0, "last_sync_at": None}}


async def test_the_installed_account_reads_itself(web, kommo, kommo_settings):
    await install(web, kommo)
    answer = await web.get("/api/widget/account", headers={"X-Auth-Token": widget_token(kommo_settings)})
    assert (answer.status_code, answer.json()) == (200, body_of(ACME, "acme"))


def forged(settings):
    now = int(utcnow().timestamp())
    return {
        "wrong key": widget_token(settings, secret="someone-elses-secret-0123456789abcdef"),
        "expired": widget_token(settings, now=now - 1800 - 31),
        "not yet valid": widget_token(settings, now=now + 31),
        "wrong aud": widget_token(settings, aud="https://evil.example"),
        "missing account_id": widget_token(settings, account_id=None),
        "missing user_id": widget_token(settings, user_id=None),
        "garbage": "not-a-jwt",
    }


@pytest.mark.parametrize("case", ["wrong key", "expired", "not yet valid", "wrong aud",
                                  "missing account_id", "missing user_id", "garbage", "no header"])
@pytest.mark.parametrize("path", ["/api/widget/account", "/api/widget/pipelines",
                                  "/api/widget/contact-fields"])
async def test_forged_tokens_are_refused(web, kommo, kommo_settings, outbound, case, path):
    await install(web, kommo)
    outbound.requests.clear()
    headers = {} if case == "no header" else {"X-Auth-Token": forged(kommo_settings)[case]}
    answer = await web.get(path, headers=headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "invalid_token")
    assert outbound.requests == []


async def test_a_valid_token_for_an_account_not_installed_is_404(web, kommo_settings):
    answer = await web.get("/api/widget/account",
                           headers={"X-Auth-Token": widget_token(kommo_settings, 4242)})
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "account_not_found")


async def test_account_b_never_sees_account_a(web, kommo, kommo_resources, kommo_settings):
    await install(web, kommo, ACME)
    await install(web, kommo, BETA)
    rule = MappingRule(account_id=ACME, pipeline_id=7654321, status_id=142, action="remove")
    async with kommo_resources.sessions() as session, session.begin():
        await repository.replace_mapping(session, ACME, [rule])
    kommo.store.account(BETA).pipelines[0]["name"] = "Beta pipeline"
    as_beta = {"X-Auth-Token": widget_token(kommo_settings, BETA, subdomain="beta")}
    assert (await web.get("/api/widget/account", headers=as_beta)).json() == body_of(BETA, "beta")
    assert [p["name"] for p in (await web.get("/api/widget/pipelines", headers=as_beta)).json()] == [
        "Beta pipeline"]
    as_acme = {"X-Auth-Token": widget_token(kommo_settings, ACME)}
    assert (await web.get("/api/widget/account", headers=as_acme)).json() == body_of(
        ACME, "acme", rules=[{"pipeline_id": 7654321, "status_id": 142, "action": "remove"}])
    assert [p["name"] for p in (await web.get("/api/widget/pipelines", headers=as_acme)).json()] == [
        "Sales pipeline"]


async def test_pipelines_are_read_live_with_the_accounts_token(web, kommo, kommo_settings, outbound):
    await install(web, kommo)
    outbound.requests.clear()
    answer = await web.get("/api/widget/pipelines", headers={"X-Auth-Token": widget_token(kommo_settings)})
    assert (answer.status_code, answer.json()) == (200, [
        {"id": 7654321, "name": "Sales pipeline", "stages": STAGES}])
    assert outbound.paths() == ["GET /api/v4/leads/pipelines"]


async def test_needs_reauth_is_visible_and_pipelines_say_why(web, kommo, kommo_resources, kommo_settings):
    await seed_tokens(kommo_resources, kommo)
    await tokens.mark_needs_reauth(kommo_resources, ACME)
    headers = {"X-Auth-Token": widget_token(kommo_settings, is_admin=False)}
    assert (await web.get("/api/widget/account", headers=headers)).json()["status"] == "needs_reauth"
    answer = await web.get("/api/widget/pipelines", headers=headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (502, "needs_reauth")


CONTACT_FIELDS = [{"id": 771906, "name": "Phone", "type": "multitext"},
                  {"id": 771908, "name": "Email", "type": "multitext"}]


async def test_contact_fields_are_read_live_with_the_accounts_token(web, kommo, kommo_settings, outbound):
    await install(web, kommo)
    kommo.store.account(ACME).custom_fields["contacts"].append(
        {"id": 990001, "name": "Newsletter consent", "type": "checkbox", "code": None})
    outbound.requests.clear()
    answer = await web.get("/api/widget/contact-fields",
                           headers={"X-Auth-Token": widget_token(kommo_settings, is_admin=False)})
    assert (answer.status_code, answer.json()) == (200, [
        *CONTACT_FIELDS, {"id": 990001, "name": "Newsletter consent", "type": "checkbox"}])
    assert outbound.paths() == ["GET /api/v4/contacts/custom_fields"]


async def test_contact_fields_of_account_b_are_not_account_as(web, kommo, kommo_settings):
    await install(web, kommo, ACME)
    await install(web, kommo, BETA)
    kommo.store.account(BETA).custom_fields["contacts"].pop()
    as_beta = {"X-Auth-Token": widget_token(kommo_settings, BETA, subdomain="beta")}
    as_acme = {"X-Auth-Token": widget_token(kommo_settings, ACME)}
    assert (await web.get("/api/widget/contact-fields", headers=as_beta)).json() == CONTACT_FIELDS[:1]
    assert (await web.get("/api/widget/contact-fields", headers=as_acme)).json() == CONTACT_FIELDS


async def test_contact_fields_say_why_when_kommo_access_was_lost(web, kommo, kommo_resources,
                                                                 kommo_settings):
    await seed_tokens(kommo_resources, kommo)
    await tokens.mark_needs_reauth(kommo_resources, ACME)
    answer = await web.get("/api/widget/contact-fields",
                           headers={"X-Auth-Token": widget_token(kommo_settings)})
    assert (answer.status_code, answer.json()["error"]["code"]) == (502, "needs_reauth")
