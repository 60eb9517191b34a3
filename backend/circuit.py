"""Vendor holds: per account and vendor, "send nothing to this vendor for this account until T",
shared by every process through the database (docs/ARCHITECTURE.md §8).

Three reasons, each one row of `rate_bucket` (a hold has the shape of a bucket with no tokens
until a time, so it needs no table of its own), keyed `hold:{account}:{service}:{reason}`:
- `outage`, the circuit: 5xx answers and timeouts. `tokens` counts the job runs in a row that
  found the vendor down (a run more than `STRIKE_WINDOW` after the last one starts over);
  `updated_at` is the last strike's time, and from the `THRESHOLD`-th strike on, when the circuit
  is open, the time of the next probe: 2 s, doubling to 60 s.
- `rate`: the vendor answered 429. `tokens` is the pause in seconds, `updated_at` its end.
- `refused`: Kommo answered 402 (unpaid) or 403 (blocked). `tokens` is the status; a probe
  every 15 minutes.
`service` is the name `http.send` counts calls under ("kommo", "mailerlite", "mailchimp").

While a job runs, `watching()` collects what each vendor's answers said about its health
(`observe`, called by `http.send`): answering (any status below 500 but 429) or down (5xx,
timeout, unreachable). The worker turns that into strikes or a cleared hold (`pauses.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import case, delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.db import insert_for
from backend.models import RateBucket

OUTAGE, RATE, REFUSED = "outage", "rate", "refused"
THRESHOLD = 3  # job runs in a row that found the vendor down open the circuit
STRIKE_WINDOW = 30.0  # seconds: strikes further apart than this are not "in a row"
PROBE_FIRST, PROBE_CAP = 2.0, 60.0  # seconds between probes of an open circuit
REFUSED_PROBE = 900.0  # seconds between probes of a vendor that refuses the account
NEUTRAL = frozenset({401, 402, 403, 429})


@dataclass(frozen=True)
class Hold:
    service: str
    reason: str
    until: float  # epoch seconds (for an outage below the threshold: the last strike)
    value: float  # strikes, pause seconds or HTTP status, by reason

    @property
    def engaged(self) -> bool:
        """A pause in force or awaiting its probe (an outage counts once the circuit is open)."""
        return self.reason != OUTAGE or self.value >= THRESHOLD

    def holds_at(self, now: float) -> bool:
        return self.engaged and self.until > now


def _prefix(account_id: int, service: str = "") -> str:
    return f"hold:{account_id}:{service + ':' if service else ''}"


async def holds(session: AsyncSession, account_id: int) -> list[Hold]:
    """Every hold row of the account, engaged or not."""
    rows = (await session.exec(select(RateBucket).where(
        col(RateBucket.key).startswith(_prefix(account_id))))).all()
    found = []
    for row in rows:
        _, _, service, reason = row.key.split(":", 3)
        found.append(Hold(service, reason, row.updated_at, row.tokens))
    return found


async def in_force(session: AsyncSession, now: float) -> dict[int, list[Hold]]:
    """Account → its holds in force at `now` (for the operator's dashboard)."""
    rows = (await session.exec(select(RateBucket).where(
        col(RateBucket.key).startswith("hold:"), col(RateBucket.updated_at) > now))).all()
    found: dict[int, list[Hold]] = {}
    for row in rows:
        _, account, service, reason = row.key.split(":", 3)
        hold = Hold(service, reason, row.updated_at, row.tokens)
        if hold.holds_at(now):
            found.setdefault(int(account), []).append(hold)
    return found


def probe_delay(strikes: float) -> float:
    return min(PROBE_CAP, PROBE_FIRST * 2 ** max(0.0, strikes - THRESHOLD))


async def strike(session: AsyncSession, account_id: int, service: str, now: float,
                 previous: Hold | None) -> Hold:
    """A run found the vendor down; `previous` is the outage row read before the run. Only one
    job of an account runs at a time, so no other process writes this row meanwhile."""
    in_a_row = previous is not None and (previous.engaged or now - previous.until <= STRIKE_WINDOW)
    strikes = (previous.value if in_a_row and previous else 0) + 1
    until = now + probe_delay(strikes) if strikes >= THRESHOLD else now
    await _put(session, account_id, service, OUTAGE, strikes, until)
    return Hold(service, OUTAGE, until, strikes)


async def pause(session: AsyncSession, account_id: int, service: str, reason: str, *,
                until: float, value: float) -> None:
    """A `rate` or `refused` hold until `until` (an earlier end already stored is pushed back)."""
    await _put(session, account_id, service, reason, value, until, keep_later=True)


async def clear(session: AsyncSession, account_id: int, service: str, reasons: tuple[str, ...]) -> None:
    """The vendor answered again: these holds of the account are gone. (A `rate` row outlives
    its pause, so the next 429 soon after is told to the admin as the same episode.)"""
    prefix = _prefix(account_id, service)
    await session.exec(delete(RateBucket).where(
        col(RateBucket.key).in_([f"{prefix}{reason}" for reason in reasons])))


async def _put(session: AsyncSession, account_id: int, service: str, reason: str, value: float,
               until: float, *, keep_later: bool = False) -> None:
    table = RateBucket.__table__
    statement = insert_for(session)(table).values(
        key=f"{_prefix(account_id, service)}{reason}", tokens=value, updated_at=until)
    end = statement.excluded.updated_at
    if keep_later:
        end = case((table.c.updated_at > end, table.c.updated_at), else_=end)
    await session.exec(statement.on_conflict_do_update(
        index_elements=["key"], set_={"tokens": statement.excluded.tokens, "updated_at": end}))


# --- what a job run saw ------------------------------------------------------------------------

_SEEN: ContextVar[dict[str, bool] | None] = ContextVar("vendor_health", default=None)


@contextlib.contextmanager
def watching() -> Iterator[dict[str, bool]]:
    """Service → answering (True) or down (False), as the run's last answer from it said. Tasks
    the run starts share the dict (they copy the context, which holds the same object)."""
    seen: dict[str, bool] = {}
    token = _SEEN.set(seen)
    try:
        yield seen
    finally:
        _SEEN.reset(token)


def observe(service: str, status: int | None) -> None:
    """One answer (`status`) or a timeout / unreachable vendor (None). A 429 and a refusal
    (401, 402, 403) say nothing about whether the vendor is up; they have holds of their own."""
    seen = _SEEN.get()
    if seen is None or status in NEUTRAL:
        return
    seen[service] = status is not None and status < 500
