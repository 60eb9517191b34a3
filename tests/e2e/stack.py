"""Run the real processes: the simulated Kommo + Mailchimp (or MailerLite) in one uvicorn server,
one mailsync web process and N worker processes, all on 127.0.0.1, sharing one database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from backend import db
from backend.sandbox.stack import seed_database
from tests.conftest import TEST_SECRET_KEY
from tests.test_cli import _free_port


@dataclass
class Stack:
    database_url: str
    sandbox_url: str
    web_url: str
    seed: dict[str, Any]
    workers: list[subprocess.Popen] = field(default_factory=list)
    logs: Path | None = None
    add_worker: Callable[[str], subprocess.Popen] | None = None  # one more worker, logging to name.log

    def move(self, account_id: int, lead_id: int, stage: int, client: httpx2.Client) -> None:
        """Change a lead's stage at Kommo; Kommo fires the status webhook at our web process."""
        response = client.post(
            f"{self.sandbox_url}/kommo/_sandbox/accounts/{account_id}/leads/{lead_id}/stage",
            json={"status_id": stage})
        response.raise_for_status()
        statuses = [d["status"] for d in response.json()["deliveries"]]
        assert statuses == [200], statuses

    def member(self, spec: dict[str, Any], email: str, client: httpx2.Client) -> dict | None:
        import hashlib

        digest = hashlib.md5(email.lower().encode()).hexdigest()  # noqa: S324 (Mailchimp's id)
        response = client.get(
            f"{self.sandbox_url}/mailchimp/us21/3.0/lists/{spec['list_id']}/members/{digest}",
            auth=("mailsync", spec["api_key"]))
        return None if response.status_code == 404 else response.json()


def _env(database_url: str, sandbox_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOMMO_", "MAILCHIMP_"))}
    env.update({"DATABASE_URL": database_url, "SECRET_KEY": TEST_SECRET_KEY, "ENV": "test",
                "KOMMO_API_BASE_URL": f"{sandbox_url}/kommo",
                "MAILCHIMP_API_BASE_URL": f"{sandbox_url}/mailchimp/{{dc}}/3.0", **extra})
    return env


def wait_http(url: str, proc: subprocess.Popen, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx2.get(url, timeout=1)
            return
        except httpx2.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {within} s")


def _spawn(stack: ExitStack, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = stack.enter_context(log.open("w"))
    proc = stack.enter_context(subprocess.Popen([sys.executable, *args], env=env, stdout=out,
                                                stderr=subprocess.STDOUT))
    stack.callback(_stop, proc)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def running_stack(database_url: str, workdir: Path, *, accounts: int, leads: int, workers: int,
                  esp_latency_ms: float = 0, worker_env: dict[str, str] | None = None,
                  embedded_worker: bool = False, provider: str = "mailchimp",
                  esp_window: float = 60.0):
    """`provider="mailerlite"`: the simulated MailerLite instead of Mailchimp, its rate window
    `esp_window` seconds long."""
    with ExitStack() as stack:
        sandbox_port, web_port = _free_port(), _free_port()
        sandbox_url, web_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{web_port}"
        seed_file = workdir / "seed.json"
        esp = [] if provider == "mailchimp" else ["--provider", provider, "--esp-window",
                                                  str(esp_window)]
        sandbox = _spawn(stack, ["-m", "backend.sandbox.stack", "--port", str(sandbox_port),
                                 "--accounts", str(accounts), "--leads", str(leads),
                                 "--esp-latency-ms", str(esp_latency_ms), "--seed-out",
                                 str(seed_file), *esp], dict(os.environ), workdir / "sandbox.log")
        wait_http(f"{sandbox_url}/kommo/_sandbox/requests", sandbox)
        base = {} if provider == "mailchimp" else {
            "MAILERLITE_API_BASE_URL": f"{sandbox_url}/mailerlite/api"}
        env = _env(database_url, sandbox_url, PUBLIC_URL=web_url, **base)
        subprocess.run([sys.executable, "-m", "backend.cli", "migrate"], env=env, check=True,
                       capture_output=True, cwd=workdir)
        seed = json.loads(seed_file.read_text())
        asyncio.run(seed_database(env, seed, kommo_base=f"{sandbox_url}/kommo", public_url=web_url))
        serve = ["-m", "backend.cli", "serve", "--port", str(web_port)]
        web = _spawn(stack, serve if embedded_worker else [*serve, "--no-worker"],
                     {**env, **(worker_env or {})}, workdir / "web.log")
        wait_http(f"{web_url}/healthz", web)
        result = Stack(database_url, sandbox_url, web_url, seed, logs=workdir)
        result.add_worker = lambda name: _spawn(stack, ["-m", "backend.cli", "worker"],
                                                {**env, **(worker_env or {})}, workdir / f"{name}.log")
        for n in range(workers):
            result.workers.append(result.add_worker(f"worker{n}"))
        yield result


async def queue_counts(database_url: str) -> dict[str, int]:
    from backend import jobs

    engine = db.create_engine(database_url)
    try:
        async with db.session_factory(engine)() as session:
            return await jobs.counts_by_state(session)
    finally:
        await engine.dispose()


async def job_rows(database_url: str) -> list[Any]:
    from sqlmodel import select

    from backend.models import Job

    engine = db.create_engine(database_url)
    try:
        async with db.session_factory(engine)() as session:
            return list((await session.exec(select(Job).order_by(Job.id))).all())
    finally:
        await engine.dispose()
