"""The initial sync of many existing leads, against the simulators with the vendors' real limits.

    .venv/bin/python -m bench.backfill [--leads 20000] [--providers mailchimp,mailerlite]

One account, N leads in mapped stages with one contact each. A preview (dry run), then the real
run: wall time, calls per 1,000 contacts per vendor, the floor the published limits impose
(calls ÷ allowed rate, see bench/bulk.py) and the process's peak RSS (simulators included).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from backend import backfills
from backend.sync import backfill
from bench.bulk import _floor, answered_calls, limited_world
from tests.sync.world import ACCOUNT, PROPOSAL, QUALIFIED


async def measure(kind: str, n: int, workdir: Path) -> list[dict]:
    async with limited_world(kind, workdir) as world:
        for i in range(n):
            world.lead(QUALIFIED if i % 2 else PROPOSAL,
                       [world.contact(f"C {i}", emails=[f"c{i}@shop.io"])])
        return [await _run(world, kind, n, dry_run) for dry_run in (True, False)]


async def _run(world, kind: str, n: int, dry_run: bool) -> dict:
    world.router.requests.clear()
    started = time.perf_counter()
    await backfill.start(world.resources, ACCOUNT, dry_run=dry_run, new_subscribers_as="subscribed")
    await world.drain(within=7200)
    elapsed = time.perf_counter() - started
    async with world.resources.sessions() as session:
        run = await backfills.latest_backfill(session, ACCOUNT)
    answered, calls = answered_calls(world)
    return {"phase": "preview" if dry_run else "sync", "state": run.state, "done": run.done,
            "new": run.counts["new_subscribers"], "seconds": elapsed, "calls": calls,
            "floor": _floor(answered, kind, calls),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--providers", default="mailchimp,mailerlite")
    args = parser.parse_args()
    print("| provider | phase | leads | state | new | seconds | floor s | Kommo calls / 1,000 "
          "| ESP calls / 1,000 | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.providers.split(","):
            for r in asyncio.run(measure(kind, args.leads, Path(tmp))):
                per = 1000 / args.leads
                print(f"| {kind} | {r['phase']} | {r['done']} | {r['state']} | {r['new']} | "
                      f"{r['seconds']:.1f} | {r['floor']:.1f} | {r['calls']['kommo'] * per:.1f} | "
                      f"{r['calls'][kind] * per:.1f} | {r['rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
