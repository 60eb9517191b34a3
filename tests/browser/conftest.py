"""A real `mailsync sandbox` process per test and a headless Debian Chromium driven by Playwright.

Without Chromium the tests skip and say why; under CI (CI=true, where .ci/run installs it) a
missing Chromium fails them instead, so CI never skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.test_cli import _free_port

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
START_DEADLINE = 60.0


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@dataclass
class Sandbox:
    url: str
    log: Path

    def get(self, path: str) -> httpx2.Response:
        return httpx2.get(f"{self.url}{path}", timeout=10)


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mailsync sandbox exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx2.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)  # polling a starting process; the deadline bounds it
    raise RuntimeError(f"the sandbox was not ready within {START_DEADLINE:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KOMMO_", "MAILERLITE_", "MAILCHIMP_")) and k not in ("PUBLIC_URL", "ENV")}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/sandbox.db"
    log = tmp_path / "sandbox.log"
    with log.open("w") as out, subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "sandbox", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT) as proc:
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, proc, log)
            yield Sandbox(url, log)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


# Module scope: Playwright's sync API keeps an event loop running while it is open, which async
# tests elsewhere in the suite cannot share, so it closes when this module's tests are done.
@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        reason = "no Chromium at /usr/bin/chromium (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the browser tests")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Shots:
    """Numbered screenshots of one test under tests/browser/artifacts/ (RequireJS runs apart)."""

    def __init__(self, page, name: str) -> None:
        folder = ARTIFACTS / ("requirejs" if os.environ.get("SANDBOX_REQUIREJS") else "shim")
        folder.mkdir(parents=True, exist_ok=True)
        self.page, self.prefix, self.count = page, folder / re.sub(r"\W+", "_", name), 0
        for old in folder.glob(f"{self.prefix.name}-*.png"):  # a previous run's steps
            old.unlink()

    def __call__(self, step: str, *, element=None) -> Path:
        """The viewport; with `element` (a modal taller than the window), a window tall enough to
        show all of it, as a user scrolling through it would see it."""
        self.count += 1
        path = Path(f"{self.prefix}-{self.count:02d}-{step}.png")
        size = self.page.viewport_size
        if element is not None:
            height = int(element.evaluate("e => e.scrollHeight"))
            self.page.set_viewport_size({"width": size["width"], "height": max(size["height"], height + 80)})
        try:
            self.page.screenshot(path=str(path))
        finally:
            self.page.set_viewport_size(size)
        return path


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.shots = Shots(page, request.node.name)
    page.js_errors = errors
    try:
        yield page
    finally:
        context.close()
