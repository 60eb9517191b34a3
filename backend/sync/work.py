"""The jobs the sync engine runs, one typed class per kind. Producers (webhook routes, the widget's
resync) build a job with `to_spec`; the handler reads it back with `from_payload`. The coalesce
key, which makes repeated events for one lead or contact collapse into one pending job, is
written here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from backend.inbox import Delivery, compact_body
from backend.jobs import JobSpec
from backend.providers.base import EspEvent


def _present(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _entity_spec(work: Any, account_id: int, entity_id: int) -> JobSpec:
    """One job per lead or contact: pending twins coalesce on `{kind}:{account}:{id}`."""
    return JobSpec(account_id, work.KIND, f"{work.KIND}:{account_id}:{entity_id}",
                   _present(asdict(work)))


@dataclass(frozen=True)
class ReconcileLead:
    """Bring the lead's contacts in line with its stage. Level-triggered: the fields besides the
    id are the triggering event's hints, kept for the logs."""

    KIND: ClassVar[str] = "reconcile_lead"
    lead_id: int
    action: str | None = None
    status_id: int | None = None
    pipeline_id: int | None = None
    last_modified: int | None = None

    def to_spec(self, account_id: int) -> JobSpec:
        return _entity_spec(self, account_id, self.lead_id)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ReconcileLead:
        return cls(lead_id=int(payload["lead_id"]), action=payload.get("action"),
                   status_id=_int(payload.get("status_id")),
                   pipeline_id=_int(payload.get("pipeline_id")),
                   last_modified=_int(payload.get("last_modified")))


@dataclass(frozen=True)
class ReconcileContact:
    """Re-read the contact; its deciding lead (if any) applies."""

    KIND: ClassVar[str] = "reconcile_contact"
    contact_id: int
    action: str | None = None
    last_modified: int | None = None

    def to_spec(self, account_id: int) -> JobSpec:
        return _entity_spec(self, account_id, self.contact_id)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ReconcileContact:
        return cls(contact_id=int(payload["contact_id"]), action=payload.get("action"),
                   last_modified=_int(payload.get("last_modified")))


@dataclass(frozen=True)
class ApplyEspEvent:
    """An opt-out or address change at the email platform, to write back to Kommo."""

    KIND: ClassVar[str] = "esp_event"
    event: EspEvent

    def delivery_key(self, account_id: int) -> str:
        # Per account: two Kommo accounts may connect one ESP account and both hear of it.
        return f"{account_id}:{self.event.dedupe_key}"

    def to_spec(self, account_id: int) -> JobSpec:
        return JobSpec(account_id, self.KIND, f"{self.KIND}:{self.delivery_key(account_id)}",
                       self.event.to_payload())

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ApplyEspEvent:
        return cls(EspEvent.from_payload(payload))

    def delivery(self, account_id: int, source: str) -> Delivery:
        """The event's own inbox row and job: a repeat of the event, alone or in any batch,
        stores nothing."""
        return Delivery(source=source, account_id=account_id,
                        dedupe_key=self.delivery_key(account_id),
                        body=json.dumps(self.event.to_payload()), jobs=(self.to_spec(account_id),))


@dataclass(frozen=True)
class SplitEspBatch:
    """A platform's batch of opt-outs, stored by the webhook route as one delivery (one inbox
    write, so thousands of events are acknowledged in well under the platform's timeout). The
    worker splits it into one `ApplyEspEvent` delivery per event (`sync/handlers.py`), with the
    dedupe keys the events would have had alone."""

    KIND: ClassVar[str] = "esp_batch"
    source: str  # the platform family, the inbox rows' source
    events: tuple[EspEvent, ...]

    def batch_key(self, account_id: int) -> str:
        """The same events hash the same however they are ordered: a redelivery stores nothing."""
        keys = "\n".join(sorted(event.dedupe_key for event in self.events))
        return f"{account_id}:{self.source}:batch:{hashlib.sha256(keys.encode()).hexdigest()}"

    def to_spec(self, account_id: int) -> JobSpec:
        return JobSpec(account_id, self.KIND, f"{self.KIND}:{self.batch_key(account_id)}",
                       {"source": self.source, "events": [e.to_payload() for e in self.events]})

    def delivery(self, account_id: int) -> Delivery:
        # The row keeps a capped summary; the events themselves travel in the job's payload.
        summary = [{"kind": str(e.kind), "dedupe_key": e.dedupe_key} for e in self.events]
        return Delivery(source=self.source, account_id=account_id,
                        dedupe_key=self.batch_key(account_id), body=compact_body(summary),
                        jobs=(self.to_spec(account_id),))

    def deliveries(self, account_id: int) -> list[Delivery]:
        return [ApplyEspEvent(event).delivery(account_id, self.source) for event in self.events]

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SplitEspBatch:
        return cls(source=str(payload["source"]),
                   events=tuple(EspEvent.from_payload(e) for e in payload["events"]))


@dataclass(frozen=True)
class BackfillPage:
    """The next page of an account's initial sync (`sync/backfill.py`)."""

    KIND: ClassVar[str] = "backfill_page"
    backfill_id: int

    def to_spec(self, account_id: int) -> JobSpec:
        return _entity_spec(self, account_id, self.backfill_id)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> BackfillPage:
        return cls(backfill_id=int(payload["backfill_id"]))
