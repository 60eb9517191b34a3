"""Outbound calls per event, counted at the simulators (requests that reached each one).

    .venv/bin/python -m bench.calls

Scenarios, on both providers: a stage change of an already-synced contact, the first sync of a
new contact (in a process whose field cache is warm, and the very first one), the same two for a
contact with a company (its name costs one Kommo read the first time), and a reverse unsubscribe
(ESP → Kommo). The public tutorial flow this product replaces costs 7+ calls per
stage change (GET lead, GET contact, POST subscriber, GET groups, DELETE per group, POST group,
POST note).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path

from backend import db, migrations
from backend.providers.base import EspEvent, EventKind
from backend.sync import reconcile, reverse
from tests.sync.world import ACCOUNT, HOSTS, LOST, PROPOSAL, QUALIFIED, WON, open_world

MAPPING = {QUALIFIED: "qualified", PROPOSAL: "proposal", WON: "won", LOST: "remove"}


def fast_budgets() -> None:
    """The budgets only pace calls; they do not change how many are made."""
    import backend.kommo.budget as kommo_budget
    import backend.providers.mailerlite.api as mailerlite_api

    kommo_budget.RATE = kommo_budget.BURST = 10_000.0
    mailerlite_api.RATE_PER_SECOND, mailerlite_api.BURST = 10_000.0, 10_000


async def measure(kind: str, workdir: Path) -> dict[str, Counter]:
    url = f"sqlite+aiosqlite:///{workdir}/{kind}.db"
    engine = db.create_engine(url)
    await migrations.upgrade(engine)
    results: dict[str, Counter] = {}
    try:
        async for world in open_world(kind, url, engine):
            await world.map(MAPPING)
            await _scenarios(world, kind, results)
    finally:
        await engine.dispose()
    return results


async def counted(world, action) -> Counter:
    """Requests that reached each simulator while `action` (a coroutine) ran."""
    world.router.requests.clear()
    await action
    return Counter(r.url.host for r in world.router.requests)


async def _scenarios(world, kind: str, results: dict[str, Counter]) -> None:
    resources = world.resources
    first = world.lead(QUALIFIED, [world.contact(emails=["first@shop.io"])])
    results["first sync (cold process)"] = await counted(
        world, reconcile.reconcile_lead(resources, ACCOUNT, first))
    lead = world.lead(QUALIFIED, [world.contact(emails=["jane@shop.io"])])
    results["first sync of a new contact"] = await counted(
        world, reconcile.reconcile_lead(resources, ACCOUNT, lead))
    world.move(lead, PROPOSAL)
    results["stage change, synced contact"] = await counted(
        world, reconcile.reconcile_lead(resources, ACCOUNT, lead))
    company = world.kommo.store.add_contact(ACCOUNT, "Acme Corp", kind="company").id
    with_company = world.lead(QUALIFIED, [world.contact(emails=["ann@acme.io"], company_id=company)])
    results["first sync, contact with a company"] = await counted(
        world, reconcile.reconcile_lead(resources, ACCOUNT, with_company))
    world.move(with_company, PROPOSAL)
    results["stage change, synced contact with a company"] = await counted(
        world, reconcile.reconcile_lead(resources, ACCOUNT, with_company))
    event = EspEvent(source=kind, kind=EventKind.UNSUBSCRIBED, email="jane@shop.io",
                     dedupe_key="bench-1", raw_type="unsubscribe")
    results["reverse unsubscribe (1 lead)"] = await counted(
        world, reverse.apply_esp_event(resources, ACCOUNT, event))


def main() -> None:
    fast_budgets()
    with tempfile.TemporaryDirectory() as tmp:
        table = {kind: asyncio.run(measure(kind, Path(tmp))) for kind in ("mailerlite", "mailchimp")}
    print("| event | provider | Kommo calls | ESP calls | total |")
    print("|---|---|---|---|---|")
    for kind, results in table.items():
        for name, counts in results.items():
            kommo, esp = counts[HOSTS["kommo"]], counts[HOSTS[kind]]
            print(f"| {name} | {kind} | {kommo} | {esp} | {kommo + esp} |")
    print("| stage change, tutorial flow (for comparison) | MailerLite | 2 | 5+ | 7+ |")


if __name__ == "__main__":
    main()
