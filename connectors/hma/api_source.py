"""An upstream HMA deployment read through its HTTP API, for deployments whose database is out of
reach: the same rows as connectors/hma/source.py, as far as upstream's routes give them.

Upstream's routes list banks (/c/banks), signal types (/c/signal_type) and exchanges
(/c/exchanges, /c/exchange/<name>) but no bank content: content ids are integers handed out in
order, so content is found by asking each bank for each id in turn (/c/bank/<bank>/content/<id>),
until `max_gap` ids in a row are in no bank. What the routes do not give:
- an exchange's fetch checkpoint (its status route has only the checkpoint's time): each exchange
  fetches from the start on its first fetch here;
- which exchange record a fetched content item came from: the content of exchange banks is left
  to that first fetch;
- when content was banked (added_at is 0), and exchange credentials.
"""

from __future__ import annotations

import http.client
import json
from typing import Any, Iterator
from urllib.parse import quote, urlsplit

from connectors.hma.source import SourceError, UpstreamBank, UpstreamContent, UpstreamExchange, UpstreamSettings

NOT_FROM_API = [
    "exchange fetch checkpoints (upstream's API shows only their time): each exchange fetches from the start",
    "content of exchange banks (the API does not say which exchange record it came from): refetched by that fetch",
    "when content was banked (added_at 0)",
    "exchange credentials (store them again with `hmas exchange credentials`)",
]


class ApiSource:
    """Upstream's HTTP API over one kept-alive connection."""

    def __init__(self, url: str, token: str = "", max_gap: int = 1000, timeout_s: float = 30) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceError(f"--from-api wants an http(s) URL, got {url!r}")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.prefix = parts.path.rstrip("/")
        conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.conn = conn_cls(parts.hostname, parts.port, timeout=timeout_s)
        self.headers = {"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        self.max_gap = max_gap
        self._exchange_banks: set[str] = set()
        self._banks: list[str] = []
        self.get("/c/banks")  # reachable, and an HMA API

    def describe(self) -> str:
        return self.url

    def get(self, path: str, missing_ok: bool = False) -> Any:
        """The route's JSON answer; None for a 404 when `missing_ok`; SourceError otherwise."""
        try:
            self.conn.request("GET", self.prefix + path, headers=self.headers)
            response = self.conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            raise SourceError(f"cannot reach {self.url}: {exc}") from None
        if response.status == 404 and missing_ok:
            return None
        if response.status != 200:
            raise SourceError(f"{self.url}{path} answered {response.status}: {body[:200]!r}")
        try:
            return json.loads(body)
        except ValueError:
            raise SourceError(f"{self.url}{path} did not answer JSON: is this an HMA API?") from None

    def settings(self) -> UpstreamSettings:
        banks = [UpstreamBank(b["name"], float(b["matching_enabled_ratio"])) for b in self.get("/c/banks")]
        self._banks = [b.name for b in banks]
        exchanges = []
        for name in self.get("/c/exchanges", missing_ok=True) or []:
            config = self.get(f"/c/exchange/{quote(name)}")
            exchanges.append(UpstreamExchange(name, config["api"], bool(config.get("enabled", True)), config, None))
        self._exchange_banks = {e.name for e in exchanges}
        ratios = {t["name"]: float(t["enabled_ratio"]) for t in self.get("/c/signal_type", missing_ok=True) or []}
        return UpstreamSettings(banks, exchanges, ratios, list(NOT_FROM_API))

    def content_count(self, after_id: int) -> int:
        return 0  # not known before the ids have been tried

    def content(self, after_id: int, batch: int) -> Iterator[list[UpstreamContent]]:
        """Ids after `after_id` tried bank by bank (the last bank that held one first), until
        `max_gap` ids in a row are in none; found items `batch` at a time."""
        banks = [b for b in self._banks if b not in self._exchange_banks]
        found: list[UpstreamContent] = []
        content_id, gap, last_bank = after_id, 0, None
        while gap < self.max_gap and banks:
            content_id += 1
            item = None
            for bank in ([last_bank] if last_bank else []) + [b for b in banks if b != last_bank]:
                item = self._content(bank, content_id)
                if item is not None:
                    last_bank = bank
                    break
            gap = 0 if item is not None else gap + 1
            if item is not None:
                found.append(item)
            if len(found) >= batch:
                yield found
                found = []
        if found:
            yield found

    def _content(self, bank: str, content_id: int) -> UpstreamContent | None:
        body = self.get(f"/c/bank/{quote(bank)}/content/{content_id}?include_signals=true", missing_ok=True)
        if body is None:
            return None
        metadata = {k: v for k, v in (body.get("metadata") or {}).items() if v is not None and k != "collab"}
        return UpstreamContent(int(body["id"]), bank, int(body["disable_until_ts"]), dict(body.get("signals") or {}),
                               0, body.get("original_media_uri"), metadata or None, body.get("note"))

    def close(self) -> None:
        self.conn.close()
