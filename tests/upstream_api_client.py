"""Drives every upstream HMA (OpenMediaMatch) route with upstream's request shapes and checks the
answers against upstream's response shapes. Usable against any HMA-compatible server:

    python -m tests.upstream_api_client http://127.0.0.1:5000 [TOKEN]
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import requests
from threatexchange.signal_type.pdq.signal import PdqSignal


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


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def check_every_upstream_route(c: UpstreamClient, photo: Path, edit: Path, media_url: str | None = None) -> None:
    """Every upstream route but the exchanges', with whole answers compared as upstream's tests do.

    `media_url` serves `photo` and `edit` by name, from a host the server may fetch from; without
    it the routes that fetch a URL are left out.
    """
    bank = f"UPSTREAM_{uuid.uuid4().hex[:8].upper()}"
    check_status_and_documents(c)
    check_banks(c, bank)
    pdq, edit_pdq = check_hashing(c, photo, edit, media_url)
    added = check_content(c, bank, photo, pdq)
    check_matching(c, bank, added, pdq, edit, edit_pdq, media_url)
    check_signal_and_content_types(c)
    check_rename_and_delete(c, bank, added, pdq)


def check_status_and_documents(c: UpstreamClient) -> None:
    assert c.call("GET", "/status") == "I-AM-ALIVE"
    assert c.call("GET", "/status/live") == "I-AM-ALIVE"
    assert c.call("GET", "/openapi/openapi.json")["info"]["title"] == "Open Media Match API"
    site = c.call("GET", "/site-map")
    assert site == sorted(site) and {"/c/banks", "/m/lookup", "/m/raw_lookup", "/m/compare", "/h/hash"} <= set(site)


def check_banks(c: UpstreamClient, bank: str) -> None:
    """test_api_banks.py's shapes: a bank is {"name", "matching_enabled_ratio"} and nothing else."""
    c.call("POST", "/c/banks", 400, json={"name": "01_" + bank})
    c.call("POST", "/c/banks", 400, json={"name": bank.lower()})
    created = c.call("POST", "/c/banks", 201, json={"name": bank})
    assert created == {"name": bank, "matching_enabled_ratio": 1.0}
    c.call("POST", "/c/banks", 403, json={"name": bank})
    assert c.call("GET", f"/c/bank/{bank}") == created
    assert created in c.call("GET", "/c/banks")
    assert c.call("PUT", f"/c/bank/{bank}", json={"enabled": False}) == {"name": bank, "matching_enabled_ratio": 0}
    assert c.call("PUT", f"/c/bank/{bank}", json={"enabled_ratio": 0.5}) == {"name": bank, "matching_enabled_ratio": 0.5}
    assert c.call("PUT", f"/c/bank/{bank}", json={"enabled": True}) == created
    c.call("PUT", f"/c/bank/{bank}", 400, json={"name": "1_invalid_name"})
    c.call("GET", f"/c/bank/NO_{bank}", 404)
    c.call("PUT", f"/c/bank/NO_{bank}", 404, json={"enabled": True})


def check_hashing(c: UpstreamClient, photo: Path, edit: Path, media_url: str | None) -> tuple[str, str]:
    hashed = c.call("POST", "/h/hash", files={"file": (photo.name, photo.read_bytes())})
    assert set(hashed) == {"pdq"} and len(hashed["pdq"]) == 64
    edit_pdq = c.call("POST", "/h/hash", files={"file": (edit.name, edit.read_bytes())})["pdq"]
    if media_url:
        assert c.call("GET", "/h/hash", params={"url": f"{media_url}/{photo.name}"}) == hashed
    return hashed["pdq"], edit_pdq


def check_content(c: UpstreamClient, bank: str, photo: Path, pdq: str) -> dict[str, int]:
    """Content by file upload (with metadata and note) and by signal; shown, changed, removed."""
    added = c.call("POST", f"/c/bank/{bank}/content", files={"file": (photo.name, photo.read_bytes())},
                   data={"metadata": '{"content_id": "ext-1", "json": {"source": "test"}}', "note": "banked in test"})
    assert added == {"id": added["id"], "signals": {"pdq": pdq}} and isinstance(added["id"], int)
    by_signal = c.call("POST", f"/c/bank/{bank}/signal", json={"pdq": "f" * 64, "note": "by signal"})
    assert by_signal == {"id": added["id"] + 1, "signals": {"pdq": "f" * 64}}
    ids = {"file": added["id"], "signal": by_signal["id"]}

    bank_json = {"name": bank, "matching_enabled_ratio": 1.0}
    shown = c.call("GET", f"/c/bank/{bank}/content/{added['id']}", params={"include_signals": "true"})
    assert shown == {
        "id": added["id"], "disable_until_ts": 1, "original_media_uri": None, "bank": bank_json,
        "signals": {"pdq": pdq}, "note": "banked in test",
        "metadata": {"content_id": "ext-1", "content_uri": None, "json": {"source": "test"}, "collab": None},
    }
    assert c.call("GET", f"/c/bank/{bank}/content/{added['id']}", params={"include_metadata": "false"}) == {
        "id": added["id"], "disable_until_ts": 1, "original_media_uri": None, "bank": bank_json,
        "note": "banked in test"}
    assert c.call("GET", f"/c/bank/{bank}/content/{by_signal['id']}") == {
        "id": by_signal["id"], "disable_until_ts": 1, "original_media_uri": None, "bank": bank_json,
        "note": "by signal"}
    c.call("GET", f"/c/bank/{bank}/content/999999999", 404)

    changed = c.call("PUT", f"/c/bank/{bank}/content/{by_signal['id']}", json={"disable_until_ts": 0, "note": ""})
    assert changed == {"id": by_signal["id"], "disable_until_ts": 0, "collab_metadata": {}, "original_media_uri": None,
                       "bank": bank_json, "user_metadata": None, "note": None}
    c.call("PUT", f"/c/bank/{bank}/content/{by_signal['id']}", 400, json={"disable_until_ts": 9999999999})
    assert c.call("DELETE", f"/c/bank/{bank}/content/{by_signal['id']}") == {"deleted": 1}
    assert c.call("DELETE", f"/c/bank/{bank}/content/{by_signal['id']}") == {"deleted": 0}
    c.call("GET", f"/c/bank/{bank}/content/{by_signal['id']}", 404)
    return ids


