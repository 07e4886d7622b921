"""Headless Chromium for the inspector page's tests: the Debian packages ``chromium`` and
``chromium-driver`` (``make test`` installs them where missing), driven by selenium with
the driver given (selenium never downloads one).

Without them the tests skip, saying why; in CI (``CI=true``) they fail instead. Each
test's last screenshot is saved under ``build/test-artifacts/inspector/`` (or
``$SIM_TEST_ARTIFACTS``) to be looked at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SIM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SIM_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(
    os.environ.get("SIM_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts" / "inspector")
)
START_TIMEOUT_S = 20
#: How long a page may take to show what a test waits for (a bound, not a measurement).
WAIT_S = 30
#: Flags for a machine with no network: without the background-networking ones Chromium
#: waits on services it cannot reach.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests must run in CI: {why}")
    pytest.skip(f"{why} (install the Debian packages chromium and chromium-driver; make test does)")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Chromium for the session, with a fresh profile."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            _unavailable(f"{path} not found")
    profile = tempfile.mkdtemp(prefix="sim-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as e:
        shutil.rmtree(profile, ignore_errors=True)
        _unavailable(f"Chromium did not start: {e.msg}")
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Sim:
    process: subprocess.Popen[str]
    url: str  # ws://127.0.0.1:PORT

    @property
    def page(self) -> str:
        return self.url.replace("ws://", "http://", 1) + "/"


@pytest.fixture
def sim_run() -> Iterator[object]:
    """Start ``sim run ARGS...`` (or ``command``; on ``port``, by default a free one);
    every process is killed at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str | Path, command: str = "run", port: int = 0) -> Sim:
        argv = [sys.executable, "-m", "simulator", command, *map(str, args)]
        process = subprocess.Popen(
            [*argv, "--port", str(port), "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        started.append(process)
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("ws://"), f"sim run printed {url!r}"
        return Sim(process, url)

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=START_TIMEOUT_S)


@pytest.fixture
def screenshot(browser: object, request: pytest.FixtureRequest) -> Iterator[object]:
    """``screenshot(name)`` saves the page now; the test's last state is saved anyway."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def save(name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        browser.save_screenshot(str(path))  # type: ignore[attr-defined]
        return path

    yield save
    save(request.node.name + "-end")
