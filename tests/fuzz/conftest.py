"""One set of running services for every fuzz and abuse test (starting them costs seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.support import Target, running_services


# Package scope, not session: the services set CONTROL_TOKEN in this process's environment, which
# must be gone before any other package's tests run.
@pytest.fixture(scope="package")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    with running_services(tmp_path_factory.mktemp("fuzz")) as running:
        yield running
