"""Shared benchmark plumbing: free ports, databases, starting and stopping servers."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx2
import psycopg

ROOT = Path(__file__).resolve().parents[1]
PG_BASE = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_available() -> bool:
    try:
        with psycopg.connect(PG_BASE.replace("+psycopg", ""), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@contextmanager
def database(kind: str, workdir: Path):
    """A fresh database URL: an SQLite file, or a PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir}/bench-{uuid.uuid4().hex[:8]}.db"
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    dsn = PG_BASE.replace("+psycopg", "")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOMMO_")}
    env.update({"DATABASE_URL": database_url, "SECRET_KEY": SECRET, "ENV": "test", **extra})
    return env


def mailsync(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], env=env, cwd=cwd,
                          check=True, capture_output=True, text=True)


@contextmanager
def server(command: list[str], env: dict[str, str], cwd: Path, port: int, log: Path):
    with log.open("w") as out, subprocess.Popen(command, env=env, cwd=cwd, stdout=out,
                                                stderr=subprocess.STDOUT) as proc:
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_ready(url: str, proc: subprocess.Popen, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx2.get(url, timeout=1).status_code < 500:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {within} s")


def run_async(coro):
    return asyncio.run(coro)
