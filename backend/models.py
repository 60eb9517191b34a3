"""SQLModel tables (docs/ARCHITECTURE.md §6).

Columns ending in `_enc` hold Fernet ciphertext (see `security.Vault`); `ENCRYPTED_COLUMNS` lists
them all so `mailsync rotate-keys` can re-encrypt every stored secret. Timestamps are stored as
naive UTC and come back timezone-aware, identically on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _ts(*, nullable: bool = True, default: bool = False) -> Any:
    if default:
        return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=nullable)
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable)


def _json() -> Any:
    return Field(default_factory=dict, sa_type=sa.JSON, nullable=False)


class AccountStatus:
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    DISCONNECTED = "disconnected"


class Account(SQLModel, table=True):
    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    host: str = Field(max_length=255)
    subdomain: str = Field(default="", max_length=255)
    name: str = Field(default="", max_length=255)
    status: str = Field(default=AccountStatus.ACTIVE, max_length=20)
    hook_key: str = Field(max_length=64, unique=True)
    kommo_webhook_registered: bool = Field(default=False)
    installed_at: datetime = _ts(nullable=False, default=True)
    last_activity_at: datetime | None = _ts()


class KommoToken(SQLModel, table=True):
    __tablename__ = "kommo_token"

    account_id: int = Field(primary_key=True, foreign_key="account.id", ondelete="CASCADE")
    access_token_enc: str = Field(sa_type=sa.Text)
    refresh_token_enc: str = Field(sa_type=sa.Text)
    expires_at: datetime = _ts(nullable=False)
    refreshed_at: datetime = _ts(nullable=False, default=True)


class EspConnection(SQLModel, table=True):
    __tablename__ = "esp_connection"

    account_id: int = Field(primary_key=True, foreign_key="account.id", ondelete="CASCADE")
    kind: str = Field(max_length=20)
    api_key_enc: str = Field(sa_type=sa.Text)
    label: str = Field(default="", max_length=255)
    list_id: str | None = Field(default=None, max_length=64)
    list_name: str | None = Field(default=None, max_length=255)
    dc: str | None = Field(default=None, max_length=16)
    classic: bool = Field(default=False)
    webhook_id: str | None = Field(default=None, max_length=255)  # Classic: several ids
    webhook_secret_enc: str | None = Field(default=None, sa_type=sa.Text)
    hook_key: str = Field(max_length=64, unique=True)
    connected_at: datetime = _ts(nullable=False, default=True)
    key_rejected_at: datetime | None = _ts()  # the ESP refused the key (401/403): a new one is needed


class MappingRule(SQLModel, table=True):
    __tablename__ = "mapping_rule"
    __table_args__ = (sa.UniqueConstraint("account_id", "pipeline_id", "status_id"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", ondelete="CASCADE", index=True)
    pipeline_id: int
    status_id: int
    action: str = Field(max_length=20)
    segment_id: str | None = Field(default=None, max_length=255)


class AccountOptions(SQLModel, table=True):
    __tablename__ = "account_options"

    account_id: int = Field(primary_key=True, foreign_key="account.id", ondelete="CASCADE")
    options: dict = _json()
    # Names of the stages and segments the options and mapping name, as they were when the admin
    # saved them: activity reads "moved to group “Customers” (stage Won)" without an API call.
    labels: dict = _json()


class ContactState(SQLModel, table=True):
    __tablename__ = "contact_state"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "contact_id"),
        sa.Index("ix_contact_state_account_email", "account_id", "email"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", ondelete="CASCADE")
    contact_id: int
    email: str | None = Field(default=None, max_length=320)
    esp_subscriber_id: str | None = Field(default=None, max_length=64)
    esp_status: str | None = Field(default=None, max_length=32)
    # The ESP moved this address to another one: never re-create it until Kommo's email changes.
    address_changed: bool = Field(default=False)
    segments: list = Field(default_factory=list, sa_type=sa.JSON, nullable=False)
    lead_id: int | None = None
    lead_updated_at: int | None = None  # the deciding lead's updated_at (most recent decides)
    fields_hash: str | None = Field(default=None, max_length=64)
    last_synced_at: datetime | None = _ts()
    last_error: str | None = Field(default=None, sa_type=sa.Text)


class NoteReceipt(SQLModel, table=True):
    """An ESP event already written to Kommo: a redelivered or retried event adds no note."""

    __tablename__ = "note_receipt"
    __table_args__ = (sa.UniqueConstraint("account_id", "dedupe_key"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", ondelete="CASCADE")
    dedupe_key: str = Field(max_length=255)
    created_at: datetime = _ts(nullable=False, default=True)


class InboxEvent(SQLModel, table=True):
    __tablename__ = "inbox_event"

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=20)
    account_id: int = Field(foreign_key="account.id", ondelete="CASCADE", index=True)
    dedupe_key: str = Field(max_length=255, unique=True)
    body: str = Field(sa_type=sa.Text)
    received_at: datetime = _ts(nullable=False, default=True)
    handled_at: datetime | None = _ts()


class JobState:
    PENDING = "pending"
    RUNNING = "running"
    BATCHED = "batched"  # runs inside another job of its account and kind (`job_batches.py`)
    DONE = "done"
    DEAD = "dead"


class Job(SQLModel, table=True):
    __table_args__ = (
        # A coalesce key is unique among pending jobs only: a running job may have a pending twin.
        sa.Index(
            "ux_job_pending_coalesce_key", "coalesce_key", unique=True,
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        ),
        # At most one running job per account, whatever the number of workers: the database
        # refuses a second claim, so per-account serialisation needs no lock table.
        sa.Index(
            "ux_job_running_account", "account_id", unique=True,
            sqlite_where=sa.text("state = 'running'"),
            postgresql_where=sa.text("state = 'running'"),
        ),
        sa.Index("ix_job_state_run_at", "state", "run_at"),
        sa.Index("ix_job_account_state", "account_id", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", ondelete="CASCADE")
    kind: str = Field(max_length=32)
    coalesce_key: str = Field(max_length=255)
    payload: dict = _json()
    state: str = Field(default=JobState.PENDING, max_length=10)
    run_at: datetime = _ts(nullable=False, default=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    lease_until: datetime | None = _ts()
    claimed_by: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts(nullable=False, default=True)
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


class QueueTurn(SQLModel, table=True):
    """When each account last had a job claimed: claims go to the account that waited longest,
    so one account's backlog never starves another's next job."""

    __tablename__ = "queue_turn"

    account_id: int = Field(primary_key=True, foreign_key="account.id", ondelete="CASCADE")
    last_claimed_at: datetime = _ts(nullable=False, default=True)


class Activity(SQLModel, table=True):
    __table_args__ = (sa.Index("ix_activity_account_id_desc", "account_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", ondelete="CASCADE")
    at: datetime = _ts(nullable=False, default=True)
    direction: str = Field(max_length=10)
    lead_id: int | None = None
    contact_id: int | None = None
    email: str | None = Field(default=None, max_length=320)
    summary: str = Field(sa_type=sa.Text)
    outcome: str = Field(max_length=10)
    detail: str | None = Field(default=None, sa_type=sa.Text)


class BackfillState:
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Backfill(SQLModel, table=True):
    """The initial sync of an account's existing leads: one row per run, progress per page, so a
    restarted worker resumes at `next_page` without sending finished pages again."""

    __table_args__ = (sa.Index("ix_backfill_account_started", "account_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", ondelete="CASCADE")
    state: str = Field(default=BackfillState.RUNNING, max_length=10)
    dry_run: bool = Field(default=True)
    new_subscribers_as: str = Field(default="subscribed", max_length=12)
    next_page: int = 1
    total: int = 0
    done: int = 0
    counts: dict = _json()  # skipped by reason, new_subscribers, existing, duplicates, …
    error: str | None = Field(default=None, sa_type=sa.Text)
    started_at: datetime = _ts(nullable=False, default=True)
    finished_at: datetime | None = _ts()


class RateBucket(SQLModel, table=True):
    """A token bucket shared by every process of the deployment (`ratelimit.py`)."""

    __tablename__ = "rate_bucket"

    key: str = Field(primary_key=True, max_length=255)
    tokens: float
    updated_at: float


class ConcurrencySlot(SQLModel, table=True):
    """One of the N simultaneous-call permits of a key (Mailchimp: 10 per API key), shared by
    every process; a permit whose holder died frees itself when its lease ends."""

    __tablename__ = "concurrency_slot"

    key: str = Field(primary_key=True, max_length=255)
    slot: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    holder: str | None = Field(default=None, max_length=64)
    lease_until: float | None = None


# Every stored secret, by table: `mailsync rotate-keys` re-encrypts exactly these columns.
ENCRYPTED_COLUMNS: dict[type[SQLModel], tuple[str, ...]] = {
    KommoToken: ("access_token_enc", "refresh_token_enc"),
    EspConnection: ("api_key_enc", "webhook_secret_enc"),
}


class VendorUsage(SQLModel, table=True):
    """Calls answered by a vendor for an account in one UTC hour, summed over every process
    (`usage.py` adds each process's counts every few seconds): which account spent a budget, and
    how many 429s came back."""

    __tablename__ = "vendor_usage"
    __table_args__ = (sa.Index("ix_vendor_usage_hour", "hour"),)

    account_id: int = Field(primary_key=True, foreign_key="account.id", ondelete="CASCADE",
                            sa_column_kwargs={"autoincrement": False})
    vendor: str = Field(primary_key=True, max_length=20)
    hour: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    calls: int = 0
    rate_limited: int = 0


class ActivityHourly(SQLModel, table=True):
    """Activity entries per account, UTC hour and outcome, counted in the transaction that adds
    the entry (`activity_hourly.py`): the capped `activity` table cannot cover 48 hours."""

    __tablename__ = "activity_hourly"
    __table_args__ = (sa.Index("ix_activity_hourly_hour", "hour"),)

    account_id: int = Field(primary_key=True, foreign_key="account.id", ondelete="CASCADE",
                            sa_column_kwargs={"autoincrement": False})
    hour: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    outcome: str = Field(primary_key=True, max_length=10)
    count: int = 0


class KommoCatchup(SQLModel, table=True):
    """Where an account's sweep of Kommo's event log stands (`sync/catchup.py`): the next sweep is
    due at `next_at` (claimed by moving it on); every event up to `cursor_at` was read; a window
    being read page by page runs to `window_to`. `seen` holds the ids (→ created_at) of the events
    read in the last `OVERLAP` seconds of the window, so the next window, which starts that much
    earlier, acts on none of them twice."""

    __tablename__ = "kommo_catchup"
    __table_args__ = (sa.Index("ix_kommo_catchup_next_at", "next_at"),)

    account_id: int = Field(primary_key=True, foreign_key="account.id", ondelete="CASCADE",
                            sa_column_kwargs={"autoincrement": False})
    next_at: datetime = _ts(nullable=False)
    cursor_at: datetime = _ts(nullable=False)
    window_to: datetime | None = _ts()
    next_page: int = 1
    seen: dict = _json()
    email_field_id: int | None = None  # the contacts' EMAIL field; 0: its change events are refused
    webhook_missing_since: datetime | None = _ts()  # last failed attempt to subscribe it again
    last_run_at: datetime | None = _ts()
    enqueued_total: int = 0  # reconcile jobs the sweeps enqueued, for the operator


class HookAnswer(SQLModel, table=True):
    """Our answers to Kommo's webhook deliveries per account and 10-minute bucket
    (`hook_answers.py`): Kommo disables a webhook after more than 100 bad answers in 2 hours."""

    __tablename__ = "hook_answer"
    __table_args__ = (sa.Index("ix_hook_answer_bucket", "bucket"),)

    account_id: int = Field(primary_key=True, foreign_key="account.id", ondelete="CASCADE",
                            sa_column_kwargs={"autoincrement": False})
    bucket: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    ok: int = 0
    bad: int = 0
