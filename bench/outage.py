"""Outages and 429s (issue 13): how soon the sync recovers from a vendor outage, and how many calls
reach Kommo while it asks us to wait.

    .venv/bin/python -m bench.outage [--engines sqlite,postgresql] [--leads 100] [--outage 20]

One process: the simulated Kommo and MailerLite enforcing their published limits (7 requests/s;
120 requests and 5 imports a minute), mailsync's resources and workers with the production
budgets, backoffs and probes — on SQLite one worker, on PostgreSQL two workers on two engines
(as two processes share the database). Changes are queued as the webhook route queues them.

outage: every lead's contact is first synced to the group of its stage. Then MailerLite answers
503 for `--outage` seconds while every lead moves to the next stage, the moves spread evenly over
the outage. Measured: the seconds from MailerLite's recovery until every contact is in its new
group, the most attempts any job was charged, the 503s MailerLite gave.
429: Kommo answers 429 with `retry_after: 3` for 5 s while 25 stage changes arrive, spread over
those 5 s. Measured: the calls that reached Kommo inside them.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx2
from sqlmodel import select

from backend import db, jobs, migrations
from backend.models import Job
from backend.resources import open_resources
from backend.sync.handlers import BATCH_HANDLERS, HANDLERS
from backend.sync.work import ReconcileLead
from backend.worker import Worker
from bench.common import database, pg_available
from tests.sync.world import ACCOUNT, HOSTS, PROPOSAL, QUALIFIED, Faulty, open_world

POLL = 0.1  # seconds between looks at MailerLite's state (in memory, no call)


async def queue(world, lead_ids: list[int]) -> None:
    async with world.resources.sessions() as session, session.begin():
        await jobs.enqueue(session, [ReconcileLead(lead).to_spec(ACCOUNT) for lead in lead_ids])


async def wait_for(check, within: float) -> float:
    """Seconds until `check()` holds (polled; the bench's own deadline)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise RuntimeError(f"not reached within {within} s")
        await asyncio.sleep(POLL)
    return time.monotonic() - started


class Running:
    """A world whose vendors fail on demand, and its workers."""

    def __init__(self, world, extra_resources: list) -> None:
        self.world = world
        for vendor in ("kommo", "mailerlite"):
            world.router.transports[HOSTS[vendor]] = Faulty(world.router.transports[HOSTS[vendor]])
        self.stop = asyncio.Event()
        self.tasks = [asyncio.create_task(Worker(r, concurrency=4, handlers=HANDLERS,
                                                 batch_handlers=BATCH_HANDLERS).run(self.stop))
                      for r in [world.resources, *extra_resources]]

    def vendor(self, name: str) -> Faulty:
        return self.world.router.transports[HOSTS[name]]

    def leads(self, n: int, stage: int) -> list[tuple[int, str]]:
        made = []
        for i in range(n):
            email = f"person{i}@shop.io"
            contact = self.world.contact(f"Person {i}", emails=(email,))
            made.append((self.world.lead(stage, [contact]), email))
        return made

    def in_group(self, made, segment: str) -> bool:
        return all(self.world.subscriber(email)[1] == {segment} for _, email in made)

    async def max_attempts(self) -> int:
        async with self.world.resources.sessions() as session:
            return max((await session.exec(select(Job.attempts))).all(), default=0)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)


async def outage(run: Running, leads: int, seconds: float) -> dict:
    made = run.leads(leads, QUALIFIED)
    await queue(run.world, [lead for lead, _ in made])
    await wait_for(lambda: run.in_group(made, "qualified"), 300)
    mailerlite = run.vendor("mailerlite")
    mailerlite.fault = lambda request: httpx2.Response(503, json={"message": "Service Unavailable"})
    started = time.monotonic()
    for n, (lead, _) in enumerate(made):  # the moves arrive spread over the outage
        await asyncio.sleep(max(0.0, started + n * seconds / leads - time.monotonic()))
        run.world.move(lead, PROPOSAL)
        await queue(run.world, [lead])
    await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))
    mailerlite.fault = lambda request: None
    recovered = time.monotonic()
    took = await wait_for(lambda: run.in_group(made, "proposal"), 600)
    return {"after": took, "attempts": await run.max_attempts(),
            "503s": sum(1 for at, status in mailerlite.arrivals if status == 503),
            "calls_during": sum(1 for at, _ in mailerlite.arrivals if started <= at < recovered)}


async def too_many(run: Running, leads: int = 25, window: float = 5.0) -> dict:
    made = run.leads(leads, PROPOSAL)
    kommo = run.vendor("kommo")
    start = time.monotonic()
    end = start + window
    kommo.fault = lambda request: httpx2.Response(429, json={
        "title": "Too Many Requests", "status": 429, "retry_after": 3,
        "detail": "You have sent too many requests"}) if time.monotonic() < end else None
    for n, (lead, _) in enumerate(made):  # the changes arrive spread over the window
        await asyncio.sleep(max(0.0, start + n * window / leads - time.monotonic()))
        await queue(run.world, [lead])
    await wait_for(lambda: run.in_group(made, "proposal"), 300)
    after = time.monotonic() - start
    inside = [at - start for at, _ in kommo.arrivals if start <= at < end]
    return {"inside": len(inside), "at": [round(t, 1) for t in inside], "synced_after": after}


async def scenario(kind: str, url: str, which: str, leads: int, seconds: float) -> dict:
    engines = [db.create_engine(url) for _ in range(2 if kind == "postgresql" else 1)]
    await migrations.upgrade(engines[0])
    try:
        async for world in open_world("mailerlite", url, engines[0],
                                      segments=("qualified", "proposal"), real_limits=True):
            await world.map({QUALIFIED: "qualified", PROPOSAL: "proposal"})
            extra = [await _resources(world, engine) for engine in engines[1:]]
            run = Running(world, [r for r, _ in extra])
            try:
                return await (outage(run, leads, seconds) if which == "outage" else too_many(run))
            finally:
                await run.close()
                for _, opened in extra:
                    await opened.__aexit__(None, None, None)
    finally:
        for engine in engines:
            await engine.dispose()
    raise RuntimeError("no world")


async def _resources(world, engine):
    opened = open_resources(world.resources.settings, engine=engine, http_client=world.resources.http)
    return await opened.__aenter__(), opened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--leads", type=int, default=100)
    parser.add_argument("--outage", type=float, default=20.0)
    parser.add_argument("--scenarios", default="outage,429")
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e != "postgresql" or pg_available()]
    print("| engine | scenario | result |\n|---|---|---|")
    for kind in engines:
        for which in args.scenarios.split(","):
            with tempfile.TemporaryDirectory() as tmp, database(kind, Path(tmp)) as url:
                result = asyncio.run(scenario(kind, url, which, args.leads, args.outage))
            print(f"| {kind} | {which} | {_describe(which, result, args)} |", flush=True)


def _describe(which: str, r: dict, args) -> str:
    if which == "outage":
        return (f"{args.leads} moves during a {args.outage:.0f} s outage: all in their group "
                f"{r['after']:.1f} s after recovery; max attempts {r['attempts']}; "
                f"{r['calls_during']} MailerLite calls during the outage")
    return (f"25 changes during 5 s of 429s (retry_after 3): {r['inside']} Kommo calls inside "
            f"them (at {r['at']} s); all synced {r['synced_after']:.1f} s after the first change")


if __name__ == "__main__":
    main()
