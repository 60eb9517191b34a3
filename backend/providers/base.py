"""The email-provider interface (MailerLite, Mailchimp) and the neutral types it speaks.

The sync engine only ever sees these types. Vendor words (groups/tags, fields/merge fields,
`active`/`subscribed`) stay inside each provider's folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable


class EspStatus(StrEnum):
    """The union of both vendors' subscriber statuses."""

    ACTIVE = "active"  # MailerLite
    SUBSCRIBED = "subscribed"  # Mailchimp
    UNCONFIRMED = "unconfirmed"  # MailerLite, awaiting double opt-in
    PENDING = "pending"  # Mailchimp, awaiting double opt-in
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # MailerLite
    JUNK = "junk"  # MailerLite (spam complaint)
    CLEANED = "cleaned"  # Mailchimp (hard bounce or abuse)
    TRANSACTIONAL = "transactional"  # Mailchimp
    ARCHIVED = "archived"  # Mailchimp

    @property
    def opted_out(self) -> bool:
        return self in OPTED_OUT

    @classmethod
    def parse(cls, value: object) -> EspStatus:
        """Unknown words read as `unconfirmed`: never mistaken for an opt-in we may overwrite."""
        try:
            return cls(str(value).lower())
        except ValueError:
            return cls.UNCONFIRMED


# Opt-outs are final: nothing we send may turn these back into active/subscribed.
OPTED_OUT = frozenset({EspStatus.UNSUBSCRIBED, EspStatus.BOUNCED, EspStatus.JUNK, EspStatus.CLEANED})


class Consent(StrEnum):
    """What the sync wants for a *new* subscriber; existing ones keep their status."""

    SUBSCRIBED = "subscribed"
    PENDING = "pending"  # double opt-in: the ESP asks the person to confirm


class EventKind(StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    SPAM_REPORTED = "spam_reported"
    CLEANED = "cleaned"
    EMAIL_CHANGED = "email_changed"
    PROFILE_UPDATED = "profile_updated"
    SUBSCRIBED = "subscribed"
    DELETED = "deleted"
    ADDED_TO_SEGMENT = "added_to_segment"
    REMOVED_FROM_SEGMENT = "removed_from_segment"
    UNKNOWN = "unknown"


OPT_OUT_EVENTS = frozenset({EventKind.UNSUBSCRIBED, EventKind.BOUNCED, EventKind.SPAM_REPORTED,
                            EventKind.CLEANED, EventKind.EMAIL_CHANGED})

# Neutral field names the sync fills in; each provider maps them to its own keys.
STANDARD_FIELDS = ("first_name", "last_name", "phone", "company", "kommo_contact_id",
                   "kommo_lead_id")


@dataclass(frozen=True)
class Segment:
    """A MailerLite group or a Mailchimp tag (whose id is its name)."""

    id: str
    name: str


@dataclass(frozen=True)
class EspList:
    """A Mailchimp audience."""

    id: str
    name: str
    member_count: int


@dataclass(frozen=True)
class Subscriber:
    email: str
    id: str | None
    status: EspStatus
    segments: tuple[str, ...] = ()  # segment ids; None-free, may be partial (see provider)
    fields: Mapping[str, Any] = field(default_factory=dict)
    created: bool = False  # this call created it

    @property
    def opted_out(self) -> bool:
        return self.status.opted_out


@dataclass(frozen=True)
class SubscriberData:
    """What the sync wants an address to look like. `fields` uses neutral names
    (`STANDARD_FIELDS`) or, for the admin's field map, the vendor's own key / merge tag."""

    email: str
    fields: Mapping[str, str | None] = field(default_factory=dict)
    consent: Consent = Consent.SUBSCRIBED
    add_segments: Sequence[str] = ()
    remove_segments: Sequence[str] = ()
    # The ESP already holds this address with these fields (we wrote them): a provider may then
    # change the segments alone and skip rewriting the subscriber.
    fields_current: bool = False


@dataclass(frozen=True)
class Webhook:
    id: str
    secret: str | None  # MailerLite signs with it; Mailchimp's secret is the URL's hook key


@dataclass(frozen=True)
class BulkResult:
    """Per-address outcome of a bulk call. `failed`: refused for good, with the vendor's words;
    `retry`: hit by a passing failure (5xx, rate limit) — only these are tried again;
    `statuses`: each written address's status at the ESP after the call, where the answer says."""

    succeeded: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)
    retry: Mapping[str, str] = field(default_factory=dict)
    retry_after: float | None = None  # when the vendor said when to come back for `retry`
    statuses: Mapping[str, EspStatus] = field(default_factory=dict)
    created: frozenset[str] = frozenset()  # addresses the ESP did not hold before this call


@dataclass(frozen=True)
class EspEvent:
    source: str
    kind: EventKind
    email: str | None
    dedupe_key: str
    new_email: str | None = None
    subscriber_id: str | None = None
    occurred_at: datetime | None = None
    reason: str | None = None
    raw_type: str = ""

    @property
    def is_opt_out(self) -> bool:
        return self.kind in OPT_OUT_EVENTS

    def to_payload(self) -> dict[str, Any]:
        """JSON for the job queue; `from_payload` reads it back."""
        return {"source": self.source, "kind": str(self.kind), "email": self.email,
                "new_email": self.new_email, "subscriber_id": self.subscriber_id,
                "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
                "reason": self.reason, "raw_type": self.raw_type, "dedupe_key": self.dedupe_key}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> EspEvent:
        try:
            kind = EventKind(payload.get("kind"))
        except ValueError:
            kind = EventKind.UNKNOWN
        occurred = payload.get("occurred_at")
        return cls(source=str(payload.get("source") or ""), kind=kind, email=lower(payload.get("email")),
                   dedupe_key=str(payload["dedupe_key"]), new_email=lower(payload.get("new_email")),
                   subscriber_id=payload.get("subscriber_id"),
                   occurred_at=datetime.fromisoformat(occurred) if occurred else None,
                   reason=payload.get("reason"), raw_type=str(payload.get("raw_type") or ""))


