"""Hostile input (issue 13): how long `/healthz` waits while the worst webhook bodies are parsed,
and how long a signed batch of 8,000 MailerLite events takes to be acknowledged.

    .venv/bin/python -m bench.hostile [--seconds 10]

A real `mailsync serve --no-worker` on 127.0.0.1 (SQLite, and PostgreSQL when it answers). For
`--seconds`, two clients post to the Kommo hook, back to back, the 19,990 × `x[]=a` body
(120 KB; 10-12 s of parsing each before issue 13) and two a maximum-size body (1 MiB: 620
real-shaped leads), while a thread asks `/healthz` every 10 ms and records each wait. Then
8,000-event batches, each new, are posted signed to the MailerLite hook, one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2

from backend import db, repository
from backend.models import EspConnection
from backend.security import Vault
from backend.settings import load_settings
from bench.common import database, env_for, free_port, mailsync, pg_available, run_async, server
from tests.routes.hostile_hooks import lead_items

ACCOUNT, ML_ACCOUNT, ML_SECRET = 29085424, 1, "bench-webhook-secret"


def append_flood() -> bytes:
    return "&".join(["x[]=a"] * 19_990).encode()


def max_size_kommo(leads: int = 620) -> bytes:
    return f"{lead_items(leads, account=ACCOUNT)}&account%5Bid%5D={ACCOUNT}".encode()


def ml_batch(first: int, count: int = 8000) -> tuple[bytes, str]:
    events = [{"type": "subscriber.unsubscribed",
               "subscriber": {"id": str(n), "email": f"u{n}@shop.io",
                              "unsubscribed_at": "2026-03-26 21:40:57"}}
              for n in range(first, first + count)]
    body = json.dumps({"events": events, "total": count}, separators=(",", ":")).encode()
    return body, hmac.new(ML_SECRET.encode(), body, hashlib.sha256).hexdigest()


async def install(database_url: str, env: dict[str, str]) -> tuple[str, str]:
    vault = Vault(load_settings(env, dotenv=None).encryption_keys)
    engine = db.create_engine(database_url)
    try:
        async with db.session_factory(engine)() as session, session.begin():
            account = await repository.upsert_account(session, ACCOUNT, host="acme.kommo.com",
                                                      subdomain="acme")
            await repository.upsert_account(session, ML_ACCOUNT, host="a.kommo.com", subdomain="a")
            await repository.save_esp_connection(session, EspConnection(
                account_id=ML_ACCOUNT, kind="mailerlite", api_key_enc=vault.encrypt("key"),
                webhook_secret_enc=vault.encrypt(ML_SECRET), hook_key="bench-ml-hook"))
            return account.hook_key, "bench-ml-hook"
    finally:
        await engine.dispose()


def ping(base: str, stop: threading.Event, waits: list[float]) -> None:
    with httpx2.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            waits.append(time.perf_counter() - started)
            time.sleep(0.01)


async def post_for(base: str, url: str, body: bytes, seconds: float) -> list[tuple[int, float]]:
    answers = []
    deadline = time.monotonic() + seconds
    async with httpx2.AsyncClient(base_url=base, timeout=60) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await client.post(url, content=body, headers={
                "Content-Type": "application/x-www-form-urlencoded"})
            answers.append((response.status_code, time.perf_counter() - started))
    return answers


async def attack(base: str, kommo_url: str, seconds: float) -> dict[str, list[tuple[int, float]]]:
    flood, big = append_flood(), max_size_kommo()
    runs = await asyncio.gather(*(post_for(base, kommo_url, body, seconds)
                                  for body in (flood, flood, big, big)))
    return {"19,990 × x[]=a": runs[0] + runs[1], "1 MiB, 620 leads": runs[2] + runs[3]}


def healthz_while(base: str, work) -> tuple[list[float], object]:
    stop, waits = threading.Event(), []
    pinger = threading.Thread(target=ping, args=(base, stop, waits))
    pinger.start()
    try:
        result = run_async(work)
    finally:
        stop.set()
        pinger.join()
    return waits, result


async def batches(base: str, ml_url: str, count: int) -> list[tuple[int, float]]:
    answers = []
    async with httpx2.AsyncClient(base_url=base, timeout=60) as client:
        for n in range(count):
            body, signature = ml_batch(first=n * 8000)
            started = time.perf_counter()
            response = await client.post(ml_url, content=body, headers={
                "Content-Type": "application/json", "Signature": signature})
            assert response.json() == {"accepted": 8000}, response.text
            answers.append((response.status_code, time.perf_counter() - started))
    return answers


def run(kind: str, workdir: Path, seconds: float) -> dict:
    with database(kind, workdir) as url:
        env = env_for(url)
        mailsync(["migrate"], env, workdir)
        kommo_key, ml_key = run_async(install(url, env))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "backend.cli", "serve", "--no-worker", "--port", str(port)]
        with server(command, env, workdir, port, workdir / f"serve-{kind}.log"):
            idle, _ = healthz_while(base, asyncio.sleep(3))
            loaded, posts = healthz_while(base, attack(base, f"/webhooks/kommo/{kommo_key}", seconds))
            batched, answers = healthz_while(base, batches(base, f"/webhooks/mailerlite/{ml_key}", 5))
    return {"idle": idle, "loaded": loaded, "posts": posts, "batched": batched, "batches": answers}


def ms(values: list[float], q: float | None = None) -> str:
    if q is None:
        return f"{max(values) * 1000:.0f}"
    return f"{statistics.quantiles(values, n=100)[int(q) - 1] * 1000:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    kinds = ["sqlite", *(["postgresql"] if pg_available() else [])]
    with tempfile.TemporaryDirectory() as tmp:
        results = {kind: run(kind, Path(tmp), args.seconds) for kind in kinds}
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {args.seconds:.0f} s of hostile posts")
    print("| engine | /healthz idle p99 / max ms | under attack: pings, p99 / max ms | hostile posts: "
          "body → status × n, p50 / max s | 8,000-event batch: answers, min / median / max s |")
    print("|---|---|---|---|---|")
    for kind, r in results.items():
        posts = "; ".join(
            f"{name} → {sorted({s for s, _ in a})} × {len(a)}, "
            f"{statistics.median(t for _, t in a):.2f} / {max(t for _, t in a):.2f}"
            for name, a in r["posts"].items())
        times = [t for _, t in r["batches"]]
        print(f"| {kind} | {ms(r['idle'], 99)} / {ms(r['idle'])} | {len(r['loaded'])}, "
              f"{ms(r['loaded'], 99)} / {ms(r['loaded'])} | {posts} | {len(times)}, "
              f"{min(times):.2f} / {statistics.median(times):.2f} / {max(times):.2f} "
              f"(/healthz max {ms(r['batched'])} ms) |")


if __name__ == "__main__":
    main()
