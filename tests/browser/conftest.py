"""Shared fixtures for the web UI tests: one headless Chromium for the whole session.

Starting Chromium costs a second or two on a 2-core machine, so every browser test module shares
one browser; each test opens its own page (a fresh context) with
:func:`tests.support.browser.open_page`, so cookies and state never leak between tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.support.browser import chromium


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """The system Chromium, headless, shared by every browser test in the session."""
    with chromium() as shared:
        yield shared