def check_matching(c: UpstreamClient, bank: str, added: dict[str, int], pdq: str, edit: Path, edit_pdq: str,
                   media_url: str | None) -> None:
    """test_match_api.py's and test_e2e_workflow.py's shapes; `banks` keeps other banks out."""
    near = hamming(pdq, edit_pdq)
    banked = sorted(v for k, v in added.items() if k != "signal")
    exact = {bank: [{"bank_content_id": i, "distance": "0"} for i in banked]}
    assert c.call("GET", "/m/lookup", params={"signal_type": "pdq", "signal": pdq, "banks": bank}) == exact
    assert c.call("GET", "/m/lookup", params={"signal_type": "pdq", "signal": "5" * 64}) == {}
    by_file = c.call("POST", "/m/lookup", params={"banks": bank}, files={"file": (edit.name, edit.read_bytes())})
    assert by_file == {"pdq": {bank: [{"bank_content_id": i, "distance": str(near)} for i in banked]}}
    if media_url:
        assert c.call("GET", "/m/lookup", params={"url": f"{media_url}/{edit.name}", "banks": bank}) == by_file
        check_content_by_url(c, f"{bank}_BY_URL", edit, edit_pdq, media_url)
    raw = c.call("GET", "/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq, "banks": bank})
    assert raw == {"matches": banked}
    raw = c.call("GET", "/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq, "include_distance": "true",
                                                 "banks": bank})
    assert raw == {"matches": [{"bank_content_id": i, "distance": "0"} for i in banked]}
    assert c.call("POST", "/m/compare", json={"pdq": [pdq, edit_pdq]}) == {"pdq": [near <= 31, {"distance": near}]}
    c.call("POST", "/m/compare", 400, json={"pdq": [pdq]})
    status = c.call("GET", "/m/index/status", params={"signal_type": "pdq"})
    assert set(status) == {"pdq"} and set(status["pdq"]) == {"present", "built_to", "size"}
    assert status["pdq"]["present"] is True and status["pdq"]["size"] >= len(banked)

    # A disabled content item (disable_until_ts 0) is no longer listed; enabled again (1), it is.
    first = added["file"]
    c.call("PUT", f"/c/bank/{bank}/content/{first}", json={"disable_until_ts": 0})
    rest = {bank: [{"bank_content_id": i, "distance": "0"} for i in banked if i != first]} if len(banked) > 1 else {}
    assert c.call("GET", "/m/lookup", params={"signal_type": "pdq", "signal": pdq, "banks": bank}) == rest
    c.call("PUT", f"/c/bank/{bank}/content/{first}", json={"disable_until_ts": 1})
    assert c.call("GET", "/m/lookup", params={"signal_type": "pdq", "signal": pdq, "banks": bank}) == exact


def check_content_by_url(c: UpstreamClient, bank: str, media: Path, media_pdq: str, media_url: str) -> None:
    c.call("POST", "/c/banks", 201, json={"name": bank})
    url = f"{media_url}/{media.name}"
    added = c.call("POST", f"/c/bank/{bank}/content", params={"url": url, "content_type": "photo"})
    assert added == {"id": added["id"], "signals": {"pdq": media_pdq}}
    assert c.call("GET", "/m/lookup", params={"url": url, "banks": bank}) == {
        "pdq": {bank: [{"bank_content_id": added["id"], "distance": "0"}]}}
    assert c.call("DELETE", f"/c/bank/{bank}") == {"message": "Done"}


