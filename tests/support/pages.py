"""What a service's page loads: the element ids, scripts, stylesheets and inline styles the
page tests check its CSP-friendly layout with."""

from __future__ import annotations

from html.parser import HTMLParser


class PageAssets(HTMLParser):
    """Collects the ids, the scripts (``None`` for an inline one), the stylesheets and the
    inline styles of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.scripts: list[str | None] = []
        self.stylesheets: list[str] = []
        self.inline_styles = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if attr.get("id"):
            self.ids.add(str(attr["id"]))
        if "style" in attr or tag == "style":
            self.inline_styles += 1
        if tag == "script":
            self.scripts.append(attr.get("src"))
        elif tag == "link" and attr.get("rel") == "stylesheet":
            self.stylesheets.append(str(attr["href"]))
