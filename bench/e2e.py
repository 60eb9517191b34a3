"""End-to-end latency: a stage change in Kommo → the contact in the right Mailchimp tag.

    .venv/bin/python -m bench.e2e [--rate 50] [--seconds 20]

Real processes on 127.0.0.1: the simulated Kommo and Mailchimp (every Mailchimp call takes an
extra 50 ms), mailsync on SQLite (one process, embedded worker) and on PostgreSQL (one web and
two worker processes). After a warm-up that syncs every contact once, stage changes are made at
a fixed rate (open loop) across 20 accounts with 10 leads each; Kommo fires each one as a real
webhook. An event's latency runs from the
moment the stage was changed to the end of the first job for that lead that started after the
webhook was acknowledged (that job read the new stage and wrote it to Mailchimp).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2

from bench.common import database, pg_available
from tests.e2e.stack import job_rows, queue_counts, running_stack

STAGES = (67548607, 67548619, 142, 143)


def drive(stack, rate: float, seconds: float) -> list[tuple[int, float, float]]:
    """(lead, changed_at, acknowledged_at) per event, sent at `rate` per second."""
    leads = [(spec["account_id"], lead) for spec in stack.seed["accounts"] for lead, _, _ in spec["leads"]]
    rng, events, lock = random.Random(50), [], threading.Lock()
    local = threading.local()

    def one(account_id: int, lead_id: int, stage: int) -> None:
        client = getattr(local, "client", None) or setattr(local, "client", httpx2.Client(timeout=30)) \
            or local.client
        changed = time.time()
        stack.move(account_id, lead_id, stage, client)
        with lock:
            events.append((lead_id, changed, time.time()))

    start, total = time.monotonic(), int(rate * seconds)
    with ThreadPoolExecutor(32) as pool:
        for n in range(total):
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
            pool.submit(one, *rng.choice(leads), rng.choice(STAGES))
    return events


def warm_up(stack, url: str) -> None:
    """Every lead's contact synced once first: the measured events are stage changes of
    contacts mailsync already knows (first syncs cost more calls, see bench/calls.py)."""
    with httpx2.Client(timeout=30) as client, ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda spec_lead: stack.move(*spec_lead, STAGES[1], client),
                      [(spec["account_id"], lead) for spec in stack.seed["accounts"]
                       for lead, _, _ in spec["leads"]]))
    wait_drained(url)


def wait_drained(url: str, within: float = 300) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        counts = asyncio.run(queue_counts(url))
        if not counts.get("pending") and not counts.get("running"):
            return
        time.sleep(0.5)
    raise RuntimeError("the queue did not drain")


def job_spans(logs: Path) -> dict[int, dict[str, float]]:
    spans: dict[int, dict[str, float]] = defaultdict(dict)
    for log in [*logs.glob("worker*.log"), logs / "web.log"]:
        for line in log.read_text().splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if "job_id" in entry and entry.get("msg", "").startswith("job "):
                edge = "end" if entry["msg"].endswith("ended") else "start"
                for job_id in [entry["job_id"], *entry.get("followers", [])]:  # a batch's jobs share it
                    spans[job_id][edge] = entry["at"]
    return spans


def latencies(events, spans, rows) -> list[float]:
    by_lead = defaultdict(list)
    for row in rows:
        span = spans.get(row.id, {})
        if row.kind == "reconcile_lead" and "start" in span and "end" in span:
            by_lead[row.payload["lead_id"]].append((span["start"], span["end"]))
    result = []
    for lead, changed, acknowledged in events:
        ends = [end for start, end in sorted(by_lead[lead]) if start >= acknowledged]
        if ends:
            result.append(ends[0] - changed)
    return result


def run(kind: str, workdir: Path, args) -> dict[str, float]:
    with database(kind, workdir) as url:
        options = {"embedded_worker": True, "workers": 0} if kind == "sqlite" else {"workers": 2}
        with running_stack(url, workdir, accounts=20, leads=10, esp_latency_ms=50,
                           **options) as stack:
            warm_up(stack, url)
            events = drive(stack, args.rate, args.seconds)
            wait_drained(url)
            rows = asyncio.run(job_rows(url))
        spans = job_spans(workdir)
        found = sorted(latencies(events, spans, rows))
    quantile = statistics.quantiles(found, n=100)
    durations = [s["end"] - s["start"] for s in spans.values() if {"start", "end"} <= set(s)]
    return {"events": len(events), "measured": len(found), "p50": quantile[49] * 1000,
            "p99": quantile[98] * 1000, "jobs": len(rows),
            "job_p50": statistics.median(durations) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    results = {}
    kinds = [k for k in args.engines.split(",") if k == "sqlite" or pg_available()]
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            results[kind] = run(kind, Path(tmp), args)
    print(f"machine: {platform.machine()}, CPython {platform.python_version()}; {args.rate:g} "
          f"events/s for {args.seconds:g} s; Mailchimp +50 ms per call")
    print("| engine | events | measured | jobs run | job p50 ms | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for kind, r in results.items():
        print(f"| {kind} | {r['events']} | {r['measured']} | {r['jobs']} | {r['job_p50']:.0f} | "
              f"{r['p50']:.0f} | {r['p99']:.0f} |")


if __name__ == "__main__":
    main()