def check_signal_and_content_types(c: UpstreamClient) -> None:
    assert {"name": "pdq", "enabled_ratio": 1.0} in c.call("GET", "/c/signal_type")
    c.call("PUT", "/c/signal_type/pdq", 204, json={"enabled_ratio": 1.0})  # as it was
    content_types = c.call("GET", "/c/content_type")  # upstream's shape; its photo and video among them
    assert {"name": "photo", "enabled": True} in content_types and {"name": "video", "enabled": True} in content_types
    index = c.call("GET", "/c/signal_type/index", params={"signal_type": "pdq"})
    assert set(index) == {"pdq"} and index["pdq"]["index_size"] >= 1
    assert set(index["pdq"]) == {"db_size", "index_size", "index_out_of_date", "newest_db_item", "index_built_to"}


def check_rename_and_delete(c: UpstreamClient, bank: str, added: dict[str, int], pdq: str) -> None:
    """Upstream renames a bank with PUT and a new name; its content and ids stay."""
    renamed = f"{bank}_RENAMED"
    other = c.call("POST", "/c/banks", 201, json={"name": f"{bank}_OTHER"})
    c.call("PUT", f"/c/bank/{bank}", 403, json={"name": other["name"]})
    assert c.call("PUT", f"/c/bank/{bank}", json={"name": renamed}) == {"name": renamed, "matching_enabled_ratio": 1.0}
    c.call("GET", f"/c/bank/{bank}", 404)
    assert c.call("GET", f"/c/bank/{renamed}") == {"name": renamed, "matching_enabled_ratio": 1.0}
    shown = c.call("GET", f"/c/bank/{renamed}/content/{added['file']}", params={"include_signals": "true"})
    assert shown["id"] == added["file"] and shown["signals"] == {"pdq": pdq}
    assert shown["bank"] == {"name": renamed, "matching_enabled_ratio": 1.0}
    c.call("GET", f"/c/bank/{bank}/content/{added['file']}", 404)
    banked = sorted(v for k, v in added.items() if k != "signal")
    assert c.call("GET", "/m/lookup", params={"signal_type": "pdq", "signal": pdq, "banks": f"{bank},{renamed}"}) == {
        renamed: [{"bank_content_id": i, "distance": "0"} for i in banked]}
    names = [b["name"] for b in c.call("GET", "/c/banks")]
    assert renamed in names and bank not in names

    for name in (renamed, other["name"]):
        assert c.call("DELETE", f"/c/bank/{name}") == {"message": "Done"}
        c.call("GET", f"/c/bank/{name}", 404)
    assert c.call("DELETE", f"/c/bank/{renamed}") == {"message": "Done"}  # deleting again succeeds


def check_upstream_flows_on_an_empty_server(c: UpstreamClient, reset: Callable[[], None]) -> None:
    """The flows of upstream's test_api_banks.py and test_e2e_workflow.py, each from an empty
    server (`reset` empties it, as upstream's fixtures give each test a new database): ids from 1,
    whole lists compared."""
    reset()
    assert c.call("GET", "/c/banks") == []
    created = c.call("POST", "/c/banks", 201, json={"name": "MY_TEST_BANK_01"})
    assert created == {"matching_enabled_ratio": 1.0, "name": "MY_TEST_BANK_01"}
    assert c.call("GET", "/c/banks") == [created]

    reset()
    c.call("POST", "/c/banks", 201, json={"name": "MY_TEST_BANK"})
    c.call("PUT", "/c/bank/MY_TEST_BANK", 400, json={"name": "1_invalid_name"})
    assert c.call("PUT", "/c/bank/MY_TEST_BANK", json={"name": "MY_TEST_BANK_RENAMED"})["name"] == "MY_TEST_BANK_RENAMED"
    assert c.call("PUT", "/c/bank/MY_TEST_BANK_RENAMED", json={"enabled": False})["matching_enabled_ratio"] == 0
    assert c.call("PUT", "/c/bank/MY_TEST_BANK_RENAMED", json={"enabled_ratio": 0.5})["matching_enabled_ratio"] == 0.5
    assert c.call("GET", "/c/banks") == [{"name": "MY_TEST_BANK_RENAMED", "matching_enabled_ratio": 0.5}]

    reset()
    c.call("POST", "/c/banks", 201, json={"name": "TEST_BANK"})
    examples = PdqSignal.get_examples()
    for pdq in examples:
        c.call("POST", "/c/bank/TEST_BANK/signal", json={"pdq": pdq})
    build_info = c.call("GET", "/m/index/status", params={"signal_type": "pdq"})["pdq"]
    assert build_info["present"] is True and build_info["size"] == len(examples)
    assert c.call("GET", "/m/lookup", params={"signal_type": "pdq", "signal": examples[-1]}) == {
        "TEST_BANK": [{"bank_content_id": 16, "distance": "0"}]}
    assert c.call("GET", "/m/lookup", params={"signal_type": "pdq", "signal": "5" * 64}) == {}


if __name__ == "__main__":
    bridge = Path(__file__).resolve().parent / "media/pdq/data/bridge-mods"  # see tests/media/README.md
    check_every_upstream_route(UpstreamClient(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""),
                               bridge / "aaa-orig.jpg", bridge / "blur-a-lot.jpg")
    print("every upstream route answered in upstream's shapes")
