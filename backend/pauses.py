"""What the worker does about vendor holds (`circuit.py`) around one job run.

Before the run: an account held by any vendor runs nothing; the claimed job goes back without
counting the attempt, and the account's other pending jobs wait as long (`blocked`, `wait`).
After the run (`settle`, one transaction): a vendor found down strikes its circuit (the third run
in a row opens it and tells the admin); a 429 pauses the vendor for the time it gave; Kommo's
402/403 holds Kommo for 15 minutes at a time; a vendor found answering again clears its outage
and refusal holds and brings the account's waiting jobs forward. Jobs that failed because of a
vendor now held wait for it without counting the attempt (`waits_for`). So during an outage one
job run per account probes the vendor, at growing intervals, and none is charged; when the
vendor answers, everything that waited runs at once (in one batch where the kind batches).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from backend import alerts, circuit, job_batches, jobs, repository
from backend.circuit import OUTAGE, RATE, REFUSED, Hold
from backend.errors import (
    UpstreamError,
    UpstreamForbidden,
    UpstreamRateLimited,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from backend.jobs import ClaimedJob
from backend.models import AccountStatus

KOMMO = "kommo"
DEFAULT_PAUSE = 5.0  # seconds, for a 429 that said nothing and whose client set no default
QUIET = 600.0  # seconds: a 429 this long after the previous pause ended is told to the admin again

Label = Callable[[str], str]  # service → the vendor's name in the admin's words


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def blocked(holds: list[Hold], now: float) -> float | None:
    """Until when the account's work waits, if a hold is in force."""
    return max((h.until for h in holds if h.holds_at(now)), default=None)


async def wait(session: AsyncSession, account_id: int, job_ids: list[int], until: float) -> None:
    """These claimed jobs, and the account's pending ones, wait until `until`; no attempt counts."""
    await jobs.put_back(session, job_ids, at(until))
    await job_batches.defer_account(session, account_id, at(until))


async def hold_failed(session: AsyncSession, account_id: int, failed: list[ClaimedJob],
                      failures: Mapping[int, Exception], settled: Settled) -> list[ClaimedJob]:
    """Failed jobs whose vendor is now held wait for it, uncharged, and so do the account's
    pending jobs; returns the failed jobs left to the usual retry or end."""
    waiting: dict[float, list[int]] = {}
    rest = []
    for job in failed:
        until = settled.waits_for(failures[job.id])
        if until is None:
            rest.append(job)
        else:
            waiting.setdefault(until, []).append(job.id)
    for until, job_ids in waiting.items():
        await jobs.put_back(session, job_ids, at(until))
    if settled.in_force:
        await job_batches.defer_account(session, account_id, at(max(settled.in_force.values())))
    return rest


@dataclass
class Settled:
    in_force: dict[str, float] = field(default_factory=dict)  # service → held until (epoch)
    account_active: bool = True

    def waits_for(self, exc: Exception) -> float | None:
        """When a job that failed with `exc` runs again, uncharged: its vendor is held, or the
        account waits for a reinstall (claims skip it until then). None: an ordinary failure."""
        if not isinstance(exc, UpstreamError):
            return None
        if isinstance(exc, UpstreamUnauthorized) and exc.service == KOMMO and not self.account_active:
            return time.time()
        if exc.service in self.in_force and isinstance(
                exc, UpstreamUnavailable | UpstreamRateLimited | UpstreamForbidden):
            return self.in_force[exc.service]
        return None


async def settle(session: AsyncSession, account_id: int, seen: Mapping[str, bool],
                 failures: Mapping[int, Exception], before: list[Hold], label: Label) -> Settled:
    """Record what the run saw of each vendor; returns the holds in force after it."""
    now, settled = time.time(), Settled()
    resumed = False
    for service, answering in sorted(seen.items()):
        if answering:
            resumed |= await _answered(session, account_id, service, before)
        else:
            await _down(session, account_id, service, now, before, label, settled)
    slowed: dict[str, float] = {}  # service → the longest pause it asked for
    for exc in failures.values():
        if isinstance(exc, UpstreamRateLimited) and exc.service:
            seconds = exc.retry_after if exc.retry_after is not None else DEFAULT_PAUSE
            slowed[exc.service] = max(seconds, slowed.get(exc.service, 0.0))
    for service, seconds in sorted(slowed.items()):
        await _slowed(session, account_id, service, seconds, now, before, label, settled)
    refusal = next((e for e in failures.values()
                    if isinstance(e, UpstreamForbidden) and e.service == KOMMO), None)
    # Refused after answering in the same run: one entity is refused, not the account.
    if refusal is not None and not seen.get(KOMMO):
        await _refused(session, account_id, refusal, now, before, settled)
    if any(isinstance(e, UpstreamUnauthorized) and e.service == KOMMO for e in failures.values()):
        account = await repository.get_account(session, account_id)
        settled.account_active = account is not None and account.status == AccountStatus.ACTIVE
    if resumed and not settled.in_force:
        await jobs.run_now(session, account_id)
    return settled


def _find(before: list[Hold], service: str, reason: str) -> Hold | None:
    return next((h for h in before if h.service == service and h.reason == reason), None)


async def _answered(session: AsyncSession, account_id: int, service: str, before: list[Hold]) -> bool:
    """The vendor answers: its outage and refusal holds go. True when one was engaged."""
    mine = [h for h in before if h.service == service and h.reason in (OUTAGE, REFUSED)]
    if mine:
        await circuit.clear(session, account_id, service, (OUTAGE, REFUSED))
    return any(h.engaged for h in mine)


async def _down(session: AsyncSession, account_id: int, service: str, now: float,
                before: list[Hold], label: Label, settled: Settled) -> None:
    hold = await circuit.strike(session, account_id, service, now, _find(before, service, OUTAGE))
    if not hold.engaged:
        return
    settled.in_force[service] = max(hold.until, settled.in_force.get(service, 0.0))
    if hold.value == circuit.THRESHOLD:  # it opened just now
        await alerts.vendor_down(session, account_id, service=service, vendor=label(service),
                                 until=hold.until)


async def _slowed(session: AsyncSession, account_id: int, service: str, seconds: float, now: float,
                  before: list[Hold], label: Label, settled: Settled) -> None:
    """A 429 (or a pause another process set): one activity entry per episode of pauses."""
    until = max(now + seconds, settled.in_force.get(service, 0.0))
    if until <= now:
        return
    settled.in_force[service] = until
    previous = _find(before, service, RATE)
    await circuit.pause(session, account_id, service, RATE, until=until, value=seconds)
    if previous is None or previous.until < now - QUIET:
        await alerts.vendor_slowed_us(session, account_id, service=service, vendor=label(service),
                                      until=until)


async def _refused(session: AsyncSession, account_id: int, exc: UpstreamForbidden, now: float,
                   before: list[Hold], settled: Settled) -> None:
    until = now + circuit.REFUSED_PROBE
    settled.in_force[KOMMO] = max(until, settled.in_force.get(KOMMO, 0.0))
    await circuit.pause(session, account_id, KOMMO, REFUSED, until=until, value=exc.status or 0)
    if _find(before, KOMMO, REFUSED) is None:
        await alerts.kommo_refused_account(session, account_id, status=exc.status, until=until)
