"""What the crash tests drive: the events of a run (stage moves at Kommo, opt-outs at Mailchimp),
senders that — like Kommo and Mailchimp — send again whatever mailsync did not acknowledge, and
mailsync's web process killed with SIGKILL and started again on the same port."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx2
from sqlmodel import select

from backend import db
from backend.models import EspConnection
from backend.providers.mailchimp.webhooks import parse_webhook
from backend.sync.reverse import note_text
from tests.e2e.stack import Stack, _env, _spawn, job_rows, wait_http
from tests.e2e.test_multiprocess import STAGES

FORM = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "MailChimp"}
FIRST_FIRED = datetime(2026, 3, 26, 9, 0, 0)


def until(check: Callable[[], object], *, within: float, message: str) -> object:
    """Poll `check` (a separate set of processes) until it is truthy, with a deadline."""
    deadline = time.monotonic() + within
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {within} s")
        time.sleep(0.02)
    return result


# --- the run's events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    account_id: int
    lead_id: int
    stage: int


@dataclass(frozen=True)
class OptOut:
    """One Mailchimp event (its own `fired_at`) about the contact of `lead_id`."""

    account_id: int
    lead_id: int
    body: bytes

    @property
    def note(self) -> str:
        return note_text(parse_webhook(self.body)[0], "Mailchimp")


def opt_out(spec: dict, lead: list, kind: str, n: int) -> OptOut:
    lead_id, _, email = lead
    data = {"list_id": spec["list_id"], "email": email}
    data |= ({"id": hashlib.md5(email.encode()).hexdigest()[:10], "action": "unsub",  # noqa: S324
              "reason": "manual"} if kind == "unsubscribe" else {"reason": "hard"})
    fired = (FIRST_FIRED + timedelta(minutes=n)).strftime("%Y-%m-%d %H:%M:%S")
    form = {"type": kind, "fired_at": fired, **{f"data[{k}]": v for k, v in data.items()}}
    return OptOut(spec["account_id"], lead_id, urllib.parse.urlencode(form).encode())


@dataclass
class Script:
    rounds: list[list[Move | OptOut]]  # a lead's moves keep their order: one per round
    moves: dict[tuple[int, int], list[int]]  # (account, lead) → its stages, in order
    opt_outs: list[OptOut]  # the distinct events

    @property
    def finals(self) -> dict[tuple[int, int], int]:
        return {key: stages[-1] for key, stages in self.moves.items()}


def script(seed: dict, rng: random.Random, *, moves_per_lead: int = 3) -> Script:
    """Every lead moves `moves_per_lead` times; two contacts per account opt out (unsubscribe),
    four of them are later also cleaned (a second, distinct event); four events go out twice."""
    moves = {(spec["account_id"], lead[0]): [rng.choice(STAGES) for _ in range(moves_per_lead)]
             for spec in seed["accounts"] for lead in spec["leads"]}
    rounds: list[list[Move | OptOut]] = [
        [Move(a, lead, stages[n]) for (a, lead), stages in moves.items()]
        for n in range(moves_per_lead)]
    chosen = [(spec, lead) for spec in seed["accounts"] for lead in rng.sample(spec["leads"], 2)]
    events = [opt_out(spec, lead, "unsubscribe", n) for n, (spec, lead) in enumerate(chosen)]
    events += [opt_out(spec, lead, "cleaned", 100 + n)
               for n, (spec, lead) in enumerate(rng.sample(chosen, 4))]
    placed = {event: rng.randrange(moves_per_lead) for event in events}
    for event, n in placed.items():
        rounds[n].append(event)
    for event in rng.sample(events, 4):  # a redelivery of an acknowledged event, later
        rounds[rng.randrange(placed[event], moves_per_lead)].append(event)
    for batch in rounds:
        rng.shuffle(batch)
    return Script(rounds, moves, events)


# --- the senders ----------------------------------------------------------------------------------


class Senders:
    """Kommo (through the simulated Kommo's stage moves) and Mailchimp (posting its form bodies
    straight to mailsync). Each sends again what mailsync did not answer with 200."""

    def __init__(self, stack: Stack, hooks: dict[int, str]) -> None:
        self.stack, self.hooks = stack, hooks
        self.lock = threading.Lock()
        self.done = 0
        self.tally: Counter[str] = Counter()
        self.accepted: Counter[bytes] = Counter()  # event body → sum of mailsync's `accepted`
        self.unanswered: list[OptOut] = []

    def play(self, rounds: list[list[Move | OptOut]], pace: list[float], *, threads: int = 4) -> None:
        with httpx2.Client(timeout=30) as client, ThreadPoolExecutor(threads) as pool:
            for batch in rounds:
                delays = [pace.pop() for _ in batch]
                list(pool.map(lambda e, d: self._send(e, d, client), batch, delays))

    def _send(self, event: Move | OptOut, delay: float, client: httpx2.Client) -> None:
        time.sleep(delay)  # the events' pace, not a synchronisation
        if isinstance(event, Move):
            answer = client.post(f"{self.stack.sandbox_url}/kommo/_sandbox/accounts/"
                                 f"{event.account_id}/leads/{event.lead_id}/stage",
                                 json={"status_id": event.stage})
            answer.raise_for_status()
            [status] = [d["status"] for d in answer.json()["deliveries"]]  # the hook stays on
            with self.lock:
                self.tally["kommo deliveries"] += 1
                self.tally["kommo unanswered"] += status != 200
        else:
            self.post(event, client)
        with self.lock:
            self.done += 1

    def post(self, event: OptOut, client: httpx2.Client) -> bool:
        try:
            answer = client.post(self.hooks[event.account_id], content=event.body, headers=FORM)
        except httpx2.TransportError:
            answer = None
        with self.lock:
            self.tally["mailchimp posts"] += 1
            if answer is not None and answer.status_code == 200:
                self.accepted[event.body] += answer.json()["accepted"]
                return True
            self.tally["mailchimp unanswered"] += 1
            self.unanswered.append(event)
            return False

    def resend(self) -> bool:
        """What Kommo and Mailchimp retry; True when mailsync answered every retry with 200."""
        with httpx2.Client(timeout=60) as client:
            answer = client.post(f"{self.stack.sandbox_url}/kommo/_sandbox/webhooks/redeliver")
            statuses = [d["status"] for d in answer.raise_for_status().json()["deliveries"]]
            with self.lock:
                due, self.unanswered = self.unanswered, []
                self.tally["kommo redelivered"] += len(statuses)
                self.tally["mailchimp reposted"] += len(due)
            posted = [self.post(event, client) for event in due]
        return all(status == 200 for status in statuses) and all(posted)

    def settle(self, within: float = 60.0) -> None:
        until(self.resend, within=within, message="every delivery acknowledged")


async def esp_hooks(database_url: str, web_url: str) -> dict[int, str]:
    """account → its Mailchimp webhook address (the connection's hook key)."""
    engine = db.create_engine(database_url)
    try:
        async with db.session_factory(engine)() as session:
            rows = (await session.exec(select(EspConnection))).all()
    finally:
        await engine.dispose()
    return {row.account_id: f"{web_url}/webhooks/mailchimp/{row.hook_key}" for row in rows}


# --- the processes --------------------------------------------------------------------------------


def busy_among(database_url: str, pids: list[int], within: float = 5.0) -> int | None:
    """The first of the processes seen holding a job within `within` s, if any (the kill comes
    then either way)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        holders = [row.claimed_by or "" for row in asyncio.run(job_rows(database_url))
                   if row.state in ("running", "batched")]
        busy = [pid for pid in pids if any(f"-{pid}-" in holder for holder in holders)]
        if busy:
            return busy[0]
        time.sleep(0.02)
    return None


def _child(args: list[str]) -> int:
    """The pid of this process's child started as `python *args`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode().split("\0")[:-1]
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and argv[1:] == args:
            return int(entry.name)
    raise AssertionError(f"no child process runs {args}")


def _gone(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) in "ZX"
    except OSError:
        return True


class WebProcess:
    """mailsync's web process on the stack's port: killed with SIGKILL (no shutdown of any kind),
    then started again on the same port with the same environment."""

    def __init__(self, stack: Stack, exits: ExitStack, extra_env: dict[str, str], *,
                 embedded_worker: bool) -> None:
        self.stack, self.exits = stack, exits
        port = stack.web_url.rsplit(":", 1)[1]
        self.args = ["-m", "backend.cli", "serve", "--port", port,
                     *([] if embedded_worker else ["--no-worker"])]
        self.env = _env(stack.database_url, stack.sandbox_url, PUBLIC_URL=stack.web_url, **extra_env)
        self.pid = _child(self.args)  # started by `running_stack`
        self.starts = 1

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        until(lambda: _gone(self.pid), within=10, message=f"process {self.pid} gone")

    def start(self) -> None:
        self.starts += 1
        proc = _spawn(self.exits, self.args, self.env, self.stack.logs / f"web-{self.starts}.log")
        self.pid = proc.pid
        wait_http(f"{self.stack.web_url}/healthz", proc)
