"""The production install, as an operator does it: build the wheel, install it into a brand-new
virtual environment without the dev extra (pinned by constraints.txt), then run `mailsync` from
an empty directory. A runtime dependency that only a dev package pulls in fails here."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pip(python: Path, *args: str, cwd: Path) -> str:
    done = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin/` folder of a fresh venv holding only the wheel and its runtime closure."""
    work = tmp_path_factory.mktemp("install")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(work / "dist"), str(ROOT)],
                   check=True, capture_output=True, cwd=work, timeout=300)
    wheel = next((work / "dist").glob("mailsync-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True, timeout=300)
    python = work / "venv" / "bin" / "python"
    _pip(python, "install", "--quiet", "-c", str(ROOT / "constraints.txt"), str(wheel), cwd=work)
    return python.parent


@pytest.fixture
def operator_env(tmp_path: Path) -> dict[str, str]:
    """An operator's shell: no Kommo keys, nothing of the test environment."""
    keep = ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update({"ENV": "development", "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/mailsync.db"})
    return env


def _mailsync(bin_dir: Path, *args: str, env: dict[str, str], cwd: Path, timeout: float = 60):
    return subprocess.run([str(bin_dir / "mailsync"), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_constraints_pin_exactly_the_runtime_closure(installed: Path, tmp_path: Path):
    frozen = _pip(installed / "python", "freeze", "--exclude", "mailsync", cwd=tmp_path).split()
    pinned = [line for line in (ROOT / "constraints.txt").read_text().split("\n")
              if line and not line.startswith("#")]
    assert sorted(frozen, key=str.lower) == sorted(pinned, key=str.lower)


def _subcommands(bin_dir: Path, path: list[str], env: dict[str, str], cwd: Path) -> Iterator[list[str]]:
    """Every command path, read from the commands each `--help` lists."""
    result = _mailsync(bin_dir, *path, "--help", env=env, cwd=cwd)
    assert result.returncode == 0, (path, result.stderr)
    assert "usage: mailsync" in result.stdout
    yield path
    listed = result.stdout.split("positional arguments:")[-1].split("options:")[0]
    for name in re.findall(r"^    ([a-z][a-z-]*)\b", listed, flags=re.MULTILINE):
        yield from _subcommands(bin_dir, [*path, name], env, cwd)


def test_every_command_has_help(installed: Path, operator_env, tmp_path: Path):
    paths = list(_subcommands(installed, [], operator_env, tmp_path))
    for expected in (["serve"], ["worker"], ["migrate"], ["accounts"], ["rotate-keys"]):
        assert expected in paths


def test_installed_wheel_migrates_and_serves_on_sqlite(installed: Path, operator_env, tmp_path: Path):
    migrated = _mailsync(installed, "migrate", env=operator_env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    port = _free_port()
    with subprocess.Popen([str(installed / "mailsync"), "serve", "--port", str(port)], env=operator_env,
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        try:
            ready = _wait_ready(proc, port)
            assert ready.status_code == 200, ready.text
            assert ready.json()["database"] == "ok"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        finally:
            proc.kill()


def _wait_ready(proc: subprocess.Popen, port: int) -> httpx2.Response:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mailsync serve exited with {proc.returncode}:\n{proc.stdout.read()[-3000:]}")
        try:
            return httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
        except httpx2.TransportError:
            time.sleep(0.1)
    pytest.fail("mailsync serve did not answer /readyz within 60 s")


def test_installed_wheel_migrates_and_runs_a_worker_on_postgresql(
        installed: Path, operator_env, tmp_path: Path, pg_schema_url: str):
    env = {**operator_env, "DATABASE_URL": pg_schema_url}
    migrated = _mailsync(installed, "migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    with subprocess.Popen([str(installed / "mailsync"), "worker"], env=env, cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        try:
            deadline = time.monotonic() + 60
            started = ""
            while "started" not in started and time.monotonic() < deadline and proc.poll() is None:
                started = proc.stderr.readline()
            assert re.search(r"worker \S+ started", started), started
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            assert re.search(r"worker \S+ stopped", proc.stderr.read())
        finally:
            proc.kill()


def test_installed_wheel_builds_the_widget_archive(installed: Path, operator_env, tmp_path: Path):
    built = _mailsync(installed, "widget", "build", "--out", "w.zip", env=operator_env, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / "w.zip") as archive:
        names = set(archive.namelist())
    assert {"manifest.json", "script.js", "i18n/en.json", "images/logo_main.png"} <= names


def test_installed_wheel_serves_the_sandbox_page(installed: Path, operator_env, tmp_path: Path):
    port = _free_port()
    env = {**operator_env, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/sandbox.db"}
    with subprocess.Popen([str(installed / "mailsync"), "sandbox", "--port", str(port)], env=env,
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        try:
            deadline = time.monotonic() + 60
            while (ready := _wait_ready(proc, port)).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)  # 503 while the demo account is being installed
            assert ready.status_code == 200, ready.text
            base = f"http://127.0.0.1:{port}/sandbox"
            for path in ("/", "/widget/script.js", "/widget/classes/config.js", "/vendor/jquery.js",
                         "/static/board.js", "/widget/i18n/es.json"):
                assert httpx2.get(base + path, timeout=5).status_code == 200, path
            assert f"http://127.0.0.1:{port}" in httpx2.get(base + "/widget/classes/config.js").text
        finally:
            proc.kill()
