"""MailerLite webhook fixtures, one test each, exact parsed output."""

from datetime import UTC, datetime

import pytest

from backend.errors import BadRequest, MalformedBody, Unauthorized
from backend.providers import registry
from backend.providers.base import EspEvent, EventKind
from backend.providers.mailerlite.webhooks import parse_webhook
from backend.security import hmac_sha256_hex
from tests.providers.conftest import FIXTURES

DIR = FIXTURES / "mailerlite"
SECRET = "yaEgW3JvHz"
AT = datetime(2026, 3, 26, 21, 40, 57, tzinfo=UTC)


def fixture(name: str) -> tuple[bytes, str]:
    body = (DIR / f"{name}.json").read_bytes()
    signature = (DIR / f"{name}.signature").read_text().strip()
    return body, signature


def key(*parts: str) -> str:
    import hashlib
    return "mailerlite:h:" + hashlib.sha256("\x1f".join(["mailerlite", *parts]).encode()).hexdigest()


def test_single_unsubscribe_signed():
    body, signature = fixture("subscriber_unsubscribed__single")
    assert parse_webhook(body, signature=signature, secret=SECRET) == [EspEvent(
        source="mailerlite", kind=EventKind.UNSUBSCRIBED, email="ann.lee@acme-corp.io",
        subscriber_id="31986843064993537", occurred_at=AT, reason=None, new_email=None,
        raw_type="subscriber.unsubscribed",
        dedupe_key=key("subscriber.unsubscribed", "31986843064993537", "2026-03-26 21:40:57"))]


def test_batched_bounce_and_spam_signed():
    body, signature = fixture("batched__bounced_and_spam")
    events = parse_webhook(body, signature=signature, secret=SECRET)
    assert [(e.kind, e.email, e.subscriber_id, e.occurred_at, e.is_opt_out) for e in events] == [
        (EventKind.BOUNCED, "gone@acme-corp.io", "31986843064993538", AT, True),
        (EventKind.SPAM_REPORTED, "angry@acme-corp.io", "31986843064993539", AT, True)]
    assert [e.dedupe_key for e in events] == [
        key("subscriber.bounced", "31986843064993538", "2026-03-26 21:40:57"),
        key("subscriber.spam_reported", "31986843064993539", "2026-03-26 21:40:57")]


def test_nested_subscriber_named_by_event_only():
    body, signature = fixture("subscriber_unsubscribed__nested")
    [event] = parse_webhook(body, signature=signature, secret=SECRET)
    assert (event.kind, event.email, event.subscriber_id, event.raw_type) == (
        EventKind.UNSUBSCRIBED, "bea.cruz@acme-corp.io", "31986843064993540",
        "subscriber.unsubscribed")


def test_forged_signature_is_refused():
    body, _ = fixture("subscriber_unsubscribed__single")
    forged = (DIR / "subscriber_unsubscribed__forged.signature").read_text().strip()
    with pytest.raises(Unauthorized) as refused:
        parse_webhook(body, signature=forged, secret=SECRET)
    assert (refused.value.status_code, refused.value.code) == (401, "bad_signature")


def test_tampered_body_is_refused():
    body, signature = fixture("batched__bounced_and_spam")
    with pytest.raises(Unauthorized):
        parse_webhook(body.replace(b"gone@", b"kept@"), signature=signature, secret=SECRET)


def test_missing_signature_is_a_400():
    body, _ = fixture("subscriber_unsubscribed__single")
    with pytest.raises(BadRequest) as refused:
        parse_webhook(body, signature=None, secret=SECRET)
    assert (refused.value.status_code, refused.value.code) == (400, "missing_signature")


def test_an_empty_configured_secret_verifies_nothing():
    body = b"{}"
    for signature in (hmac_sha256_hex("", body), ""):
        with pytest.raises((Unauthorized, BadRequest)):
            parse_webhook(body, signature=signature or None, secret="")


def test_uppercase_hex_signature_is_accepted():
    body, signature = fixture("subscriber_unsubscribed__single")
    assert len(parse_webhook(body, signature=signature.upper(), secret=SECRET)) == 1


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"events": "x"}', b'{"email": "a@b.co"}'])
def test_garbage_is_malformed_once_signed(body):
    with pytest.raises(MalformedBody):
        parse_webhook(body, signature=hmac_sha256_hex(SECRET, body), secret=SECRET)


def test_campaign_events_are_dropped_and_unknown_ones_kept_as_unknown():
    body = (b'{"events": [{"type": "campaign.open", "subscriber": {"email": "a@b.co"}},'
            b' {"type": "subscriber.weird", "subscriber": {"email": "A@B.co", "id": "9"}}]}')
    [event] = parse_webhook(body, signature=hmac_sha256_hex(SECRET, body), secret=SECRET)
    assert (event.kind, event.email, event.is_opt_out) == (EventKind.UNKNOWN, "a@b.co", False)


def test_events_without_timestamps_dedupe_on_the_body():
    body = b'{"type": "subscriber.bounced", "email": "a@b.co"}'
    [event] = parse_webhook(body, signature=hmac_sha256_hex(SECRET, body), secret=SECRET)
    import hashlib
    assert event.dedupe_key == "mailerlite:b:" + hashlib.sha256(body).hexdigest()


def test_the_provider_reads_a_delivery_to_a_connection(resources_stub):
    body, signature = fixture("subscriber_unsubscribed__single")
    connection, resources = resources_stub("mailerlite", webhook_secret=SECRET)
    events = registry.get("mailerlite").read_webhook(connection, resources, body=body,
                                                      headers={"Signature": signature})
    assert [e.email for e in events] == ["ann.lee@acme-corp.io"]
    assert parse_webhook(body, signature=signature, secret=SECRET) == events
