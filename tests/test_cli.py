"""The `mailsync` commands, run as a user would: separate processes, exit codes, output."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx2
import pytest

from backend.security import new_fernet_key
from tests.conftest import TEST_SECRET_KEY


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
    assert "database at revision 0004" in first.stdout
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
            assert re.fullmatch(r"worker \S+ started \(concurrency 8; kinds: esp_event, "
                                r"reconcile_contact, reconcile_lead\)", json.loads(line)["msg"])
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
