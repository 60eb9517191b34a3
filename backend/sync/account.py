"""One account's sync, as a job sees it: the mapping, the options, the ESP and Kommo clients, the
names to write activity in, and the small writes (contact state, activity) it records as it goes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend import activity_log, contact_states, repository
from backend.connections import provider_for
from backend.kommo import companies, types
from backend.kommo.client import KommoClient
from backend.models import AccountStatus, Activity, ContactState, utcnow
from backend.providers.base import EmailProvider
from backend.sync.mapping import Rule, StageMapping
from backend.sync.options import SyncOptions

if TYPE_CHECKING:
    from backend.resources import Resources


@dataclass
class AccountSync:
    resources: Resources
    account_id: int
    mapping: StageMapping
    options: SyncOptions
    provider: EmailProvider
    kommo: KommoClient
    labels: dict[str, Any] = field(default_factory=dict)  # see AccountOptions.labels

    @classmethod
    async def load(cls, resources: Resources, account_id: int) -> AccountSync | None:
        """None when there is nothing to sync with: no active account or no ESP connected."""
        async with resources.reads() as session:
            account = await repository.get_account(session, account_id)
            connection = await repository.get_esp_connection(session, account_id)
            rules = await repository.get_mapping(session, account_id)
            options = await repository.get_options(session, account_id)
            labels = await repository.get_labels(session, account_id)
        if account is None or account.status != AccountStatus.ACTIVE:
            return None
        if connection is None or not connection.api_key_enc:
            return None
        mapping = StageMapping(tuple(Rule(r.pipeline_id, r.status_id, r.action, r.segment_id)
                                     for r in rules))
        return cls(resources=resources, account_id=account_id, mapping=mapping,
                   options=SyncOptions.from_stored(options),
                   provider=provider_for(connection, resources),
                   kommo=KommoClient(resources, account_id), labels=labels)

    @property
    def platform(self) -> str:
        return self.provider.display_name

    def segments_text(self, segment_ids: Iterable[str]) -> str:
        """`group “Customers”`, in the platform's own word, named as the admin saw it."""
        names = self.labels.get("segments", {})
        quoted = [f"“{names.get(s, s)}”" for s in segment_ids]
        return f"{self.provider.segment_noun} {', '.join(quoted)}"

    def stage_text(self, lead: types.Lead) -> str:
        name = self.labels.get("stages", {}).get(f"{lead.pipeline_id}:{lead.status_id}")
        return f"stage {name or lead.status_id}"

    async def company_names(self, contacts: Iterable[types.Contact]) -> dict[int, str | None]:
        """Contact id → the name of its company (one batched read of the names not known yet)."""
        return await companies.names_of(self.kommo, self.resources.engine, self.account_id, contacts)

    async def state(self, contact_id: int) -> ContactState | None:
        async with self.resources.reads() as session:
            return await contact_states.get_contact_state(session, self.account_id, contact_id)

    async def states(self, contact_ids: Sequence[int]) -> dict[int, ContactState]:
        async with self.resources.reads() as session:
            return await contact_states.get_contact_states(session, self.account_id, contact_ids)

    async def states_of_lead(self, lead_id: int) -> list[ContactState]:
        async with self.resources.reads() as session:
            return list(await contact_states.find_contact_states_by_lead(session, self.account_id, lead_id))

    async def unverify(self, states: Iterable[ContactState | None]) -> None:
        """Write-ahead for the platform writes to come (`contact_states.mark_unverified`)."""
        ids = [s.contact_id for s in states if s is not None and s.id is not None]
        if ids:
            async with self.resources.sessions() as session, session.begin():
                await contact_states.mark_unverified(session, self.account_id, ids)

    async def save(self, state: ContactState) -> None:
        await self.commit([state], ())

    def activity(self, *, direction: str = "to_esp", outcome: str, summary: str,
                 email: str | None = None, lead_id: int | None = None,
                 contact_id: int | None = None, detail: str | None = None) -> Activity:
        return Activity(account_id=self.account_id, at=utcnow(), direction=direction,
                        lead_id=lead_id, contact_id=contact_id, email=email, summary=summary,
                        outcome=outcome, detail=detail)

    async def record(self, **entry: Any) -> None:
        await self.commit((), [self.activity(**entry)])

    async def commit(self, states: Iterable[ContactState], activities: Iterable[Activity]) -> None:
        """Many contacts' states and activity entries in one transaction (a batch's results)."""
        states = list(states)
        for state in states:
            state.account_id = self.account_id
        async with self.resources.sessions() as session, session.begin():
            # Rows read in another session are re-attached, not re-read (no merge per row).
            await contact_states.save_contact_states(session, states)
            await activity_log.add_activities(session, self.account_id, list(activities))
