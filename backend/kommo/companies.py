"""Company names for contacts. Kommo embeds only a company's id in a contact, so the names are read
in one batched call and kept per account for `TTL_SECONDS` in this process: a stage change of a
contact whose company we already know costs no extra call, and a renamed company shows up at the
next sync after the entry expires."""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from backend.kommo import types

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from backend.kommo.client import KommoClient

TTL_SECONDS = 600.0
# Per engine, so two deployments in one process (as tests build them) never share names.
_KNOWN: weakref.WeakKeyDictionary[AsyncEngine, dict[tuple[int, int], tuple[float, str]]] = \
    weakref.WeakKeyDictionary()


async def names_of(client: KommoClient, engine: AsyncEngine, account_id: int,
                   contacts: Iterable[types.Contact]) -> dict[int, str | None]:
    """Contact id → its (first) company's name, None for a contact without a company."""
    firsts = {c.id: c.companies[0] for c in contacts if c.companies}
    known = _KNOWN.setdefault(engine, {})
    now = time.monotonic()
    for company in firsts.values():
        if company.name:  # Kommo gave the name with the reference: nothing to read
            known[(account_id, company.id)] = (now + TTL_SECONDS, company.name)
    missing = {c.id for c in firsts.values() if known.get((account_id, c.id), (0.0, ""))[0] <= now}
    if missing:
        found = {c.id: c.name for c in await client.companies(missing)}
        for company_id in missing:  # a deleted company is remembered as nameless, not re-read
            known[(account_id, company_id)] = (now + TTL_SECONDS, found.get(company_id, ""))
    return {cid: _name(known.get((account_id, company.id))) for cid, company in firsts.items()}


def _name(entry: tuple[float, str] | None) -> str | None:
    return entry[1] or None if entry else None
