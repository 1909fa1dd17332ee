"""Prints every fault case's load report at the end of the run, whatever its outcome."""

from __future__ import annotations

from typing import Any

from tests.faults.support import REPORTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTS:
        terminalreporter.section("fault suite load reports")
        for report in REPORTS:
            terminalreporter.write_line(report.render())
            terminalreporter.write_line("")
