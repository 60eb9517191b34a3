"""Provider details the contract test does not pin: budgets, concurrency, error words, registry."""

import asyncio

import httpx2
import pytest
from sqlmodel import select

from backend import connections, db
from backend.errors import (
    PermanentRefusal,
    Unprocessable,
    UpstreamRateLimited,
    UpstreamUnauthorized,
)
from backend.models import EspConnection, RateBucket
from backend.providers import registry
from backend.providers.base import Consent, SubscriberData
from backend.providers.mailchimp.api import data_centre, subscriber_hash
from backend.providers.mailchimp.client import MailchimpProvider
from backend.providers.mailerlite.client import MailerLiteProvider
from backend.ratelimit import RateLimiter
from backend.sandbox.mailchimp import SANDBOX_API_KEY as MC_KEY
from backend.sandbox.mailchimp import create_mailchimp_sandbox
from backend.sandbox.mailerlite import SANDBOX_API_KEY as ML_KEY
from backend.sandbox.mailerlite import SANDBOX_CLASSIC_KEY, create_mailerlite_sandbox
from tests.providers.conftest import MC_BASE, ML_BASE


def asgi(app) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))


# --- MailerLite --------------------------------------------------------------------------------


async def test_mailerlite_stops_calling_when_remaining_is_zero():
    app = create_mailerlite_sandbox(rate_limit=2, clock=lambda: 0.0)
    async with asgi(app) as client:
        provider = MailerLiteProvider(client, base_url=ML_BASE, api_key=ML_KEY)
        await provider.list_segments()
        await provider.list_segments()  # answered with X-RateLimit-Remaining: 0
        with pytest.raises(UpstreamRateLimited) as parked:
            await provider.list_segments()
    assert len(app.state.sandbox.requests) == 2  # the third never left
    assert 59 < parked.value.retry_after <= 60


async def test_mailerlite_takes_from_the_shared_bucket_keyed_by_a_hash(engine):
    sessions = db.session_factory(engine)
    app = create_mailerlite_sandbox()
    async with asgi(app) as client:
        provider = MailerLiteProvider(client, base_url=ML_BASE, api_key=ML_KEY,
                                      limiter=RateLimiter(sessions))
        await provider.validate()
    async with sessions() as session:
        [bucket] = (await session.exec(select(RateBucket))).all()
    assert bucket.key.startswith("mailerlite:") and ML_KEY not in bucket.key
    assert bucket.tokens == pytest.approx(9, abs=0.1)


async def test_mailerlite_pending_consent_only_for_new_addresses():
    app = create_mailerlite_sandbox()
    sandbox = app.state.sandbox
    sandbox.add_subscriber("old@acme-corp.io", status="unsubscribed")
    async with asgi(app) as client:
        provider = MailerLiteProvider(client, base_url=ML_BASE, api_key=ML_KEY)
        new = await provider.upsert(SubscriberData("new@acme-corp.io", consent=Consent.PENDING))
        old = await provider.upsert(SubscriberData("old@acme-corp.io", consent=Consent.PENDING))
    assert (new.status, new.created, old.status) == ("unconfirmed", True, "unsubscribed")
    posts = [r.json for r in sandbox.calls("POST", "/api/subscribers")]
    assert posts == [{"email": "new@acme-corp.io", "status": "unconfirmed"},
                     {"email": "old@acme-corp.io"}]


async def test_mailerlite_upsert_costs_one_call_when_nothing_is_removed():
    app = create_mailerlite_sandbox()
    sandbox = app.state.sandbox
    won, lost = sandbox.add_group("Won"), sandbox.add_group("Lost")
    async with asgi(app) as client:
        provider = MailerLiteProvider(client, base_url=ML_BASE, api_key=ML_KEY)
        await provider.upsert(SubscriberData("a@acme-corp.io", add_segments=[won],
                                             remove_segments=[lost]))
    assert [(r.method, r.path) for r in sandbox.requests] == [("POST", "/api/subscribers")]


# --- Mailchimp ---------------------------------------------------------------------------------


