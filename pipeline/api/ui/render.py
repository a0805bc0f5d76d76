"""HTML from the template files next to this module: `$name` placeholders filled with escaped text.

A value is escaped unless it is `Html` (markup this package built from escaped parts), so what a
user typed or a bank holds never becomes markup.
"""

from __future__ import annotations

import html
from functools import lru_cache
from importlib import resources
from string import Template
from typing import Any, Iterable
from urllib.parse import urlencode


class Html(str):
    """Markup that is already safe to insert as is."""


def esc(value: Any) -> Html:
    return value if isinstance(value, Html) else Html(html.escape("" if value is None else str(value)))


def join(parts: Iterable[Any]) -> Html:
    return Html("".join(esc(p) for p in parts))


def tag(name: str, content: Any = "", **attrs: Any) -> Html:
    """<name attrs>content</name>; attribute names use `_` for `-` and a trailing `_` for keywords."""
    text = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None and v is not False)
    return Html(f"<{name}{text}>{esc(content)}</{name}>")


def link(href: str, text: Any, **params: Any) -> Html:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return tag("a", text, href=f"{href}?{query}" if query else href)


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], empty: str = "nothing here", **attrs: Any) -> Html:
    rows = list(rows)
    if not rows:
        return tag("p", empty, class_="empty")
    head = tag("tr", join(tag("th", h) for h in headers))
    body = join(tag("tr", join(tag("td", cell) for cell in row)) for row in rows)
    return tag("table", join([tag("thead", head), tag("tbody", body)]), **attrs)


@lru_cache(maxsize=None)
def _template(name: str) -> Template:
    return Template(resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8"))


def render(name: str, **values: Any) -> Html:
    """A template file filled in; every placeholder must be given (a missing one is a bug)."""
    return Html(_template(name).substitute({k: esc(v) for k, v in values.items()}))
