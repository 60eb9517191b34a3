"""Crash tests: `kill -9` of the web and worker processes at random points of a run — on SQLite
(one `serve` with its embedded worker) and on PostgreSQL (one web `serve --no-worker`, two
workers). Kommo and Mailchimp send again whatever was not answered with 200, as they do.

Afterwards: the queue drained with no dead job; every lead's Mailchimp tags match its final
stage (nothing lost); every opt-out event produced exactly one note on its contact's lead (none
lost, none twice); and no tag was added to a contact more often than its lead moved into that
stage plus the number of times one of the lead's jobs ran again (after a kill, or a retry) — a
kill may repeat a tag write whose outcome it kept from being recorded, and Mailchimp takes that
repeat as a no-op, but nothing else adds a tag twice.
"""

import asyncio
import hashlib
import random
import re
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx2
import pytest

from backend.sandbox.stack import MAPPING
from tests.e2e.crash_run import (
    Script,
    Senders,
    WebProcess,
    busy_among,
    esp_hooks,
    script,
    until,
)
from tests.e2e.stack import job_rows, running_stack
from tests.e2e.test_multiprocess import assert_final_state, drained

pytestmark = pytest.mark.slow
LEASE = {"JOB_LEASE_SECONDS": "3"}  # a killed process's jobs are taken up again within seconds
TAGS = re.compile(r"^/lists/(\w+)/members/(\w+)/tags$")
BULK = re.compile(r"^/lists/(\w+)$")
SEGMENT = re.compile(r"^/lists/(\w+)/segments/(\w+)$")


