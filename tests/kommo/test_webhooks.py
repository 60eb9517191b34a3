"""One test per real-format body in tests/fixtures/kommo, each with the exact parsed result."""

from pathlib import Path

import pytest

from backend.errors import MalformedBody
from backend.kommo.webhooks import (
    KommoEvent,
    KommoWebhook,
    contact_emails,
    contact_phones,
    linked_lead_ids,
    parse_webhook,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kommo"
ACCOUNT = 29085424
BUDGET = [{"id": "1118164", "name": "Budget", "values": [{"value": "1000"}]}]


def parse(name: str) -> KommoWebhook:
    return parse_webhook((FIXTURES / name).read_bytes())


def deal(lead_id, status_id, old_status_id, modified, **extra):
    """A lead item as the status/add fixtures carry it (every value a string)."""
    return {"id": str(lead_id), "name": f"Deal #{lead_id}", "status_id": str(status_id),
            "old_status_id": str(old_status_id), "price": "1200", "responsible_user_id": "8107561",
            "last_modified": str(modified), "modified_user_id": "8107561",
            "created_user_id": "8107561", "date_create": "1732533000", "pipeline_id": "7654321",
            "account_id": str(ACCOUNT), "custom_fields": BUDGET, "created_at": "1732533000",
            "updated_at": str(modified), **extra}


def test_status_change_with_two_leads():
    assert parse("leads_status__two_leads.txt") == KommoWebhook(
        account_id=ACCOUNT, subdomain="acme", ignored_keys=(), events=(
            KommoEvent(entity="lead", action="status", id=15318175, last_modified=1732540000,
                       pipeline_id=7654321, status_id=67548619, old_status_id=67548607,
                       data=deal(15318175, 67548619, 67548607, 1732540000)),
            KommoEvent(entity="lead", action="status", id=15318176, last_modified=1732540001,
                       pipeline_id=7654321, status_id=142, old_status_id=67548619,
                       data=deal(15318176, 142, 67548619, 1732540001)),
        ))


def test_lead_added_has_no_old_status():
    assert parse("leads_add__one.txt") == KommoWebhook(
        account_id=ACCOUNT, subdomain="acme", ignored_keys=(), events=(
            KommoEvent(entity="lead", action="add", id=15318177, last_modified=1732540300,
                       pipeline_id=7654321, status_id=67548607, old_status_id=None,
                       data=deal(15318177, 67548607, 0, 1732540300)),
        ))


def test_lead_deleted():
    assert parse("leads_delete__basic.txt") == KommoWebhook(
        account_id=ACCOUNT, subdomain="acme", ignored_keys=(), events=(
            KommoEvent(entity="lead", action="delete", id=15318175, last_modified=None,
                       pipeline_id=7654321, status_id=67548619, old_status_id=None,
                       data={"id": "15318175", "status_id": "67548619", "pipeline_id": "7654321"}),
        ))


ANN = {"id": "24870011", "name": "Ann Lee", "responsible_user_id": "8107561",
       "date_create": "1732533000", "created_user_id": "8107561", "modified_user_id": "8107561",
       "account_id": str(ACCOUNT), "created_at": "1732533000", "type": "contact",
       "linked_leads_id": [{"ID": "15318175"}]}


def test_contact_added_with_email_and_phone():
    webhook = parse("contacts_add__email_phone.txt")
    data = {**ANN, "last_modified": "1732540100", "updated_at": "1732540100", "custom_fields": [
        {"id": "771906", "name": "Phone", "code": "PHONE",
         "values": [{"value": "+15550100", "enum": "552486"}]},
        {"id": "771908", "name": "Email", "code": "EMAIL",
         "values": [{"value": "ann.lee@acme-corp.io", "enum": "552488"},
                    {"value": "ann@home-mail.io", "enum": "552490"}]}]}
    assert webhook == KommoWebhook(account_id=ACCOUNT, subdomain="acme", ignored_keys=(), events=(
        KommoEvent(entity="contact", action="add", id=24870011, last_modified=1732540100,
                   pipeline_id=None, status_id=None, old_status_id=None, data=data),))
    event = webhook.events[0]
    assert contact_emails(event.data) == ["ann.lee@acme-corp.io", "ann@home-mail.io"]
    assert contact_phones(event.data) == ["+15550100"]
    assert linked_lead_ids(event.data) == [15318175]


def test_contact_email_changed():
    webhook = parse("contacts_update__email_changed.txt")
    data = {**ANN, "last_modified": "1732541000", "updated_at": "1732541000", "custom_fields": [
        {"id": "771908", "name": "Email", "code": "EMAIL",
         "values": [{"value": "ann.lee@new-corp.io", "enum": "552488"}]}]}
    assert webhook == KommoWebhook(account_id=ACCOUNT, subdomain="acme", ignored_keys=(), events=(
        KommoEvent(entity="contact", action="update", id=24870011, last_modified=1732541000,
                   pipeline_id=None, status_id=None, old_status_id=None, data=data),))
    assert contact_emails(webhook.events[0].data) == ["ann.lee@new-corp.io"]
    assert contact_phones(webhook.events[0].data) == []


def test_contact_deleted():
    assert parse("contacts_delete__basic.txt") == KommoWebhook(
        account_id=ACCOUNT, subdomain="acme", ignored_keys=(), events=(
            KommoEvent(entity="contact", action="delete", id=24870011, last_modified=None,
                       pipeline_id=None, status_id=None, old_status_id=None,
                       data={"id": "24870011", "type": "contact"}),
        ))


def test_company_arrives_under_contacts_with_type_company():
    assert parse("contacts_add__company.txt") == KommoWebhook(
        account_id=ACCOUNT, subdomain="acme", ignored_keys=(), events=(
            KommoEvent(entity="company", action="add", id=24870099, last_modified=1732540200,
                       pipeline_id=None, status_id=None, old_status_id=None,
                       data={"id": "24870099", "name": "Acme Corp", "type": "company",
                             "account_id": str(ACCOUNT), "last_modified": "1732540200"}),
        ))


def test_unencoded_brackets_and_lead_tags():
    assert parse("leads_status__unencoded_tags.txt") == KommoWebhook(
        account_id=ACCOUNT, subdomain="acme", ignored_keys=(), events=(
            KommoEvent(entity="lead", action="status", id=15318180, last_modified=1732541500,
                       pipeline_id=7654321, status_id=143, old_status_id=67548619, data={
                           "id": "15318180", "name": "Deal #15318180", "status_id": "143",
                           "old_status_id": "67548619", "pipeline_id": "7654321",
                           "old_pipeline_id": "7654321", "last_modified": "1732541500",
                           "account_id": str(ACCOUNT), "tags": [{"id": "5001", "name": "vip"}]}),
        ))


def test_unsubscribed_event_keys_are_listed_not_parsed():
    assert parse("mixed__unsubscribed_events.txt") == KommoWebhook(
        account_id=ACCOUNT, subdomain="acme",
        ignored_keys=("task[add]", "leads[note]", "leads[restore]"), events=(
            KommoEvent(entity="company", action="update", id=24870099, last_modified=1732541600,
                       pipeline_id=None, status_id=None, old_status_id=None,
                       data={"id": "24870099", "name": "Acme Corp Ltd", "type": "company",
                             "updated_at": "1732541600"}),
        ))


def test_account_id_falls_back_to_the_items():
    webhook = parse_webhook("leads[delete][0][id]=5&leads[delete][0][account_id]=77")
    assert (webhook.account_id, webhook.subdomain, [e.id for e in webhook.events]) == (77, None, [5])


def test_a_body_with_only_the_account_block_has_no_events():
    assert parse_webhook(b"account[id]=77&account[subdomain]=x") == KommoWebhook(
        account_id=77, subdomain="x", events=(), ignored_keys=())


@pytest.mark.parametrize("body", [
    b"",
    b"\xff\xfe garbage",
    b"hello world",
    b"leads[status][0][id]=1",  # no account anywhere
    b"leads[status][0][id]=abc&account[id]=1",
    b"leads[status][0][id]=--5&account[id]=1",
    b"leads[status][0][id]=12%0A&account[id]=1",
    "leads[status][0][id]=١٢&account[id]=1".encode(),
    b"leads[status][0][name]=no-id&account[id]=1",
    b"leads[status][id]=1&account[id]=1",  # not numbered items
    b"leads[status][0]=1&account[id]=1",
    b"leads[status][0][id]=1&leads[status][0][status_id]=x&account[id]=1",
    b"account[id]=not-a-number",
    b"leads[add][0][id]=1&leads[add][0][account_id]=1&leads[add][1][id]=2&leads[add][1][account_id]=2",
    b"a[b]]=1",
])
def test_malformed_bodies_raise(body):
    with pytest.raises(MalformedBody):
        parse_webhook(body)


def test_field_helpers_are_defensive():
    assert contact_emails({}) == [] and linked_lead_ids({}) == []
    assert contact_emails({"custom_fields": "x"}) == []
    data = {"custom_fields": [{"code": "email", "values": [{"value": " a@b.c "}, {"value": ""}, "x@y.z"]}],
            "linked_leads_id": {"12": {"ID": "12"}, "13": {"ID": "oops"}}}
    assert contact_emails(data) == ["a@b.c", "x@y.z"]
    assert linked_lead_ids(data) == [12]
