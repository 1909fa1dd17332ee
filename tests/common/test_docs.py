"""The manual must not drift from the code: every setting documented, every link alive, a short
README."""

import re
from pathlib import Path

import pytest

from stages.common.config import Settings
from tests.support.processes import ROOT

README_MAX_LINES = 250
MANUAL = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted(ROOT.glob("0*/README.md")),
    *sorted((ROOT / "stages").glob("*/README.md")),
]

# [text](target) outside code; images and reference-style links are not used in the manual.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _documented_variables() -> set[str]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    return names


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _FENCE.sub("", markdown).splitlines():
        match = re.match(r"^#{1,6} (.+?)\s*#*$", line)
        if match:
            base = anchor(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(markdown: str) -> list[str]:
    prose = _CODE_SPAN.sub("", _FENCE.sub("", markdown))
    return _LINK.findall(prose)


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            problems.append(f"{target}: no file {resolved}")
        elif (
            fragment and resolved.suffix == ".md" and fragment not in anchors(resolved.read_text())
        ):
            problems.append(f"{target}: no heading with anchor #{fragment}")
    return problems


def test_every_setting_is_in_the_configuration_table() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    documented = _documented_variables()
    assert settings - documented == set(), "settings missing from docs/configuration.md"
    unknown = documented - settings
    assert unknown == set(), "docs/configuration.md documents variables the code does not read"


def test_the_readme_is_at_most_250_lines() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("page", MANUAL, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    other = "# Other\n\n## Start, stop, status\n\n```\n# not a heading\n```\n"
    (tmp_path / "other.md").write_text(other)
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#start-stop-status) [file](missing.md) [anchor](other.md#not-a-heading) "
        "[self](#page) `[code](gone.md)` [web](https://example.com/x.md)\n\n# Page\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2, problems
    assert problems[0].startswith("missing.md: no file")
    assert problems[1] == "other.md#not-a-heading: no heading with anchor #not-a-heading"


def _heredoc(script: str) -> str:
    """The first here-document of a script: the usage text its ``--help`` prints."""
    text = (ROOT / script).read_text()
    return text.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]


@pytest.mark.parametrize("script", ["start.sh", "stop.sh"])
def test_the_script_usage_describes_the_product_as_it_is(script: str) -> None:
    usage = _heredoc(script)
    assert usage.startswith(f"usage: ./{script} [SERVICE...] [--timeout SECONDS]")
    assert "(no names = every service" in usage
    assert "so far" not in usage and "yet" not in usage
    if script == "start.sh":
        # Every argument the script itself handles is described.
        for option in ("status", "--install-only", "-h, --help"):
            assert f"\n  {option} " in usage, option
