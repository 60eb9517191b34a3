from backend.kommo import types
from backend.providers.base import Consent
from backend.sync.desired import choose_email, has_consent, plan_contact, segment_change
from backend.sync.mapping import Rule
from backend.sync.options import FieldMapEntry, SyncOptions

DEFAULT_OPTIONS = SyncOptions()

MANAGED = frozenset({"new", "qualified", "won"})


def contact(emails=(("Jane@Example.com", "WORK"),), name="Jane Doe", first="", last="",
            fields=(), phones=("+1 555",)):
    values = [types.FieldValues(1, "EMAIL", "Email", "multitext", tuple(
        types.FieldValue(value, 10, code) for value, code in emails))]
    values.append(types.FieldValues(2, "PHONE", "Phone", "multitext",
                                    tuple(types.FieldValue(p, 20, "WORK") for p in phones)))
    return types.Contact(id=7, name=name, first_name=first, last_name=last, updated_at=1,
                         fields=tuple(values) + tuple(fields), tags=(), lead_ids=(15,))


def test_email_choice():
    both = contact(emails=(("home@x.io", "PRIV"), ("work@x.io", "WORK")))
    assert choose_email(both, "first") == "home@x.io"
    assert choose_email(both, "WORK") == "work@x.io"
    assert choose_email(contact(emails=(("only@x.io", "PRIV"),)), "WORK") == "only@x.io"
    assert choose_email(contact(emails=()), "first") is None


def test_plan_fields_and_skips():
    plan = plan_contact(contact(), 15, DEFAULT_OPTIONS)
    assert (plan.email, plan.skip_reason, plan.consent) == ("jane@example.com", None, Consent.SUBSCRIBED)
    assert plan.fields == {"first_name": "Jane", "last_name": "Doe", "phone": "+1 555", "company": None,
                           "kommo_contact_id": "7", "kommo_lead_id": "15"}
    assert plan_contact(contact(), 15, DEFAULT_OPTIONS, "Acme Corp").fields["company"] == "Acme Corp"
    assert plan_contact(contact(emails=()), 15, DEFAULT_OPTIONS).skip_reason == "no email"
    assert plan_contact(contact(emails=(("not-an-address", None),)), 15,
                        DEFAULT_OPTIONS).skip_reason == "invalid email"
    assert plan.fields_hash != plan_contact(contact(), 16, DEFAULT_OPTIONS).fields_hash


def test_consent_skip_or_pending():
    consent = types.FieldValues(99, None, "Consent", "checkbox", (types.FieldValue(True),))
    refused = types.FieldValues(99, None, "Consent", "checkbox", (types.FieldValue(False),))
    options = SyncOptions(consent_field_id=99)
    assert has_consent(contact(fields=(consent,)), 99)
    assert not has_consent(contact(fields=(refused,)), 99)
    assert plan_contact(contact(fields=(refused,)), 1, options).skip_reason == "no consent"
    pending = plan_contact(contact(), 1, SyncOptions(consent_field_id=99, no_consent="pending"))
    assert (pending.skip_reason, pending.consent) == (None, Consent.PENDING)


def test_field_map_and_name_split():
    city = types.FieldValues(5, None, "City", "text", (types.FieldValue("Lisbon"),))
    plan = plan_contact(contact(fields=(city,), name="Ana Maria Silva"), 1,
                        SyncOptions(field_map=(FieldMapEntry(5, "city"),)))
    assert plan.fields["city"] == "Lisbon"
    assert (plan.fields["first_name"], plan.fields["last_name"]) == ("Ana", "Maria Silva")


def test_segment_changes():
    assert segment_change(Rule(1, 2, "segment", "won"), MANAGED, ["qualified", "vip"]).add == ("won",)
    change = segment_change(Rule(1, 2, "segment", "won"), MANAGED, ["qualified", "vip"])
    assert change.remove == ("qualified",)  # "vip" is not managed: never touched
    assert segment_change(Rule(1, 2, "segment", "won"), MANAGED, ["won"]).empty
    assert segment_change(Rule(1, 2, "remove"), MANAGED, ["won", "new"]).remove == ("new", "won")
    unsubscribe = segment_change(Rule(1, 2, "unsubscribe"), MANAGED, ["won"])
    assert (unsubscribe.unsubscribe, unsubscribe.add, unsubscribe.remove) == (True, (), ())
