"""Mailchimp audience webhook fixtures (form bodies), one test each, exact parsed output."""

import hashlib
from datetime import UTC, datetime

import pytest

from backend.errors import MalformedBody
from backend.providers import registry
from backend.providers.base import EspEvent, EventKind
from backend.providers.mailchimp.webhooks import parse_webhook
from tests.providers.conftest import FIXTURES

DIR = FIXTURES / "mailchimp"


def body(name: str) -> bytes:
    return (DIR / f"{name}.txt").read_bytes()


def key(*parts: str) -> str:
    return "mailchimp:h:" + hashlib.sha256("\x1f".join(["mailchimp", *parts]).encode()).hexdigest()


def test_unsubscribe():
    assert parse_webhook(body("unsubscribe__manual")) == [EspEvent(
        source="mailchimp", kind=EventKind.UNSUBSCRIBED, email="api+unsub@mailchimp.com",
        subscriber_id="8a25ff1d98", reason="manual", new_email=None, raw_type="unsubscribe",
        occurred_at=datetime(2026, 3, 26, 21, 40, 57, tzinfo=UTC),
        dedupe_key=key("a6b5da1054", "unsubscribe", "8a25ff1d98", "2026-03-26 21:40:57"))]


def test_cleaned():
    assert parse_webhook(body("cleaned__hard")) == [EspEvent(
        source="mailchimp", kind=EventKind.CLEANED, email="api+cleaned@mailchimp.com",
        subscriber_id=None, reason="hard", new_email=None, raw_type="cleaned",
        occurred_at=datetime(2026, 3, 26, 22, 1, tzinfo=UTC),
        dedupe_key=key("a6b5da1054", "cleaned", "api+cleaned@mailchimp.com", "2026-03-26 22:01:00"))]


def test_upemail_is_an_opt_out_of_the_old_address():
    [event] = parse_webhook(body("upemail__changed"))
    assert event == EspEvent(
        source="mailchimp", kind=EventKind.EMAIL_CHANGED, email="api+old@mailchimp.com",
        new_email="api+new@mailchimp.com", subscriber_id="51aa6d5d45", reason=None,
        raw_type="upemail", occurred_at=datetime(2026, 3, 26, 22, 15, 9, tzinfo=UTC),
        dedupe_key=key("a6b5da1054", "upemail", "51aa6d5d45", "2026-03-26 22:15:09"))
    assert event.is_opt_out


def test_profile():
    [event] = parse_webhook(body("profile__updated"))
    assert (event.kind, event.email, event.subscriber_id, event.is_opt_out, event.dedupe_key) == (
        EventKind.PROFILE_UPDATED, "api+profile@mailchimp.com", "8a25ff1d98", False,
        key("a6b5da1054", "profile", "8a25ff1d98", "2026-03-26 21:31:21"))


def test_subscribe():
    [event] = parse_webhook(body("subscribe__signup"))
    assert (event.kind, event.email, event.subscriber_id, event.is_opt_out, event.occurred_at) == (
        EventKind.SUBSCRIBED, "api+sub@mailchimp.com", "8a25ff1d98", False,
        datetime(2026, 3, 26, 21, 35, 57, tzinfo=UTC))


def test_same_delivery_twice_has_one_dedupe_key():
    assert parse_webhook(body("unsubscribe__manual"))[0].dedupe_key == \
        parse_webhook(body("unsubscribe__manual"))[0].dedupe_key


def test_campaign_events_are_dropped():
    assert parse_webhook(b"type=campaign&fired_at=2026-03-26+21%3A40%3A57&data%5Bid%5D=x") == []


@pytest.mark.parametrize("raw", [b"", b"fired_at=x", b"type=unsubscribe", b"type=unsubscribe&data=x",
                                 b"\xff\xfe"])
def test_malformed_bodies(raw):
    with pytest.raises(MalformedBody):
        parse_webhook(raw)


def test_the_provider_reads_a_delivery_to_a_connection(resources_stub):
    connection, resources = resources_stub("mailchimp")
    events = registry.get("mailchimp").read_webhook(connection, resources,
                                                     body=body("cleaned__hard"), headers={})
    assert [e.kind for e in events] == [EventKind.CLEANED]
    assert parse_webhook(body("cleaned__hard")) == events
