"""The same scenario on every registered provider, against its simulator: upsert, segment moves,
opt-outs kept, fields created once, 429 surfaced with retry_after, invalid key rejected."""

from typing import Any

import httpx2
import pytest

from backend.errors import PermanentRefusal, Unprocessable, UpstreamRateLimited
from backend.providers import registry
from backend.providers.base import EmailProvider, EspStatus, SubscriberData
from backend.sandbox.mailchimp import create_mailchimp_sandbox
from backend.sandbox.mailerlite import create_mailerlite_sandbox
from tests.providers.conftest import MC_BASE, ML_BASE

FIXED_CLOCK = lambda: 1000.0  # noqa: E731 (a window that never rolls over)


class MailerLiteHarness:
    kind = "mailerlite"
    active = EspStatus.ACTIVE
    opted_out = "unsubscribed"

    def __init__(self, **sandbox: Any) -> None:
        self.app = create_mailerlite_sandbox(clock=FIXED_CLOCK, **sandbox)
        self.sb = self.app.state.sandbox

    def provider(self, client: httpx2.AsyncClient, key: str | None = None) -> EmailProvider:
        return registry.get("mailerlite")(client, base_url=ML_BASE,
                                           api_key=key or next(iter(self.sb.state.api_keys)))

    def seed(self, email: str, status: str) -> None:
        self.sb.add_subscriber(email, status=status)

    def status(self, email: str) -> str:
        return self.sb.subscriber(email)["status"]

    def segment_names(self, email: str) -> set[str]:
        return {g["name"] for g in self.sb.subscriber(email)["groups"]}

    def fields(self, email: str) -> dict[str, Any]:
        return self.sb.subscriber(email)["fields"]

    def field_creations(self) -> int:
        return len(self.sb.calls("POST", "/api/fields"))

    def reactivations(self, email: str) -> list[Any]:
        return [r.json for r in self.sb.requests if isinstance(r.json, dict)
                and str(r.json.get("email", "")).lower() == email
                and (r.json.get("status") in ("active", "unconfirmed") or r.json.get("resubscribe"))]

    def webhook_urls(self) -> list[str]:
        return [h["url"] for h in self.sb.state.webhooks.values()]

    def request_count(self) -> int:
        return len(self.sb.requests)


class MailchimpHarness:
    kind = "mailchimp"
    active = EspStatus.SUBSCRIBED
    opted_out = "unsubscribed"

    def __init__(self, **sandbox: Any) -> None:
        self.app = create_mailchimp_sandbox(clock=FIXED_CLOCK, **sandbox)
        self.sb = self.app.state.sandbox
        self.list_id = self.sb.add_audience("Acme news").id

    def provider(self, client: httpx2.AsyncClient, key: str | None = None) -> EmailProvider:
        return registry.get("mailchimp")(client, base_url=MC_BASE, list_id=self.list_id,
                                          api_key=key or next(iter(self.sb.api_keys)))

    def seed(self, email: str, status: str) -> None:
        self.sb.add_member(self.list_id, email, status)

    def status(self, email: str) -> str:
        return self.sb.member(self.list_id, email)["status"]

    def segment_names(self, email: str) -> set[str]:
        return set(self.sb.member(self.list_id, email)["tags"])

    def fields(self, email: str) -> dict[str, Any]:
        return self.sb.member(self.list_id, email)["merge_fields"]

    def field_creations(self) -> int:
        return len(self.sb.calls("POST", f"/lists/{self.list_id}/merge-fields"))

    def reactivations(self, email: str) -> list[Any]:
        bodies = [r.json for r in self.sb.requests if isinstance(r.json, dict)]
        members = [m for b in bodies for m in b.get("members", [b])]
        return [m for m in members if str(m.get("email_address", "")).lower() == email
                and m.get("status") in ("subscribed", "pending")]

    def webhook_urls(self) -> list[str]:
        return [h["url"] for h in self.sb.audiences[self.list_id].webhooks.values()]

    def request_count(self) -> int:
        return len(self.sb.requests)


HARNESSES = {"mailerlite": MailerLiteHarness, "mailchimp": MailchimpHarness}
# Classic's simulator covers connecting only (its shapes are UNVERIFIED): tests/providers/test_clients.py.
CONNECT_ONLY = {"mailerlite_classic"}
KINDS = [cls.kind for cls in registry.all() if cls.kind not in CONNECT_ONLY]
FIELD_NAME = {"mailerlite": "kommo_contact_id", "mailchimp": "KOMMOCID"}


@pytest.fixture(params=KINDS)
def harness(request):
    return HARNESSES[request.param]


def client_for(h) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=h.app))


def test_every_registered_provider_has_a_harness():
    assert set(KINDS) == set(HARNESSES)


async def test_invalid_key_is_rejected(harness):
    h = harness()
    async with client_for(h) as client:
        with pytest.raises(Unprocessable) as refused:
            await h.provider(client, key="eyJ0.eyJ1.wrong-us21").validate()
    assert (refused.value.status_code, refused.value.code) == (422, "invalid_api_key")