def dedupe_key(source: str, *, event_id: object = None, parts: Sequence[object] = (),
               body: bytes = b"") -> str:
    """docs/ARCHITECTURE.md §7: the event's own id, else a hash of (source, type, subscriber, payload
    timestamp) when all of those are known, else a hash of the raw body."""
    if event_id not in (None, ""):
        return f"{source}:id:{event_id}"
    if parts and all(p not in (None, "") for p in parts):
        text = "\x1f".join([source, *(str(p) for p in parts)])
        return f"{source}:h:{hashlib.sha256(text.encode()).hexdigest()}"
    return f"{source}:b:{hashlib.sha256(body).hexdigest()}"


async def vendor_fields(provider: EmailProvider, fields: Mapping[str, str | None]) -> dict[str, str]:
    """Neutral field names → the provider's keys (created on first use); empty values dropped."""
    present = {name: value for name, value in fields.items() if value is not None}
    keys = await provider.ensure_fields(list(present))
    return {keys[name]: value for name, value in present.items()}


def lower(email: object) -> str | None:
    return email.strip().lower() if isinstance(email, str) and email.strip() else None


@runtime_checkable
class EmailProvider(Protocol):
    """One connected ESP account. Every method may raise the `UpstreamError` family:
    `UpstreamRateLimited(retry_after=)`, `PermanentRefusal` (per contact, never retried),
    `UpstreamUnauthorized` (the key was revoked).

    The class side is what the registry (`providers/__init__.py`) and the rest of the backend
    know of a platform; nothing outside `providers/` names one."""

    kind: ClassVar[str]  # unique registry key, stored with the connection
    family: ClassVar[str]  # what the admin chooses and webhook URLs carry ("mailerlite")
    service: ClassVar[str]  # the name in metrics and in `UpstreamError.service`
    display_name: ClassVar[str]  # the platform's name in notes and activity
    segment_noun: ClassVar[str]  # what the platform calls a segment: "group", "tag"
    key_help: ClassVar[str]  # where in the platform's UI an admin finds a new API key
    uses_lists: ClassVar[bool]  # contacts live in an audience the admin chooses
    answers_url_check: ClassVar[bool]  # the platform GETs our webhook URL before it accepts it
    echoes_own_unsubscribes: ClassVar[bool]  # its webhooks report unsubscribes our API made

    @staticmethod
    def recognises_key(api_key: str) -> bool | None:
        """True: this key has this API's shape; False: another API's of the family; None: unsure."""
        ...

    @classmethod
    def from_key(cls, resources: Any, api_key: str, *, list_id: str | None = None) -> EmailProvider:
        ...

    @classmethod
    def read_webhook(cls, connection: Any, resources: Any, *, body: bytes,
                     headers: Mapping[str, str]) -> list[EspEvent]:
        """Verify one delivery to `connection`'s hook and read its events (raises BadRequest,
        Unauthorized or MalformedBody)."""
        ...

    def connection_fields(self) -> dict[str, Any]:
        """Extra `EspConnection` columns this platform fills (Mailchimp: `dc`)."""
        ...

    async def validate(self) -> str:
        """Check the key live; return the label to show (raises Unprocessable invalid_api_key)."""
        ...

    async def list_lists(self) -> list[EspList]: ...

    async def list_segments(self) -> list[Segment]: ...

    async def create_segment(self, name: str) -> Segment: ...

    async def get_subscriber(self, email: str) -> Subscriber | None: ...

    async def lookup(self, emails: Sequence[str]) -> Mapping[str, Subscriber]:
        """The addresses the ESP holds, among `emails` (in as few calls as the vendor allows)."""
        ...

    async def ensure_fields(self, names: Sequence[str]) -> Mapping[str, str]:
        """Create missing custom fields; return neutral name → vendor key."""
        ...

    async def upsert(self, data: SubscriberData) -> Subscriber:
        """Create or update; never re-activates an opt-out; applies the segment changes."""
        ...

    async def set_membership(self, email: str, *, add: Sequence[str] = (),
                             remove: Sequence[str] = ()) -> None: ...

    async def unsubscribe(self, email: str) -> None: ...

    async def forget(self, email: str) -> None: ...

    async def register_webhook(self, url: str) -> Webhook: ...

    async def delete_webhook(self, webhook_id: str) -> None: ...

    async def bulk_upsert(self, items: Sequence[SubscriberData]) -> BulkResult:
        """Like `upsert` for many addresses: never re-activates an opt-out, adds `add_segments`
        and removes whichever of `remove_segments` each address is in."""
        ...

    async def bulk_set_membership(self, segment_id: str, *, add: Sequence[str] = (),
                                  remove: Sequence[str] = ()) -> BulkResult: ...