def run_with_kills(stack, senders: Senders, plan: Script, kills, rng) -> list[int]:
    """Play the script; at random points (counted in events sent) run each kill, then let the
    senders retry what failed meanwhile. Returns the points."""
    total = sum(len(batch) for batch in plan.rounds)
    span = total * 3 // 4 // len(kills)  # one point in each stretch of the run's middle
    points = [total // 8 + n * span + rng.randrange(span) for n in range(len(kills))]
    pace = [rng.uniform(0.05, 0.35) for _ in range(total)]
    with ThreadPoolExecutor(1) as background:
        playing = background.submit(senders.play, plan.rounds, pace)
        for point, kill in zip(points, kills, strict=True):
            until(lambda p=point: senders.done >= p or playing.done(), within=60,
                  message=f"{point} events sent")
            kill()
            senders.resend()
        playing.result()
    senders.settle()
    return points


def tag_adds(stack) -> Counter:
    """(list id, member hash, tag) → how many calls asked Mailchimp to add the tag: member tag
    calls, list batch upserts and static-segment adds, refused ones included (an upper bound)."""
    with httpx2.Client(timeout=30) as client:
        log = client.get(f"{stack.sandbox_url}/mailchimp/_sandbox/requests").json()
        names = {}
        for spec in stack.seed["accounts"]:
            body = client.get(f"{stack.sandbox_url}/mailchimp/us21/3.0/lists/{spec['list_id']}/segments",
                              params={"type": "static", "count": 1000},
                              auth=("mailsync", spec["api_key"])).json()
            names |= {(spec["list_id"], str(s["id"])): s["name"] for s in body["segments"]}
    adds = Counter()
    for call in (c for c in log if c["method"] == "POST"):
        body = call["json"] or {}
        if match := TAGS.match(call["path"]):
            adds.update((*match.groups(), t["name"]) for t in body["tags"] if t["status"] == "active")
        elif match := BULK.match(call["path"]):
            adds.update((match[1], _md5(m["email_address"]), tag)
                        for m in body["members"] for tag in m.get("tags", []))
        elif match := SEGMENT.match(call["path"]):
            adds.update((match[1], _md5(e), names[(match[1], match[2])])
                        for e in body.get("members_to_add", []))
    return adds


def _md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()  # noqa: S324 (Mailchimp's member id)


def moved_into(stages: list[int]) -> Counter:
    """tag → how many moves put the lead in that tag's stage from another stage (the first move
    counts: Mailchimp starts with no member)."""
    return Counter(MAPPING[stage] for n, stage in enumerate(stages)
                   if MAPPING[stage] and (n == 0 or stages[n - 1] != stage))


def reran(row) -> int:
    """How many times the job's work was started again: every claim after the first, and once
    more when its lease ran out after a kill while a newer twin took over its work."""
    return row.attempts - 1 + (row.last_error or "").startswith("lease expired; superseded")


def reruns(rows) -> Counter:
    """(account, lead) → how many times a job for the lead ran again."""
    counted = Counter()
    for row in rows:
        if row.kind == "reconcile_lead":
            counted[(row.account_id, row.payload["lead_id"])] += reran(row)
    return counted


def assert_notes(stack, plan: Script) -> int:
    """Every distinct opt-out event: one note on its contact's lead. No other note."""
    expected = {spec["account_id"]: Counter() for spec in stack.seed["accounts"]}
    for event in plan.opt_outs:
        expected[event.account_id][(event.lead_id, event.note)] += 1
    with httpx2.Client(timeout=30) as client:
        for account_id, wanted in expected.items():
            notes = client.get(f"{stack.sandbox_url}/kommo/_sandbox/accounts/{account_id}/notes").json()
            got = Counter((n["entity_id"], n["params"]["text"]) for n in notes
                          if n["entity_type"] == "leads")
            assert got == wanted, (account_id, got - wanted, wanted - got)
    return sum(len(wanted) for wanted in expected.values())


def assert_no_tag_added_twice(stack, plan: Script, rows) -> dict:
    adds, again = tag_adds(stack), reruns(rows)
    repeats = 0
    for spec in stack.seed["accounts"]:
        for lead_id, _, email in spec["leads"]:
            key = (spec["account_id"], lead_id)
            into = moved_into(plan.moves[key])
            for tag in ("qualified", "proposal", "won"):
                made = adds[(spec["list_id"], _md5(email), tag)]
                assert made <= into[tag] + again[key], (key, tag, made, into[tag], again[key])
                repeats += max(0, made - into[tag])
    return {"tag adds": sum(adds.values()), "lead re-runs": sum(again.values()),
            "tag adds beyond moves": repeats}


def assert_after_the_run(stack, senders: Senders, plan: Script, database_url: str) -> dict:
    counts = drained(database_url, within=90)
    rows = asyncio.run(job_rows(database_url))
    assert counts.get("dead", 0) == 0
    assert all(row.state == "done" for row in rows), [(r.id, r.state, r.last_error) for r in rows
                                                       if r.state != "done"]
    assert_final_state(stack, plan.finals)
    notes = assert_notes(stack, plan)
    # The inbox took each opt-out at most once however often it came (a kill between the commit
    # and the answer leaves it at 0 for the answered retries: the first, unanswered, stored it).
    assert all(senders.accepted[event.body] <= 1 for event in plan.opt_outs)
    figures = dict(senders.tally) | {
        "notes": notes, "opt-out events": len(plan.opt_outs),
        "opt-outs stored by a post left unanswered": sum(
            1 for event in plan.opt_outs if senders.accepted[event.body] == 0),
        "job re-runs": sum(reran(row) for row in rows)}
    return figures | assert_no_tag_added_twice(stack, plan, rows)


def test_sqlite_serve_killed_three_times_loses_nothing(tmp_path):
    started, rng = time.monotonic(), random.Random(1301)
    database_url = f"sqlite+aiosqlite:///{tmp_path}/crash.db"
    with running_stack(database_url, tmp_path, accounts=6, leads=5, workers=0, esp_latency_ms=100,
                       embedded_worker=True, worker_env=LEASE) as stack, ExitStack() as exits:
        web = WebProcess(stack, exits, LEASE, embedded_worker=True)
        busy = []

        def kill_and_restart():
            busy.append(busy_among(database_url, [web.pid]) is not None)  # mid-job, as a rule
            web.kill()
            web.start()

        plan = script(stack.seed, rng)
        senders = Senders(stack, asyncio.run(esp_hooks(database_url, stack.web_url)))
        points = run_with_kills(stack, senders, plan, [kill_and_restart] * 3, rng)
        figures = assert_after_the_run(stack, senders, plan, database_url)
    assert any(busy) and figures["job re-runs"] >= 1  # a kill did land mid-job
    print(f"\nsqlite: kills at events {points} (mid-job: {busy}), {figures}, "
          f"{time.monotonic() - started:.1f} s")


def test_postgres_web_killed_once_and_workers_twice_lose_nothing(pg_schema_url, tmp_path):
    started, rng = time.monotonic(), random.Random(1302)
    with running_stack(pg_schema_url, tmp_path, accounts=6, leads=5, workers=2, esp_latency_ms=100,
                       worker_env=LEASE) as stack, ExitStack() as exits:
        web = WebProcess(stack, exits, LEASE, embedded_worker=False)
        killed = []

        def kill_web():
            web.kill()
            killed.append("web")
            web.start()

        def kill_worker():
            worker, busy = _busy_worker(pg_schema_url, stack.workers, rng)
            worker.send_signal(signal.SIGKILL)  # mid-batch, as a rule: no chance to release
            worker.wait(timeout=10)
            killed.append(f"worker {worker.pid}" + (" mid-job" if busy else ""))
            stack.workers[stack.workers.index(worker)] = stack.add_worker(f"worker-{len(killed)}")

        plan = script(stack.seed, rng)
        senders = Senders(stack, asyncio.run(esp_hooks(pg_schema_url, stack.web_url)))
        kills = rng.sample([kill_web, kill_worker, kill_worker], 3)
        points = run_with_kills(stack, senders, plan, kills, rng)
        figures = assert_after_the_run(stack, senders, plan, pg_schema_url)
    assert figures["job re-runs"] >= 1  # a killed worker's job ran again
    print(f"\npostgres: kills at events {points}: {killed}, {figures}, "
          f"{time.monotonic() - started:.1f} s")


def _busy_worker(database_url, workers, rng):
    """(the first worker seen holding a job within 5 s, else any; whether it held one)"""
    pid = busy_among(database_url, [worker.pid for worker in workers])
    if pid is None:
        return rng.choice(workers), False
    return next(worker for worker in workers if worker.pid == pid), True
