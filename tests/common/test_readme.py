"""The README's configuration table and the settings module must not drift apart."""

import re

from stages.common.config import Settings
from tests.support.processes import ROOT


def _documented_variables() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    return names


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    documented = _documented_variables()
    assert settings - documented == set(), "settings missing from the README table"
    assert documented - settings == set(), "README documents variables the code does not read"
