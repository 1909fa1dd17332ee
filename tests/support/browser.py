"""A real headless Chromium for the web UI tests (Playwright driving the system browser).

``./test.sh`` installs Debian's ``chromium``; Playwright never downloads a browser here (there is
no internet in CI). Every page opened through :func:`open_page` records console errors and
uncaught page errors, so a test can assert that a page loaded cleanly, and a screenshot of each
page is saved under ``SCREENSHOT_DIR`` for a human to look at after the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Kept outside the repository's tracked files; CI can archive it.
SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR", "test-artifacts/screenshots"))


@dataclass
class PageErrors:
    """Console errors and uncaught exceptions a page produced."""

    console: list[str] = field(default_factory=list)
    uncaught: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return [*self.console, *self.uncaught]


@contextmanager
def chromium() -> Iterator[Browser]:
    """The system Chromium, headless; closed on exit."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(browser: Browser) -> Iterator[tuple[Page, PageErrors]]:
    """A fresh page whose console errors and uncaught exceptions are recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors = PageErrors()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.console.append(message.text)

    def on_page_error(error: Error) -> None:
        errors.uncaught.append(str(error))

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    try:
        yield page, errors
    finally:
        context.close()


def save_screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as ``<SCREENSHOT_DIR>/<name>.png`` and return its path."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
