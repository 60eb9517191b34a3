"""ESP webhooks in: MailerLite (signed JSON) and Mailchimp (form), verify → store → acknowledge."""

from pathlib import Path

import pytest
from sqlmodel import select

from backend import repository
from backend.models import EspConnection, InboxEvent, Job

FIXTURES = Path(__file__).parents[1] / "fixtures"
ML_SECRET = "yaEgW3JvHz"  # the secret the fixture signatures were made with


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def signature(name: str) -> str:
    return (FIXTURES / name).read_text().strip()


@pytest.fixture
async def esp(offline_app, offline_client):
    resources = offline_app.state.resources
    async with resources.sessions() as session, session.begin():
        for account_id, kind in ((1, "mailerlite"), (2, "mailchimp")):
            await repository.upsert_account(session, account_id, host="a.kommo.com", subdomain="a")
            await repository.save_esp_connection(session, EspConnection(
                account_id=account_id, kind=kind, api_key_enc=resources.vault.encrypt("key"),
                webhook_secret_enc=resources.vault.encrypt(ML_SECRET) if account_id == 1 else None,
                list_id="a6b5da1054" if kind == "mailchimp" else None,
                hook_key=f"{kind}-hook-key"))
    return offline_client, resources


async def stored(resources):
    async with resources.sessions() as session:
        return ((await session.exec(select(InboxEvent))).all(),
                (await session.exec(select(Job).order_by(Job.id))).all())


async def post_ml(client, name, sig):
    headers = {"Content-Type": "application/json"}
    if sig is not None:
        headers["Signature"] = sig
    return await client.post("/webhooks/mailerlite/mailerlite-hook-key",
                             content=body(f"mailerlite/{name}.json"), headers=headers)


async def test_mailerlite_single_signed_event_enqueues_one_job(esp):
    client, resources = esp
    response = await post_ml(client, "subscriber_unsubscribed__single",
                             signature("mailerlite/subscriber_unsubscribed__single.signature"))
    assert (response.status_code, response.json()) == (200, {"accepted": 1})
    inbox, jobs = await stored(resources)
    assert len(inbox) == 1 and inbox[0].source == "mailerlite"
    [job] = jobs
    assert (job.kind, job.account_id, job.payload["kind"], job.payload["source"]) == (
        "esp_event", 1, "unsubscribed", "mailerlite")
    assert job.payload["email"] and inbox[0].dedupe_key == f"1:{job.payload['dedupe_key']}"


async def test_mailerlite_batch_enqueues_each_event_and_redelivery_adds_nothing(esp):
    client, resources = esp
    sig = signature("mailerlite/batched__bounced_and_spam.signature")
    assert (await post_ml(client, "batched__bounced_and_spam", sig)).json() == {"accepted": 2}
    assert (await post_ml(client, "batched__bounced_and_spam", sig)).json() == {"accepted": 0}
    inbox, jobs = await stored(resources)
    assert len(inbox) == 2
    assert sorted(j.payload["kind"] for j in jobs) == ["bounced", "spam_reported"]


@pytest.mark.parametrize("sig, status, code", [
    (None, 400, "missing_signature"),
    ("subscriber_unsubscribed__forged", 401, "bad_signature"),
    ("0" * 64, 401, "bad_signature"),
])
async def test_mailerlite_unsigned_or_forged_has_no_effect(esp, sig, status, code):
    client, resources = esp
    if sig and not sig.startswith("0"):
        sig = signature(f"mailerlite/{sig}.signature")
    response = await post_ml(client, "subscriber_unsubscribed__single", sig)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert await stored(resources) == ([], [])


@pytest.mark.parametrize("name, kinds", [
    ("unsubscribe__manual", ["unsubscribed"]),
    ("cleaned__hard", ["cleaned"]),
    ("upemail__changed", ["email_changed"]),
    ("profile__updated", []),
    ("subscribe__signup", []),
])
async def test_mailchimp_forms(esp, name, kinds):
    client, resources = esp
    response = await client.post("/webhooks/mailchimp/mailchimp-hook-key",
                                 content=body(f"mailchimp/{name}.txt"),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (response.status_code, response.json()) == (200, {"accepted": len(kinds)})
    _, jobs = await stored(resources)
    assert [j.payload["kind"] for j in jobs] == kinds
    assert all(j.account_id == 2 for j in jobs)


async def test_mailchimp_url_validation_get(esp):
    client, _ = esp
    assert (await client.get("/webhooks/mailchimp/mailchimp-hook-key")).status_code == 200
    assert (await client.get("/webhooks/mailchimp/unknown")).status_code == 404


async def test_a_key_only_works_on_its_own_provider_route(esp):
    client, resources = esp
    response = await client.post("/webhooks/mailerlite/mailchimp-hook-key",
                                 content=body("mailerlite/subscriber_unsubscribed__single.json"))
    assert (response.status_code, response.json()["error"]["code"]) == (404, "unknown_hook")
    assert await stored(resources) == ([], [])


async def test_disconnected_account_answers_410(esp):
    client, resources = esp
    async with resources.sessions() as session, session.begin():
        await repository.erase_account_secrets(session, 2)
    response = await client.post("/webhooks/mailchimp/mailchimp-hook-key",
                                 content=body("mailchimp/unsubscribe__manual.txt"))
    assert (response.status_code, response.json()["error"]["code"]) == (410, "disconnected")
    assert (await client.get("/webhooks/mailchimp/mailchimp-hook-key")).status_code == 410
