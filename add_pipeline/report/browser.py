"""Headless Chromium for looking at a report as a person would (tests, the bench's screenshot).

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``)
and the ``selenium`` package; Selenium is pointed at that driver, so it downloads nothing.  The
flags keep Chromium off the network (no background requests, no updates, no sync), which also
keeps it from stalling on a machine without one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def missing() -> str | None:
    """Why a browser cannot be started here (None when it can)."""
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            return f"{path} is missing (apt-get install -y {pkg})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'selenium>=4.20')"
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 1800) -> Iterator[Any]:
    """A Selenium Chrome driver on headless Chromium with a fresh profile, console logs kept.

    Raises:
        RuntimeError: :func:`missing` says why no browser can be started.
    """
    why = missing()
    if why:
        raise RuntimeError(f"no headless Chromium: {why}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="liwi-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_report(driver: Any, html: Path, timeout_s: float = 20.0) -> None:
    """Load ``html`` (a file) and wait until its script has drawn the page."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(html.resolve().as_uri())
    WebDriverWait(driver, timeout_s).until(
        lambda d: d.execute_script("return document.documentElement.getAttribute('data-ready')") == "1")


def console_errors(driver: Any) -> list[str]:
    """The browser console's errors since the last call (messages of level SEVERE)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
