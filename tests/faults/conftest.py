"""Attaches each fault case's load report to its test report, so the summary at the end of the
run (tests/conftest.py) prints every report, also when the case ran in an xdist worker."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from tests.faults.support import REPORTS

LOAD_REPORT = "load_report"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call":
        return
    # Every load report made while this test ran belongs to it.
    while REPORTS:
        report.user_properties.append((LOAD_REPORT, REPORTS.pop(0).render()))
