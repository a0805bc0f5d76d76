"""What the fault benches count after a run: for every upload they produced, its hash record, its
match record and (for uploads that match) its action, with the copies written more than once
(the pipeline delivers at least once), and the dead letters among them."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from pipeline import topics as T
from pipeline.client import Client
from pipeline.config import Settings


def copies_by_key(settings: Settings, spec: T.TopicSpec, ids: set[str]) -> Counter:
    """How many records of the topic each of `ids` has (keys only: the values are not decoded), read
    to the topic's end: the benches count once they have seen every output they wait for."""
    return Counter(key for key, _ in Client(settings).read(spec, to_end=True, raw=True) if key in ids)


def account_uploads(settings: Settings, ids: set[str], acted: set[str]) -> dict[str, Any]:
    """Per output topic: records expected, uploads without one, uploads with more than one and the
    copies beyond the first. `acted`: the uploads whose match the bank acts on."""
    report: dict[str, Any] = {"uploads": len(ids)}
    for spec, expected in ((T.HASHES, ids), (T.MATCHES, ids), (T.ACTIONS, acted)):
        copies = copies_by_key(settings, spec, expected)
        report[spec.suffix] = {
            "expected": len(expected), "missing": len(expected - copies.keys()),
            "written_more_than_once": sum(1 for n in copies.values() if n > 1),
            "extra_copies": sum(n - 1 for n in copies.values() if n > 1),
        }
    report["dead_letters"] = sum(copies_by_key(settings, T.DEAD_LETTERS, ids).values())
    return report


def nothing_lost(report: dict[str, Any]) -> bool:
    return all(report[spec.suffix]["missing"] == 0 for spec in (T.HASHES, T.MATCHES, T.ACTIONS)) \
        and report["dead_letters"] == 0


class KeyFollower(threading.Thread):
    """Follows a topic from its beginning and counts the distinct keys starting with `prefix`, so
    that a bench sees when every upload it sent has come out (keys only: cheap at millions)."""

    def __init__(self, settings: Settings, spec: T.TopicSpec, prefix: str) -> None:
        super().__init__(daemon=True)
        self.settings, self.spec, self.prefix = settings, spec, prefix
        self.keys: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        for key, _ in Client(self.settings).read(self.spec, raw=True, timeout_s=10**7):
            if key is not None and key.startswith(self.prefix):
                self.keys.add(key)
            if self.stop.is_set():
                return

    def wait_for(self, count: int, timeout_s: float) -> float | None:
        """Seconds until `count` distinct keys were seen, None if not within timeout_s."""
        started = time.perf_counter()
        while len(self.keys) < count:
            if time.perf_counter() - started > timeout_s:
                return None
            time.sleep(0.2)
        return time.perf_counter() - started
