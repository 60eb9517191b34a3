"""Webhook ingest benchmark: Kommo status webhooks → `mailsync serve --no-worker`.

32 concurrent keep-alive clients (wrk, 2 threads) post status changes for 200 leads, each a new
change, against mailsync on SQLite and on PostgreSQL, and against a bare Starlette app that only
parses the form (bench/bare_app.py), started the same way in the same run. Reports req/s and
p50/p99 acknowledgement latency, the throughput ratio to the bare app, and checks that every
acknowledged delivery is in the inbox (nothing lost).

    .venv/bin/python -m bench.ingest [--seconds 15] [--connections 32]
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import text

from backend import db, repository
from bench.common import ROOT, database, env_for, free_port, mailsync, pg_available, run_async, server

LUA = Path(__file__).parent / "status_webhook.lua"
ACCOUNT = 29085424


def wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(LUA), url], capture_output=True, text=True, check=True).stdout
    match = re.search(r"RESULT requests=(\d+) duration_us=(\d+) errors=(\d+) non2xx=(\d+) "
                      r"p50_us=(\d+) p99_us=(\d+)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, duration, errors, non2xx, p50, p99 = map(int, match.groups())
    return {"requests": requests, "rps": requests / (duration / 1e6), "errors": errors,
            "non2xx": non2xx, "p50_ms": p50 / 1000, "p99_ms": p99 / 1000}


async def install_account(database_url: str) -> str:
    engine = db.create_engine(database_url)
    try:
        async with db.session_factory(engine)() as session, session.begin():
            account = await repository.upsert_account(session, ACCOUNT, host="acme.kommo.com",
                                                      subdomain="acme")
            return account.hook_key
    finally:
        await engine.dispose()


async def stored_deliveries(database_url: str) -> tuple[int, int]:
    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            inbox = (await conn.execute(text("SELECT count(*) FROM inbox_event"))).scalar()
            jobs = (await conn.execute(text("SELECT count(*) FROM job"))).scalar()
        return inbox, jobs
    finally:
        await engine.dispose()


def bench_mailsync(kind: str, workdir: Path, args) -> dict[str, float]:
    with database(kind, workdir) as url:
        env = env_for(url)
        mailsync(["migrate"], env, workdir)
        hook_key = run_async(install_account(url))
        port = free_port()
        command = [sys.executable, "-m", "backend.cli", "serve", "--no-worker", "--port", str(port)]
        with server(command, env, workdir, port, workdir / f"serve-{kind}.log"):
            target = f"http://127.0.0.1:{port}/webhooks/kommo/{hook_key}"
            wrk(target, 2, args.connections)  # warm-up
            before = run_async(stored_deliveries(url))[0]
            result = wrk(target, args.seconds, args.connections)
        inbox, jobs = run_async(stored_deliveries(url))
    result["stored"] = inbox - before
    result["jobs"] = jobs
    return result


def bench_bare(workdir: Path, args) -> dict[str, float]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(port),
               "--no-access-log", "--log-level", "warning"]
    with server(command, env_for("sqlite+aiosqlite://"), ROOT, port, workdir / "bare.log"):
        target = f"http://127.0.0.1:{port}/webhooks/kommo/x"
        wrk(target, 2, args.connections)
        return wrk(target, args.seconds, args.connections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results = {"bare Starlette (parse only)": bench_bare(workdir, args)}
        results["mailsync, SQLite"] = bench_mailsync("sqlite", workdir, args)
        if pg_available():
            results["mailsync, PostgreSQL"] = bench_mailsync("postgresql", workdir, args)
    baseline = results["bare Starlette (parse only)"]["rps"]
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {args.connections} connections, {args.seconds} s")
    print("| target | req/s | p50 ms | p99 ms | vs bare | errors | non-2xx | stored |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        stored = r.get("stored", "—")
        print(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['rps'] / baseline:.0%} | {r['errors']} | {r['non2xx']} | {stored} |")
        if "stored" in r and r["stored"] < r["requests"] - r["non2xx"]:
            print(f"!! {name}: {r['requests'] - r['non2xx']} acknowledged but {r['stored']} stored")


if __name__ == "__main__":
    main()
