"""Drives every upstream HMA (OpenMediaMatch) route with upstream's request shapes and checks the
answers against upstream's response shapes. Usable against any HMA-compatible server:

    python -m tests.upstream_api_client http://127.0.0.1:5000 [TOKEN]
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import requests


class UpstreamClient:
    def __init__(self, base: str, token: str = "") -> None:
        self.base = base.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        r = self.session.request(method, self.base + path, timeout=30, **kwargs)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text[:300]}"
        return r.json() if r.headers.get("Content-Type", "").startswith("application/json") else r.text


def _is_bank_config(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("name"), str) and isinstance(obj.get("matching_enabled_ratio"), float)


def check_every_upstream_route(c: UpstreamClient, photo: Path, edit: Path) -> None:
    bank = f"UPSTREAM_{uuid.uuid4().hex[:8].upper()}"
    assert c.call("GET", "/status") == "I-AM-ALIVE"
    assert c.call("GET", "/status/live") == "I-AM-ALIVE"

    # Banks: create, show, list, update.
    created = c.call("POST", "/c/banks", 201, json={"name": bank, "enabled_ratio": 1.0})
    assert _is_bank_config(created) and created["name"] == bank
    c.call("POST", "/c/banks", 403, json={"name": bank})
    assert _is_bank_config(c.call("GET", f"/c/bank/{bank}"))
    assert any(b["name"] == bank for b in c.call("GET", "/c/banks") if _is_bank_config(b))
    assert c.call("PUT", f"/c/bank/{bank}", json={"enabled": True})["matching_enabled_ratio"] == 1.0

    # Content: by file upload (multipart, with metadata and note), by signal.
    added = c.call("POST", f"/c/bank/{bank}/content", files={"file": (photo.name, photo.read_bytes())},
                   data={"metadata": '{"content_id": "ext-1", "json": {"source": "test"}}', "note": "banked in test"})
    assert isinstance(added["id"], int) and set(added["signals"]) >= {"pdq"}
    pdq = added["signals"]["pdq"]
    by_signal = c.call("POST", f"/c/bank/{bank}/signal", json={"pdq": "f" * 64})
    assert by_signal["id"] == added["id"] + 1 and by_signal["signals"] == {"pdq": "f" * 64}

    content = c.call("GET", f"/c/bank/{bank}/content/{added['id']}", params={"include_signals": "true"})
    assert content["id"] == added["id"] and content["disable_until_ts"] == 1
    assert content["bank"]["name"] == bank and content["signals"]["pdq"] == pdq
    assert content["metadata"] == {"content_id": "ext-1", "json": {"source": "test"}} and content["note"] == "banked in test"

    # Hashing.
    assert c.call("POST", "/h/hash", files={"file": (photo.name, photo.read_bytes())})["pdq"] == pdq

    # Matching: lookup by signal (bank -> [{bank_content_id, distance}]), by file (keyed by signal type), raw.
    hits = c.call("GET", "/m/lookup", params={"signal_type": "pdq", "signal": pdq})
    assert hits[bank] == [{"bank_content_id": added["id"], "distance": 0}]
    by_file = c.call("POST", "/m/lookup", files={"file": (edit.name, edit.read_bytes())})
    assert by_file["pdq"][bank][0]["bank_content_id"] == added["id"] and by_file["pdq"][bank][0]["distance"] > 0
    assert added["id"] in c.call("GET", "/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq})["matches"]
    raw = c.call("GET", "/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq, "include_distance": "true"})
    assert {"bank_content_id": added["id"], "distance": "0"} in raw["matches"]
    compared = c.call("POST", "/m/compare", json={"pdq": [pdq, "f" * 64]})
    assert isinstance(compared["pdq"][0], bool) and isinstance(compared["pdq"][1]["distance"], int)

    # Disable a content item (disable_until_ts 0): lookups no longer list it; enable again (1).
    assert c.call("PUT", f"/c/bank/{bank}/content/{added['id']}", json={"disable_until_ts": 0})["disable_until_ts"] == 0
    assert bank not in c.call("GET", "/m/lookup", params={"signal_type": "pdq", "signal": pdq})
    c.call("PUT", f"/c/bank/{bank}/content/{added['id']}", json={"disable_until_ts": 1})
    assert bank in c.call("GET", "/m/lookup", params={"signal_type": "pdq", "signal": pdq})

    # Delete content, then the bank.
    assert c.call("DELETE", f"/c/bank/{bank}/content/{by_signal['id']}") == {"deleted": 1}
    c.call("GET", f"/c/bank/{bank}/content/{by_signal['id']}", 404)
    assert c.call("DELETE", f"/c/bank/{bank}") == {"message": "Done"}
    c.call("GET", f"/c/bank/{bank}", 404)


if __name__ == "__main__":
    bridge = Path(__file__).resolve().parent / "media/pdq/data/bridge-mods"  # see tests/media/README.md
    check_every_upstream_route(UpstreamClient(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""),
                               bridge / "aaa-orig.jpg", bridge / "blur-a-lot.jpg")
    print("every upstream route answered in upstream's shapes")
