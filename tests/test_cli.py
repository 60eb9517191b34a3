"""The `mailsync` commands, run as a user would: separate processes, exit codes, output."""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx2
import pytest

from backend import repository
from backend.activity_hourly import truncate_hour
from backend.models import Backfill, VendorUsage, utcnow
from backend.security import Vault, new_fernet_key
from backend.settings import Secret
from tests.conftest import TEST_SECRET_KEY, make_settings


def run(args, env, cwd, timeout=60):
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli_env(database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOMMO_", "ENV"))}
    env.update({"DATABASE_URL": database_url, "SECRET_KEY": TEST_SECRET_KEY, "ENV": "test"})
    return env


def test_migrate_twice_then_accounts(cli_env, tmp_path):
    first = run(["migrate"], cli_env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "database at revision 0006" in first.stdout
    assert run(["migrate"], cli_env, tmp_path).returncode == 0
    accounts = run(["accounts"], cli_env, tmp_path)
    assert accounts.returncode == 0
    assert accounts.stdout.strip() == "no accounts installed"
    assert run(["accounts", "--json"], cli_env, tmp_path).stdout == ""


def test_rotate_keys(cli_env, tmp_path):
    assert run(["migrate"], cli_env, tmp_path).returncode == 0
    new_key = run(["rotate-keys", "--new-key"], cli_env, tmp_path)
    assert new_key.returncode == 0 and len(new_key.stdout.strip()) == 44
    rotated = run(["rotate-keys"], {**cli_env, "ENCRYPTION_KEYS": new_key.stdout.strip()}, tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 0 secrets" in rotated.stdout


def test_usage_errors_exit_2(cli_env, tmp_path):
    assert run([], cli_env, tmp_path).returncode == 2
    assert run(["frobnicate"], cli_env, tmp_path).returncode == 2


def test_production_without_secrets_exits_1_naming_the_variable(cli_env, tmp_path):
    env = {**cli_env, "ENV": "production", "ENCRYPTION_KEYS": new_fernet_key()}
    env.pop("SECRET_KEY")
    result = run(["migrate"], env, tmp_path)
    assert result.returncode == 1
    assert "SECRET_KEY" in result.stderr
    assert TEST_SECRET_KEY not in result.stderr


def test_worker_stops_cleanly_on_sigterm(cli_env, tmp_path):
    assert run(["migrate"], cli_env, tmp_path).returncode == 0
    with subprocess.Popen([sys.executable, "-m", "backend.cli", "worker"], env=cli_env,
                          cwd=tmp_path, stderr=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stderr.readline()
            assert re.fullmatch(r"worker \S+ started \(concurrency 8; kinds: backfill_page, esp_batch, "
                                r"esp_event, kommo_catchup, reconcile_contact, reconcile_lead\)",
                                json.loads(line)["msg"])
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            proc.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_serve_migrates_answers_health_and_says_sandbox(cli_env, tmp_path):
    port = _free_port()
    with subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", str(port)],
                          env=cli_env, cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        _serve_checks(proc, port)


def _serve_checks(proc, port):
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx2.TransportError:
                time.sleep(0.1)
        assert ready is not None and ready.status_code == 200, "server did not come up"
        assert httpx2.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught (exit -15).
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        output = proc.stdout.read()
        assert "sandbox mode" in output
        assert re.search(r"worker \S+ stopped", output)  # the embedded worker was shut down, not killed
        assert TEST_SECRET_KEY not in output
    finally:
        proc.kill()


async def test_accounts_shows_vendor_calls_token_health_and_backfill(
        cli_env, tmp_path, database_url, engine, sessions, make_accounts):
    await make_accounts(5, 6)
    hour = truncate_hour(utcnow())
    async with sessions() as session, session.begin():
        vault = Vault(make_settings(database_url).encryption_keys)
        await repository.save_kommo_tokens(session, vault, 5, repository.KommoTokens(
            Secret("a"), Secret("r"), datetime(2020, 1, 2, 3, 4, tzinfo=UTC)))
        await repository.set_account_status(session, 5, "needs_reauth")
        session.add_all([
            VendorUsage(account_id=5, vendor="kommo", hour=hour, calls=40, rate_limited=3),
            VendorUsage(account_id=5, vendor="mailerlite", hour=hour, calls=12),
            VendorUsage(account_id=5, vendor="kommo", hour=hour - timedelta(hours=1), calls=7),
            VendorUsage(account_id=5, vendor="kommo", hour=hour - timedelta(hours=2), calls=99),
            Backfill(account_id=5, state="running", dry_run=False, total=1000, done=250,
                     started_at=datetime(2026, 6, 7, 8, 9, tzinfo=UTC))])
    async with sessions() as session:
        refreshed = (await repository.get_kommo_token_row(session, 5)).refreshed_at
    as_json = await asyncio.to_thread(run, ["accounts", "--json"], cli_env, tmp_path)
    table = await asyncio.to_thread(run, ["accounts"], cli_env, tmp_path)
    if truncate_hour(utcnow()) != hour:
        pytest.skip("an hour began during the test")
    assert as_json.returncode == 0, as_json.stderr
    first, second = (json.loads(line) for line in as_json.stdout.splitlines())
    assert first == {
        "account_id": 5, "host": "a5.kommo.com", "status": "needs_reauth", "token": "expired",
        "token_expires_at": "2020-01-02T03:04:00Z",
        "token_refreshed_at": refreshed.isoformat().replace("+00:00", "Z"),
        "needs_reauth": True, "esp": None, "pending_jobs": 0, "dead_jobs": 0,
        "calls_this_hour": {"kommo": {"calls": 40, "rate_limited": 3},
                            "mailerlite": {"calls": 12, "rate_limited": 0}},
        "calls_previous_hour": {"kommo": {"calls": 7, "rate_limited": 0}},
        "backfill": {"state": "running", "dry_run": False, "done": 250, "total": 1000,
                     "started_at": "2026-06-07T08:09:00Z"}}
    assert (second["calls_this_hour"], second["backfill"], second["needs_reauth"]) == ({}, None, False)
    lines = table.stdout.splitlines()
    assert "kommo 40 (3×429), mailerlite 12" in lines[1] and "running 250/1000" in lines[1]
    assert "kommo 7" in lines[1] and "2020-01-02T03:04:00Z" in lines[1]
