"""The failures an admin must see in the widget's activity log (docs/ARCHITECTURE.md §8), in plain words:
what happened and what to do. Each is written once per occurrence that needs the admin: a job that
gave up, Kommo refusing our authorization, the email platform refusing the stored key, and a
vendor held (`pauses.py`: down, asking us to slow down, refusing the account).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from backend import activity_log
from backend.models import Activity, utcnow

FAILED = "failed"


async def _write(session: AsyncSession, account_id: int, *, summary: str, detail: str,
                 direction: str = "to_esp", **ids: Any) -> None:
    await activity_log.add_activity(session, account_id, Activity(
        account_id=account_id, at=utcnow(), direction=direction, outcome=FAILED, summary=summary,
        detail=detail, **ids))


def _subject(kind: str, payload: dict[str, Any]) -> tuple[str, dict[str, int]]:
    """What the job was about, in words, and the ids the activity row carries."""
    if kind == "reconcile_lead" and isinstance(payload.get("lead_id"), int):
        return f"lead {payload['lead_id']}", {"lead_id": payload["lead_id"]}
    if kind == "reconcile_contact" and isinstance(payload.get("contact_id"), int):
        return f"contact {payload['contact_id']}", {"contact_id": payload["contact_id"]}
    if kind == "esp_event":
        return "an opt-out from the email platform", {}
    return f"a {kind.replace('_', ' ')} job", {}


async def job_gave_up(session: AsyncSession, account_id: int, *, kind: str, payload: dict[str, Any],
                      attempts: int, reason: str) -> None:
    subject, ids = _subject(kind, payload)
    direction = "to_kommo" if kind == "esp_event" else "to_esp"
    await _write(session, account_id, direction=direction,
                 summary=f"gave up syncing {subject} after {attempts} attempts",
                 detail=f"The last attempt failed: {reason}. Nothing else is affected. Once the "
                        "cause is fixed, press “Sync now” on the card to try again.", **ids)


async def kommo_authorization_lost(session: AsyncSession, account_id: int) -> None:
    await _write(session, account_id, direction="to_kommo",
                 summary="Kommo no longer accepts mailsync's authorization",
                 detail="Syncing is paused; changes wait in the queue and nothing is lost. An "
                        "administrator of this Kommo account must install the mailsync widget "
                        "again (Settings → Integrations → mailsync).")


async def esp_key_rejected(session: AsyncSession, account_id: int, *, platform: str, status: int | None,
                           key_help: str) -> None:
    """401: the key was revoked or deleted; 402/403: the platform refuses this account or key."""
    if status in (402, 403):
        what = f"{platform} refuses access with the stored API key (the account may be suspended " \
               "or the key may lack permissions)"
    else:
        what = f"{platform} no longer accepts the stored API key (it was revoked or deleted)"
    await _write(session, account_id, summary=f"{platform} rejected mailsync's API key",
                 detail=f"{what}. Syncing to {platform} waits until an administrator pastes a "
                        f"working key in the widget's settings ({platform}: {key_help}).")


def _clock(until: float) -> str:
    return f"{datetime.fromtimestamp(until, UTC):%H:%M:%S} UTC"


def _direction(service: str) -> str:
    return "to_kommo" if service == "kommo" else "to_esp"


async def vendor_slowed_us(session: AsyncSession, account_id: int, *, service: str, vendor: str,
                           until: float) -> None:
    """A 429: the vendor asked us to slow down; its calls for this account wait."""
    await _write(session, account_id, direction=_direction(service),
                 summary=f"{vendor} asked us to slow down; paused until {_clock(until)}",
                 detail=f"{vendor} answered “too many requests”. mailsync sends nothing more to "
                        f"{vendor} for this account until then and carries on by itself; changes "
                        "wait in the queue and nothing is lost.")


async def vendor_down(session: AsyncSession, account_id: int, *, service: str, vendor: str,
                      until: float) -> None:
    """The circuit opened: the vendor failed several runs in a row (5xx, timeouts)."""
    await _write(session, account_id, direction=_direction(service),
                 summary=f"{vendor} is not answering; syncing waits",
                 detail=f"{vendor} answered with server errors or timed out several times in a row. "
                        f"Changes wait in the queue and nothing is lost. mailsync checks again at "
                        f"{_clock(until)} (then less and less often, at least once a minute) and "
                        f"syncs everything that waited as soon as {vendor} answers.")


async def kommo_refused_account(session: AsyncSession, account_id: int, *, status: int | None,
                                until: float) -> None:
    """Kommo 402 (payment required) or 403 (account or integration blocked)."""
    why = ("the account's paid or trial period has ended (payment required)" if status == 402
           else "the account, or mailsync's integration, is blocked")
    await _write(session, account_id, direction="to_kommo",
                 summary=f"Kommo refuses mailsync's requests: {why}",
                 detail=f"Kommo answered {status}. Syncing is paused and changes wait in the queue; "
                        f"nothing is lost. mailsync asks Kommo again at {_clock(until)} and every "
                        "15 minutes after, and resumes by itself once Kommo accepts its requests.")