def test_data_centre_and_hash():
    assert data_centre("0123abcd-us21") == "us21"
    with pytest.raises(Unprocessable) as refused:
        data_centre("0123abcd")
    assert refused.value.code == "invalid_api_key"
    # md5 of "ann@example.com", trimmed and lowercased first
    assert subscriber_hash(" Ann@Example.COM ") == "257c57037d384ae37ea27a07e8a01665"


async def test_mailchimp_holds_to_ten_connections_per_key():
    app = create_mailchimp_sandbox()
    sandbox = app.state.sandbox
    audience = sandbox.add_audience("A").id
    sandbox.gate = asyncio.Event()
    async with asgi(app) as client:
        provider = MailchimpProvider(client, base_url=MC_BASE, api_key=MC_KEY, list_id=audience)
        calls = [asyncio.create_task(provider.get_subscriber(f"p{n}@acme-corp.io"))
                 for n in range(25)]
        async with sandbox.changed:
            await sandbox.changed.wait_for(lambda: sandbox.in_flight.get(MC_KEY) == 10)
        for _ in range(20):
            await asyncio.sleep(0)  # let any over-eager caller through, if one could get through
        assert sandbox.in_flight[MC_KEY] == 10 and len(sandbox.requests) == 10
        sandbox.gate.set()
        assert await asyncio.gather(*calls) == [None] * 25
    assert sandbox.max_in_flight == 10 and len(sandbox.requests) == 25


@pytest.mark.parametrize("status, body, words", [
    ("unsubscribed", {"status": "subscribed"}, "Member In Compliance State: gone@acme-corp.io is in"),
])
async def test_mailchimp_compliance_state_is_permanent(status, body, words):
    app = create_mailchimp_sandbox()
    audience = app.state.sandbox.add_audience("A").id
    app.state.sandbox.add_member(audience, "gone@acme-corp.io", status)
    async with asgi(app) as client:
        provider = MailchimpProvider(client, base_url=MC_BASE, api_key=MC_KEY, list_id=audience)
        with pytest.raises(PermanentRefusal) as refused:
            await provider.api.call("PUT", provider._member("gone@acme-corp.io"),
                                    json={"email_address": "gone@acme-corp.io", **body})
    assert refused.value.message.startswith(words) and not refused.value.retryable


async def test_mailchimp_merge_field_limit_is_a_clear_error_before_asking():
    app = create_mailchimp_sandbox()
    sandbox = app.state.sandbox
    audience = sandbox.add_audience("A")
    audience.merge_fields += [{"tag": f"F{n}", "name": f"F{n}", "type": "text"} for n in range(26)]
    async with asgi(app) as client:
        provider = MailchimpProvider(client, base_url=MC_BASE, api_key=MC_KEY, list_id=audience.id)
        with pytest.raises(PermanentRefusal) as refused:
            await provider.ensure_fields(["kommo_contact_id"])
        with pytest.raises(PermanentRefusal) as too_long:
            await provider.ensure_fields(["SALES_MANAGER"])
    assert refused.value.code == "merge_field_limit" and "KOMMOCID" in refused.value.message
    assert too_long.value.code == "invalid_merge_tag"
    assert sandbox.calls("POST") == []


async def test_mailchimp_bulk_tags_read_the_tag_ids_once_and_survive_a_deleted_tag():
    app = create_mailchimp_sandbox()
    sandbox = app.state.sandbox
    audience = sandbox.add_audience("A")
    for n in range(3):
        sandbox.add_member(audience.id, f"p{n}@acme-corp.io")

    def segment_calls() -> list[str]:
        return [c.method for c in sandbox.requests if "/segments" in c.path]

    async with asgi(app) as client:
        provider = MailchimpProvider(client, base_url=MC_BASE, api_key=MC_KEY, list_id=audience.id)
        await provider.bulk_set_membership("won", add=["p0@acme-corp.io"])
        await provider.bulk_set_membership("won", add=["p1@acme-corp.io"])
        assert segment_calls() == ["GET", "POST", "POST", "POST"]
        audience.segments.clear()  # an admin deletes the tag in Mailchimp
        moved = await provider.bulk_set_membership("won", add=["p2@acme-corp.io"])
    assert moved.succeeded == ("p2@acme-corp.io",)
    # the refused POST, a fresh read of the tags, the tag made again, the retried POST
    assert segment_calls()[4:] == ["POST", "GET", "POST", "POST"]
    assert sandbox.member(audience.id, "p2@acme-corp.io")["tags"] == ["won"]


