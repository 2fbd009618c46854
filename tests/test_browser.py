"""The real app in a real browser: `streamlit run` headless, driven by Playwright in Debian's
Chromium. Goes through every page, launches a tiny training from the Train page, waits on the
Jobs page until it is done, and checks that the Sensitivity page draws its plot. Screenshots go
to screenshots/ (git-ignored).

Needs /usr/bin/chromium (`apt-get install -y chromium`; .ci/run installs it). Without it the
test is skipped, except in CI (env CI set), where it fails."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from darkvalley_core import jobs

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]


def need_chromium():
    if os.path.exists(CHROMIUM):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing in CI: .ci/run should have installed Debian's "
                    "chromium package")
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y "
                "chromium) to run the browser test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(cache: Path, log: Path):
    """`streamlit run app.py` headless in its own process group; returns (process, url)."""
    port = free_port()
    env = {**os.environ, "DARKVALLEY_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.25)
    stop_app(proc)
    raise AssertionError(f"the app did not start:\n{log.read_text()[-3000:]}")


def stop_app(proc) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def settle(page, timeout: float = 60.0) -> None:
    """Wait until the script has finished (no status widget for a moment)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout * 1000)
    deadline = time.time() + timeout
    quiet = 0
    while time.time() < deadline:
        busy = page.locator('[data-testid="stStatusWidget"]').count() > 0
        skeleton = page.locator('[data-testid="stAppSkeleton"]').count() > 0
        quiet = 0 if (busy or skeleton) else quiet + 1
        if quiet >= 4:
            return
        time.sleep(0.25)
    raise AssertionError("the page kept running")


def no_exception(page, where: str) -> None:
    n = page.locator('[data-testid="stException"]').count()
    if n:
        raise AssertionError(f"{where}: {page.locator('[data-testid=stException]').first.inner_text()}")


def nav(page, name: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=name).first.click()
    settle(page)


def metric_value(page, label: str) -> str | None:
    for m in page.locator('[data-testid="stMetric"]').all():
        if m.locator('[data-testid="stMetricLabel"]').inner_text().strip() == label:
            return m.locator('[data-testid="stMetricValue"]').inner_text().strip()
    return None


def test_every_page_and_a_training_from_the_browser(tiny_samples, tmp_path):
    need_chromium()
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(exist_ok=True)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "events").symlink_to(Path(tiny_samples[0]).parent, target_is_directory=True)
    proc, url = start_app(cache, tmp_path / "streamlit.log")
    old_cache = os.environ.get("DARKVALLEY_CACHE")
    os.environ["DARKVALLEY_CACHE"] = str(cache)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/?preset=tiny")
            settle(page)
            no_exception(page, "home")
            page.screenshot(path=str(SHOTS / "0_home.png"), full_page=True)

            links = page.locator('[data-testid="stSidebarNav"] a')
            names = [links.nth(i).inner_text().strip() for i in range(links.count())]
            assert {"Train", "Sensitivity", "Jobs"} <= set(names), names
            for i, name in enumerate(names):
                nav(page, name)
                no_exception(page, name)
                page.screenshot(path=str(SHOTS / f"{i}_{name.replace(' ', '_')}.png"),
                                full_page=True)

            # Launch one tiny training (injected S/sqrt(B) = 3) from the Train page.
            nav(page, "Train")
            box = page.get_by_role("textbox", name="Injected S/√B in the signal region")
            box.fill("3")
            box.press("Enter")
            settle(page)
            assert "python -m darkvalley_core train" in page.locator("code").first.inner_text()
            page.get_by_role("button", name="Launch").click()
            settle(page)
            no_exception(page, "Train after launch")
            page.screenshot(path=str(SHOTS / "train_launched.png"), full_page=True)
            launched = jobs.list_jobs()
            assert len(launched) == 1 and launched[0].kind == "train"

            # The Jobs page follows it (polling while it runs) until it shows it done.
            nav(page, "Jobs")
            deadline = time.time() + 180
            while metric_value(page, "done") != "1":
                assert time.time() < deadline, "the job did not show as done in time"
                no_exception(page, "Jobs while running")
                time.sleep(0.5)
            settle(page)
            no_exception(page, "Jobs")
            page.screenshot(path=str(SHOTS / "jobs_done.png"), full_page=True)
            assert launched[0].state == "done"

            # The Sensitivity page draws the point.
            nav(page, "Sensitivity")
            page.wait_for_selector(".js-plotly-plot", timeout=30_000)
            no_exception(page, "Sensitivity")
            assert page.locator(".js-plotly-plot").count() >= 1
            page.screenshot(path=str(SHOTS / "sensitivity.png"), full_page=True)
            browser.close()
    finally:
        stop_app(proc)
        for job in jobs.list_jobs():
            if job.state in jobs.ACTIVE_STATES:
                jobs.cancel(job.id)
        if old_cache is None:
            os.environ.pop("DARKVALLEY_CACHE", None)
        else:
            os.environ["DARKVALLEY_CACHE"] = old_cache
