"""A bulk move of one account, against the simulators with the vendors' real limits.

    .venv/bin/python -m bench.bulk [--leads 1000] [--providers mailerlite,mailchimp]

One account; N leads with contacts whose reconcile jobs arrive at once (what Kommo's batched
webhooks store), then all N moved to another stage at once. For each phase: the time until every
contact is in its stage's segment, and the calls to each vendor. The floor is the time the
vendors' published limits alone impose on the calls that were needed (Kommo 7 requests/s,
MailerLite 120 requests and 5 imports per minute, Mailchimp 10 simultaneous connections).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from backend import db, jobs, migrations
from backend.sync.work import ReconcileLead
from tests.sync.world import ACCOUNT, HOSTS, PROPOSAL, QUALIFIED, open_world

MAPPING = {QUALIFIED: "qualified", PROPOSAL: "proposal"}


@contextlib.asynccontextmanager
async def limited_world(kind: str, workdir: Path) -> AsyncIterator[Any]:
    """The simulators with the vendors' real limits, mailsync on a fresh SQLite file, mapped."""
    url = f"sqlite+aiosqlite:///{workdir}/{kind}.db"
    engine = db.create_engine(url)
    await migrations.upgrade(engine)
    try:
        async for world in open_world(kind, url, engine, real_limits=True):
            await world.map(MAPPING)
            yield world
    finally:
        await engine.dispose()


async def measure(kind: str, n: int, workdir: Path) -> list[dict]:
    async with limited_world(kind, workdir) as world:
        leads = [world.lead(QUALIFIED, [world.contact(f"C {i}", emails=[f"c{i}@shop.io"])])
                 for i in range(n)]
        phases = [await _phase(world, "first sync", leads, "qualified")]
        for lead in leads:
            world.move(lead, PROPOSAL)
        phases.append(await _phase(world, "bulk move", leads, "proposal"))
    return phases


async def _phase(world, name: str, leads: list[int], segment: str) -> dict:
    world.router.requests.clear()
    started = time.perf_counter()
    async with world.resources.sessions() as session, session.begin():
        await jobs.enqueue(session, [ReconcileLead(lead_id=lead).to_spec(ACCOUNT) for lead in leads])
    await world.drain(within=1800)
    elapsed = time.perf_counter() - started
    converged = sum(1 for i in range(len(leads)) if world.subscriber(f"c{i}@shop.io")[1] == {segment})
    answered, calls = answered_calls(world)
    refused = len(world.router.requests) - len(answered)
    return {"phase": name, "converged": converged, "seconds": elapsed, "calls": calls,
            "refused": refused, "floor": _floor(answered, world.kind, calls)}


def answered_calls(world) -> tuple[list, dict[str, int]]:
    """The requests the simulators answered (a refused 429 is not one), and how many per vendor."""
    answered = [r for r in world.router.requests if r.extensions.get("answered") != 429]
    hosts = Counter(r.url.host for r in answered)
    return answered, {"kommo": hosts[HOSTS["kommo"]], world.kind: hosts[HOSTS[world.kind]]}


def _floor(answered, kind: str, calls: dict[str, int]) -> float:
    """Calls needed ÷ allowed rate, for the vendor that allows the fewest (the answered calls
    are the needed ones: a refused 429 is not)."""
    kommo = calls["kommo"] / 7
    if kind == "mailerlite":
        imports = sum(1 for r in answered if r.url.path.endswith("/batch")
                      and b'"api/subscribers"' in r.content and b'"DELETE"' not in r.content
                      and b'"GET"' not in r.content)
        esp = max(calls["mailerlite"] / 2, imports * 60 / 5)
    else:
        esp = 0.0  # Mailchimp limits simultaneous connections, not a rate: no floor of its own
    return max(kommo, esp)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--providers", default="mailerlite,mailchimp")
    args = parser.parse_args()
    print("| provider | phase | leads | converged | seconds | floor s | of floor speed | Kommo calls "
          "| ESP calls | refused (429) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.providers.split(","):
            for p in asyncio.run(measure(kind, args.leads, Path(tmp))):
                share = f"{p['floor'] / p['seconds']:.0%}" if p["floor"] >= 1 else "n/a"
                print(f"| {kind} | {p['phase']} | {args.leads} | {p['converged']} | {p['seconds']:.1f} | "
                      f"{p['floor']:.1f} | {share} | {p['calls']['kommo']} | {p['calls'][kind]} | "
                      f"{p['refused']} |", flush=True)


if __name__ == "__main__":
    main()