@pytest.mark.parametrize("audience_size, wanted, calls", [
    (2_500, 11, ["/members"] * 3),  # three pages of the member list: fewer than 11 reads
    (11_001, 11, ["/members"] + ["/members/{hash}"] * 11),  # 12 pages: one read per address
    (2_500, 3, ["/members/{hash}"] * 3),  # a few addresses are always read one by one
])
async def test_mailchimp_lookup_takes_the_fewer_calls(audience_size, wanted, calls):
    app = create_mailchimp_sandbox()
    sandbox = app.state.sandbox
    audience = sandbox.add_audience("A")
    for n in range(audience_size):
        sandbox.add_member(audience.id, f"p{n}@acme-corp.io", "unsubscribed" if n == 7 else "subscribed")
    asked = [f"p{n}@acme-corp.io" for n in range(7, 7 + wanted - 1)] + ["new@acme-corp.io"]
    async with asgi(app) as client:
        provider = MailchimpProvider(client, base_url=MC_BASE, api_key=MC_KEY, list_id=audience.id)
        held = await provider.lookup(asked)
    assert sorted(held) == sorted(asked[:-1])
    assert held["p7@acme-corp.io"].status == "unsubscribed"
    base = f"/lists/{audience.id}/members"
    assert [r.path.replace(base, "/members") if r.path == base else "/members/{hash}"
            for r in sandbox.requests] == calls


async def test_mailchimp_429_without_retry_after_and_401():
    def answer(request: httpx2.Request) -> httpx2.Response:
        status = 429 if request.url.path.endswith("ping") else 401
        return httpx2.Response(status, json={"title": "TooManyRequests" if status == 429 else
                                             "API Key Invalid", "status": status, "detail": "x"})

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as client:
        with pytest.raises(UpstreamRateLimited) as limited:
            await MailchimpProvider(client, base_url=MC_BASE, api_key=MC_KEY).validate()  # /ping
        provider = MailchimpProvider(client, base_url=MC_BASE, api_key=MC_KEY, list_id="l")
        with pytest.raises(UpstreamUnauthorized):
            await provider.get_subscriber("a@acme-corp.io")
    assert limited.value.retry_after is None


# --- registry ------------------------------------------------------------------------------------


def test_the_registry_and_key_shapes():
    assert [(cls.kind, cls.family) for cls in registry.all()] == [
        ("mailchimp", "mailchimp"), ("mailerlite", "mailerlite"),
        ("mailerlite_classic", "mailerlite")]
    classic = registry.get("mailerlite_classic")
    assert (classic.recognises_key(SANDBOX_CLASSIC_KEY), classic.recognises_key(ML_KEY)) == (True, False)
    new = registry.get("mailerlite")
    assert (new.recognises_key(ML_KEY), new.recognises_key(SANDBOX_CLASSIC_KEY)) == (True, False)
    assert new.recognises_key("something-else") is classic.recognises_key("something-else") is None
    assert registry.get("mailchimp") is MailchimpProvider
    with pytest.raises(Unprocessable):
        registry.get("sendgrid")


async def test_build_from_a_stored_connection(resources):
    connection = EspConnection(account_id=1, kind="mailchimp", hook_key="k", list_id="l1",
                               api_key_enc=resources.vault.encrypt(MC_KEY), dc="us21")
    provider = connections.provider_for(connection, resources)
    assert isinstance(provider, MailchimpProvider)
    assert (provider.list_id, provider.dc) == ("l1", "us21")
