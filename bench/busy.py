"""A busy account (issue 12): thousands of stage-change webhooks for one account, MailerLite
behind its limits, optionally with the worker killed (-9) mid-way.

    .venv/bin/python -m bench.busy --engine sqlite|postgresql [--kill] [--leads 200] [--moves 10]
        [--window 12]

Real processes on 127.0.0.1: the simulated Kommo (7 requests/s) and MailerLite (120 requests and
5 imports per `--window` seconds per key) in one server, and mailsync — on SQLite one `serve`
process with its embedded worker, on PostgreSQL a web process and two `worker` processes. One
account, N leads with one contact each (none known to MailerLite yet). Every lead moves `--moves`
times through Qualified → Proposal → Won → Lost (mapped to three groups and a removal), all leads
interleaved, each lead's moves in order; the simulated Kommo fires each move as a real webhook,
sent as fast as it is acknowledged. `--kill`: after half the webhooks the worker processes are
killed with SIGKILL and started again (on SQLite the web process then runs `--no-worker` beside
one `worker` process, so webhooks keep being acknowledged while the worker is down). Measured:
the seconds from the last acknowledged webhook until every contact is in its final stage's group
(MailerLite's state read every second), and the calls each simulator answered once the queue
drained (a 429 is counted apart, as refused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from backend.sandbox.stack import LOST, PROPOSAL, QUALIFIED, TARGET, WON
from bench.common import database
from tests.e2e.stack import job_rows, queue_counts, running_stack

STAGES = (QUALIFIED, PROPOSAL, WON, LOST)  # the seeded leads start in Qualified
BUSY = ("pending", "running", "batched")


@dataclass
class Sent:
    webhooks: int = 0
    acknowledged: int = 0
    first: float = 0.0  # monotonic time the first webhook was sent
    last: float = 0.0  # monotonic time the last webhook was answered
    notes: list[str] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)  # status (None: no answer) → webhooks
    first_refused: float | None = None


def plan(stack, moves: int) -> tuple[list[list[tuple[int, int]]], dict[str, set[str]]]:
    """Rounds of (lead, stage): round k holds every lead's k-th move. And each address's final
    groups (lead i ends in STAGES[(i + moves) % 4], so all four endings occur)."""
    spec = stack.seed["accounts"][0]
    leads = spec["leads"]
    rounds = [[(lead_id, STAGES[(i + k + 1) % len(STAGES)]) for i, (lead_id, _, _) in enumerate(leads)]
              for k in range(moves)]
    finals = {email: TARGET[STAGES[(i + moves) % len(STAGES)]] for i, (_, _, email) in enumerate(leads)}
    return rounds, finals


def send(stack, rounds, *, threads: int, halfway=None) -> Sent:
    """Every round through a pool of `threads` (a lead's moves keep their order); `halfway()`
    runs once half the rounds are acknowledged."""
    account_id, sent, lock = stack.seed["accounts"][0]["account_id"], Sent(), threading.Lock()
    local = threading.local()

    def one(move: tuple[int, int]) -> None:
        if not hasattr(local, "client"):
            local.client = httpx2.Client(timeout=60)
        lead_id, stage = move
        response = local.client.post(
            f"{stack.sandbox_url}/kommo/_sandbox/accounts/{account_id}/leads/{lead_id}/stage",
            json={"status_id": stage})
        response.raise_for_status()
        statuses = [d["status"] for d in response.json()["deliveries"]]
        with lock:
            sent.webhooks += 1
            sent.acknowledged += statuses == [200]
            sent.last = time.monotonic()
            if statuses != [200]:
                sent.refused[str(statuses)] += 1
                sent.first_refused = sent.first_refused or sent.last - sent.first

    sent.first = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        for n, batch in enumerate(rounds):
            if halfway and n == len(rounds) // 2:
                sent.notes.append(halfway())
            list(pool.map(one, batch))
    return sent


def kill_and_restart(stack) -> str:
    """SIGKILL every worker process (no chance to release its jobs), then start as many anew."""
    held = sum(1 for r in asyncio.run(job_rows(stack.database_url)) if r.state in ("running", "batched"))
    started = time.monotonic()
    for proc in stack.workers:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    stack.workers[:] = [stack.add_worker(f"worker{n}-restarted") for n in range(len(stack.workers))]
    return (f"killed {len(stack.workers)} worker process(es) holding {held} jobs and started "
            f"them again in {time.monotonic() - started:.2f} s")


def converged(stack, client: httpx2.Client, finals: dict[str, set[str]]) -> int:
    tags = {gid: tag for tag, gid in stack.seed["accounts"][0]["groups"].items()}
    answer = client.get(f"{stack.sandbox_url}/mailerlite/_sandbox/subscribers").json()
    groups = {s["email"]: {tags.get(g, g) for g in s["groups"]} for s in answer["subscribers"]}
    return sum(1 for email, target in finals.items() if groups.get(email, set()) == target)


def watch(stack, finals, sent: Sent, within: float) -> tuple[int, float | None, dict[int, int]]:
    """Poll MailerLite every second until every address converged or `within` s after the last
    webhook: (converged, seconds after the last webhook or None, converged at marks)."""
    marks, seen = {}, 0
    with httpx2.Client(timeout=30) as client:
        while (elapsed := time.monotonic() - sent.last) < within:
            seen = converged(stack, client, finals)
            for mark in (0, 10, 30, 60, 120, 300):
                if elapsed >= mark and mark not in marks:
                    marks[mark] = seen
            if seen == len(finals):
                return seen, elapsed, marks
            time.sleep(1)  # polling a separate set of processes, with a deadline
    return seen, None, marks


def drained(url: str, until: float) -> dict[str, int]:
    while True:
        counts = asyncio.run(queue_counts(url))
        if not any(counts.get(state) for state in BUSY) or time.monotonic() > until:
            return counts
        time.sleep(1)


def answered(stack) -> dict[str, tuple[int, int]]:
    """(calls answered, 429s) per simulator."""
    kommo = httpx2.get(f"{stack.sandbox_url}/kommo/_sandbox/requests", timeout=30).json()
    refused = sum(1 for r in kommo if r["status"] == 429)
    answers = httpx2.get(f"{stack.sandbox_url}/mailerlite/_sandbox/answers", timeout=30).json()
    return {"kommo": (len(kommo) - refused, refused),
            "mailerlite": (sum(answers.values()) - answers.get("429", 0), answers.get("429", 0))}


def keep(stack, workdir: Path, finals: dict[str, set[str]]) -> None:
    """What MailerLite ended with, what it was asked, and the expected groups: for the logs."""
    base = f"{stack.sandbox_url}/mailerlite/_sandbox"
    for name in ("subscribers", "requests"):
        (workdir / f"mailerlite-{name}.json").write_text(httpx2.get(f"{base}/{name}", timeout=60).text)
    (workdir / "finals.json").write_text(json.dumps({e: sorted(t) for e, t in finals.items()}))


def run(args, workdir: Path) -> dict:
    if args.engine == "sqlite":
        options = {"workers": 1} if args.kill else {"workers": 0, "embedded_worker": True}
    else:
        options = {"workers": 2}
    with ExitStack() as cleanup:
        url = cleanup.enter_context(database(args.engine, workdir))
        stack = cleanup.enter_context(running_stack(
            url, workdir, accounts=1, leads=args.leads, provider="mailerlite",
            esp_window=args.window, **options))
        before = answered(stack)
        rounds, finals = plan(stack, args.moves)
        sent = send(stack, rounds, threads=args.threads,
                    halfway=(lambda: kill_and_restart(stack)) if args.kill else None)
        seen, seconds, marks = watch(stack, finals, sent, args.deadline)
        counts = drained(url, sent.last + args.deadline)
        after = answered(stack)
        keep(stack, workdir, finals)
    calls = {name: (after[name][0] - before[name][0], after[name][1] - before[name][1])
             for name in after}
    return {"sent": sent, "converged": seen, "seconds": seconds, "marks": marks,
            "queue": counts, "calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--kill", action="store_true", help="kill -9 the worker(s) half-way")
    parser.add_argument("--leads", type=int, default=200)
    parser.add_argument("--moves", type=int, default=10, help="stage changes per lead")
    parser.add_argument("--window", type=float, default=12.0, help="MailerLite's window, s")
    parser.add_argument("--threads", type=int, default=24)
    parser.add_argument("--deadline", type=float, default=600.0, help="s after the last webhook")
    parser.add_argument("--workdir", type=Path, help="keep the processes' logs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        r = run(args, workdir)
    sent, (kommo, kommo_429), (ml, ml_429) = r["sent"], r["calls"]["kommo"], r["calls"]["mailerlite"]
    refused = (f"; not acknowledged: {dict(sent.refused)}, the first {sent.first_refused:.1f} s in"
               if sent.refused else "")
    for note in [f"{sent.webhooks} webhooks in {sent.last - sent.first:.1f} s{refused}", *sent.notes]:
        print(note, file=sys.stderr)
    print(f"converged after the last webhook, by second: {r['marks']}; queue at the end: "
          f"{r['queue']}", file=sys.stderr)
    seconds = f"{r['seconds']:.1f}" if r["seconds"] is not None else f"not within {args.deadline:g}"
    print("| engine | kill | webhooks | acknowledged | converged | seconds after last webhook | "
          "Kommo calls | MailerLite calls | 429 refused (Kommo / MailerLite) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.engine} | {'yes' if args.kill else 'no'} | {sent.webhooks} | {sent.acknowledged} "
          f"| {r['converged']}/{args.leads} | {seconds} | {kommo} | {ml} | {kommo_429} / {ml_429} |")


if __name__ == "__main__":
    main()