async def test_upsert_and_segment_moves(harness):
    h = harness()
    async with client_for(h) as client:
        provider = h.provider(client)
        assert (await provider.validate()).startswith(h.kind.replace("mailerlite", "MailerLite")
                                                      .replace("mailchimp", "Mailchimp"))
        won, lost = await provider.create_segment("Won"), await provider.create_segment("Lost")
        assert {s.name for s in await provider.list_segments()} == {"Won", "Lost"}
        assert (await provider.create_segment("Won")).id == won.id  # no duplicate
        ann = await provider.upsert(SubscriberData(
            "Ann.Lee@Acme-Corp.io", {"first_name": "Ann", "kommo_contact_id": "24870011"},
            add_segments=[won.id]))
        assert (ann.email, ann.status) == ("ann.lee@acme-corp.io", h.active)
        assert h.segment_names("ann.lee@acme-corp.io") == {"Won"}
        await provider.upsert(SubscriberData("ann.lee@acme-corp.io", {},
                                             add_segments=[lost.id], remove_segments=[won.id]))
        assert h.segment_names("ann.lee@acme-corp.io") == {"Lost"}
        await provider.set_membership("ann.lee@acme-corp.io", remove=[lost.id])
        assert h.segment_names("ann.lee@acme-corp.io") == set()
        assert h.fields("ann.lee@acme-corp.io")[FIELD_NAME[h.kind]] == "24870011"
        found = await provider.get_subscriber("ANN.LEE@acme-corp.io")
        assert (found.email, found.status, found.opted_out) == ("ann.lee@acme-corp.io", h.active, False)
        assert await provider.get_subscriber("nobody@acme-corp.io") is None


async def test_opt_out_is_kept_and_never_reactivated(harness):
    h = harness()
    h.seed("gone@acme-corp.io", h.opted_out)
    async with client_for(h) as client:
        provider = h.provider(client)
        won = await provider.create_segment("Won")
        kept = await provider.upsert(SubscriberData("gone@acme-corp.io", {"first_name": "G"},
                                                    add_segments=[won.id]))
        await provider.bulk_upsert([SubscriberData("gone@acme-corp.io", add_segments=[won.id])])
    assert kept.opted_out and h.status("gone@acme-corp.io") == h.opted_out
    assert h.segment_names("gone@acme-corp.io") == {"Won"}  # segment changes still apply
    assert h.reactivations("gone@acme-corp.io") == []


async def test_unsubscribe_and_forget(harness):
    h = harness()
    async with client_for(h) as client:
        provider = h.provider(client)
        await provider.upsert(SubscriberData("bea@acme-corp.io"))
        await provider.unsubscribe("bea@acme-corp.io")
        assert h.status("bea@acme-corp.io") == "unsubscribed"
        await provider.forget("bea@acme-corp.io")
        assert await provider.get_subscriber("bea@acme-corp.io") is None
        await provider.forget("bea@acme-corp.io")  # twice is harmless


async def test_fields_are_created_once(harness):
    h = harness()
    async with client_for(h) as client:
        for n in range(3):
            provider = h.provider(client)  # a new instance per job, as the worker builds them
            await provider.upsert(SubscriberData(f"c{n}@acme-corp.io", {
                "first_name": "C", "kommo_contact_id": str(n), "kommo_lead_id": str(n)}))
    async with client_for(h) as client:  # another process: reads the fields, creates nothing
        await h.provider(client).upsert(SubscriberData("c9@acme-corp.io", {"kommo_lead_id": "9"}))
    assert h.field_creations() == 2


async def test_rate_limit_surfaces_retry_after(harness):
    h = harness(rate_limit=3)
    async with client_for(h) as client:
        provider = h.provider(client)
        with pytest.raises(UpstreamRateLimited) as limited:
            for n in range(10):
                await provider.get_subscriber(f"x{n}@acme-corp.io")
    assert 59.0 < limited.value.retry_after <= 60.0
    assert limited.value.retryable and h.request_count() <= 4


async def test_webhook_registered_and_deleted(harness):
    h = harness()
    url = f"https://mailsync.test/webhooks/{h.kind}/hook-key"
    async with client_for(h) as client:
        provider = h.provider(client)
        hook = await provider.register_webhook(url)
        assert h.webhook_urls() == [url]
        await provider.delete_webhook(hook.id)
        assert h.webhook_urls() == []
        await provider.delete_webhook(hook.id)  # already gone


async def test_bulk_upsert_reports_each_address(harness):
    h = harness()
    async with client_for(h) as client:
        provider = h.provider(client)
        won = await provider.create_segment("Won")
        items = [SubscriberData(f"b{n}@acme-corp.io", {"kommo_lead_id": str(n)},
                                add_segments=[won.id]) for n in range(3)]
        result = await provider.bulk_upsert([*items, SubscriberData("not-an-address")])
        assert result.succeeded == ("b0@acme-corp.io", "b1@acme-corp.io", "b2@acme-corp.io")
        assert list(result.failed) == ["not-an-address"]
        moved = await provider.bulk_set_membership(won.id, add=["b0@acme-corp.io"],
                                                   remove=["b1@acme-corp.io", "b2@acme-corp.io"])
        assert set(moved.succeeded) == {"b0@acme-corp.io", "b1@acme-corp.io", "b2@acme-corp.io"}
    assert [h.segment_names(f"b{n}@acme-corp.io") for n in range(3)] == [{"Won"}, set(), set()]


VENDOR_WORDS = {"mailerlite": "The email must be a valid email address.",
                "mailchimp": "not-an-address looks fake or invalid"}


async def test_invalid_address_is_a_permanent_refusal_in_the_vendors_words(harness):
    h = harness()
    async with client_for(h) as client:
        with pytest.raises(PermanentRefusal) as refused:
            await h.provider(client).upsert(SubscriberData("not-an-address"))
    assert refused.value.retryable is False
    assert VENDOR_WORDS[h.kind] in refused.value.message
