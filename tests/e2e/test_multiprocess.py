"""Scale-out on PostgreSQL, with real processes: one web process, two workers, the simulated
Kommo firing real webhooks and the simulated Mailchimp answering real calls."""

import asyncio
import itertools
import json
import random
import signal
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest

from backend.sandbox.stack import LOST, PROPOSAL, QUALIFIED, TARGET, WON
from tests.e2e.stack import job_rows, queue_counts, running_stack

pytestmark = pytest.mark.slow
STAGES = [QUALIFIED, PROPOSAL, WON, LOST]


def drained(database_url, within=300.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        counts = asyncio.run(queue_counts(database_url))
        # `batched`: jobs a running one took along; a killed worker's wait for their lease to end.
        if not any(counts.get(state) for state in ("pending", "running", "batched")):
            return counts
        time.sleep(0.25)  # polling a separate set of processes, with a deadline
    raise AssertionError(f"the queue did not drain: {asyncio.run(queue_counts(database_url))}")


def play(stack, moves_per_lead, rng, *, threads=16):
    """Every lead moves `moves_per_lead` times, all leads interleaved; returns final stages."""
    moves = [(spec["account_id"], lead_id, rng.choice(STAGES))
             for spec in stack.seed["accounts"] for lead_id, _, _ in spec["leads"]
             for _ in range(moves_per_lead)]
    by_lead = defaultdict(list)
    for account_id, lead_id, stage in moves:
        by_lead[(account_id, lead_id)].append(stage)
    rounds = [[(a, lead, stages[n]) for (a, lead), stages in by_lead.items()]
              for n in range(moves_per_lead)]
    with httpx2.Client(timeout=30) as client, ThreadPoolExecutor(threads) as pool:
        for batch in rounds:  # a lead's moves keep their order; leads interleave freely
            rng.shuffle(batch)
            list(pool.map(lambda m: stack.move(*m, client), batch))
    return {key: stages[-1] for key, stages in by_lead.items()}


def assert_final_state(stack, finals):
    with httpx2.Client(timeout=30) as client:
        for spec in stack.seed["accounts"]:
            for lead_id, _, email in spec["leads"]:
                member = stack.member(spec, email, client)
                tags = {t["name"] for t in member["tags"]} if member else set()
                assert tags == TARGET[finals[(spec["account_id"], lead_id)]], (lead_id, email)


def job_spans(stack):
    """(account, job) → [start, end] wall-clock times from every worker's JSON log."""
    spans = defaultdict(dict)
    for log in stack.logs.glob("worker*.log"):
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("msg", "").startswith("job ") and "job_id" in entry:
                edge = "start" if entry["msg"].endswith("started") else "end"
                spans[(entry["account_id"], entry["job_id"])][edge] = entry["at"]
                spans[(entry["account_id"], entry["job_id"])]["batch"] = entry["batch"]
    return spans


def assert_never_two_at_once(spans):
    by_account = defaultdict(list)
    for (account_id, _), span in spans.items():
        by_account[account_id].append((span["start"], span["end"]))
    for account_id, intervals in by_account.items():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end <= start, f"account {account_id} ran two jobs at once"


def test_two_workers_2000_events_200_leads_20_accounts(pg_schema_url, tmp_path):
    with running_stack(pg_schema_url, tmp_path, accounts=20, leads=10, workers=2) as stack:
        finals = play(stack, 10, random.Random(2026))
        counts = drained(pg_schema_url)
        rows = asyncio.run(job_rows(pg_schema_url))
        assert_final_state(stack, finals)
        spans = job_spans(stack)
    assert counts.get("dead", 0) == 0
    assert all(row.state == "done" and row.last_error is None for row in rows)
    assert all(row.attempts == 1 for row in rows)  # every coalesced job ran exactly once
    keys = [row.coalesce_key for row in rows]
    assert len(rows) < 2000 and len(set(keys)) == 200  # 2,000 events coalesced per lead
    assert len({row.claimed_by for row in rows}) == 2  # both workers took part
    # Every job ran in exactly one span: alone, or in the batch its account's leader took along.
    assert sum(span["batch"] for span in spans.values()) == len(rows)
    assert all(set(span) == {"start", "end", "batch"} for span in spans.values())
    assert_never_two_at_once(spans)


def test_a_killed_worker_loses_nothing(pg_schema_url, tmp_path):
    env = {"JOB_LEASE_SECONDS": "3"}
    with running_stack(pg_schema_url, tmp_path, accounts=6, leads=5, workers=2,
                       esp_latency_ms=150, worker_env=env) as stack:
        with ThreadPoolExecutor(1) as pool:
            playing = pool.submit(play, stack, 3, random.Random(7))
            victim = _holding_a_job(pg_schema_url, stack.workers)
            victim.send_signal(signal.SIGKILL)  # mid-batch: no chance to release its jobs
            victim.wait(timeout=10)
            finals = playing.result()
        drained(pg_schema_url)
        rows = asyncio.run(job_rows(pg_schema_url))
        assert_final_state(stack, finals)
    assert all(row.state == "done" for row in rows)
    assert any(row.attempts == 2 for row in rows)  # a job the dead worker held ran again


def _holding_a_job(database_url, workers, within=60.0):
    """The first worker seen holding a job (running, or batched with one): the one to kill. With
    batches one worker may do all the work of a small stack, so which one cannot be chosen ahead."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        holders = {r.claimed_by for r in asyncio.run(job_rows(database_url))
                   if r.state in ("running", "batched") and r.claimed_by}
        for worker in workers:
            if any(f"-{worker.pid}-" in holder for holder in holders):
                return worker
        time.sleep(0.02)
    raise AssertionError("no worker was seen holding a job")
