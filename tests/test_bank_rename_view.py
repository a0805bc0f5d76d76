"""A bank rename's writes (pipeline/bank_rename.py) as a lagging matcher's view reads them: after
every record, in every order the two topics can interleave, each banked signal matches under
exactly one name, with its content id.
"""

from __future__ import annotations

import pytest

from pipeline import topics as T
from pipeline.bank_rename import bank_swap, moved_signals, retired_signals
from pipeline.banks import bank_signal_record
from pipeline.config import Settings
from pipeline.matching import match_batch
from pipeline.state.bank_view import BankView
from tests.pipeline_env import conformed_bank, hashed, random_pdq

CODES = [random_pdq() for _ in range(4)]
CONFIRMED_COPY = random_pdq()


def initial_writes() -> list[tuple[T.TopicSpec, str, dict | None]]:
    writes = [(T.BANKS, "OLD", conformed_bank("OLD", distances={"pdq": 20}, action="remove")),
              (T.BANKS, "CONFIRMED", conformed_bank("CONFIRMED")),
              (T.BANKS, "FEED", conformed_bank("FEED", suppressed_by=["OLD"])),
              (T.BANKS, "THIRD", conformed_bank("THIRD", confirmed_bank="OLD"))]
    for i, code in enumerate(CODES):
        key, record = bank_signal_record("OLD", 100 + i, "pdq", code, {"note": f"n{i}"})
        writes.append((T.BANK_SIGNALS, key, record))
    key, record = bank_signal_record("CONFIRMED", 7, "pdq", CONFIRMED_COPY, {"confirmed_from": "OLD/101"})
    writes.append((T.BANK_SIGNALS, key, record))
    return writes


def apply(view: BankView, writes) -> None:
    for spec, key, record in writes:
        view.apply(spec, [(key, record)])


def rename_steps() -> tuple[BankView, list, list, list]:
    """The three steps as the API computes them, each applied to its view before the next."""
    api = BankView()
    apply(api, initial_writes())
    moved, moved_from = moved_signals(api, "OLD", "NEW")
    apply(api, moved)
    swap = bank_swap(api, api.banks["OLD"], "NEW")
    apply(api, swap)
    retired = retired_signals(api, "OLD", "NEW", moved_from)
    apply(api, retired)
    return api, moved, swap, retired


def banks_matched(view: BankView) -> list[tuple[str, int]]:
    records = match_batch([hashed(f"u{i}", code) for i, code in enumerate(CODES)], view, Settings())
    out = []
    for i, record in enumerate(records):
        hits = [(h["bank"], h["bank_content_id"]) for h in record["matches"] if h["bank"] in ("OLD", "NEW")]
        assert len(hits) == 1, f"upload {i}: {hits}"
        assert hits[0][1] == 100 + i
        out.append(hits[0])
    return out


@pytest.mark.parametrize("swap_after", range(2 * len(CODES) + 2))
def test_every_signal_matches_once_under_one_name_throughout(swap_after):
    """The matcher reads the two topics independently: the bank records may come before, among or
    after the moved signals and the tombstones."""
    _, moved, swap, retired = rename_steps()
    signals = moved + retired
    assert len(signals) == 2 * len(CODES) + 1  # and the confirmed copy's provenance
    worker = BankView()
    apply(worker, initial_writes())
    assert {b for b, _ in banks_matched(worker)} == {"OLD"}
    swapped = False
    for write in signals[:swap_after] + swap + signals[swap_after:]:
        apply(worker, [write])
        swapped = swapped or write[1] == "NEW" and write[0] is T.BANKS
        assert {b for b, _ in banks_matched(worker)} == {"NEW" if swapped else "OLD"}


def test_the_bank_its_content_and_references_move_as_a_unit():
    api, moved, swap, retired = rename_steps()
    assert "OLD" not in api.banks and list(api.entries("OLD")) == []
    new = api.banks["NEW"]
    assert (new["distances"], new["action"], new["renamed_from"]) == ({"pdq": 20}, "remove", "OLD")
    entries = sorted(api.entries("NEW"), key=lambda e: e.bank_content_id)
    assert [(e.bank_content_id, e.value, e.metadata) for e in entries] == [
        (100 + i, code, {"note": f"n{i}", "renamed_from": "OLD"}) for i, code in enumerate(CODES)]
    assert api.banks["FEED"]["suppressed_by"] == ["NEW"] and api.banks["THIRD"]["confirmed_bank"] == "NEW"
    [copy] = [e for e in api.entries("CONFIRMED")]
    assert copy.metadata == {"confirmed_from": "NEW/101"} and copy.bank_content_id == 7
    assert sum(1 for _, _, r in retired if r is None) == len(CODES)


def test_signals_added_or_changed_under_the_old_name_during_the_rename_move_too():
    api = BankView()
    apply(api, initial_writes())
    moved, moved_from = moved_signals(api, "OLD", "NEW")
    apply(api, moved)
    late_key, late = bank_signal_record("OLD", 200, "pdq", random_pdq())
    changed_key, changed = bank_signal_record("OLD", 102, "pdq", CODES[2], {"note": "n2", "confirmed": "true"})
    apply(api, [(T.BANK_SIGNALS, late_key, late), (T.BANK_SIGNALS, changed_key, {**changed, "disable_until_ts": 0})])
    apply(api, bank_swap(api, api.banks["OLD"], "NEW"))
    apply(api, retired_signals(api, "OLD", "NEW", moved_from))
    entries = {e.bank_content_id: e for e in api.entries("NEW")}
    assert sorted(entries) == [100, 101, 102, 103, 200]
    assert (entries[102].disable_until_ts, entries[102].metadata) == (
        0, {"note": "n2", "confirmed": "true", "renamed_from": "OLD"})
    assert list(api.entries("OLD")) == []


def test_a_bank_created_later_under_the_old_name_is_a_bank_of_its_own():
    api, *_ = rename_steps()
    api.apply_bank("OLD", conformed_bank("OLD"))
    key, record = bank_signal_record("OLD", 300, "pdq", CODES[0])
    api.apply_signals([(key, record)])
    [first, *_] = match_batch([hashed("u", CODES[0])], api, Settings())
    assert sorted((h["bank"], h["bank_content_id"]) for h in first["matches"] if h["bank"] in ("OLD", "NEW")) == [
        ("NEW", 100), ("OLD", 300)]
    # the renamed bank's next configuration change no longer carries the rename
    api.apply_bank("NEW", {**api.banks["NEW"], "renamed_from": None})
    assert "OLD" in api.banks


@pytest.mark.parametrize("swap_first", [False, True])
def test_moved_signals_are_not_newly_banked(swap_first):
    """The worker searches recent uploads for newly banked signals (retroactive matches): a
    renamed bank's signals under the new name matched already, and are not searched again."""
    _, moved, swap, retired = rename_steps()
    worker = BankView()
    apply(worker, initial_writes())
    notified: list = []
    worker.on_new_signals = notified.extend
    apply(worker, swap + moved + retired if swap_first else moved + swap + retired)
    assert notified == []
    key, record = bank_signal_record("NEW", 400, "pdq", random_pdq())
    apply(worker, [(T.BANK_SIGNALS, key, record)])
    assert [(e.bank, e.bank_content_id) for e in notified] == [("NEW", 400)]


def test_a_name_still_holding_signals_is_not_free():
    api = BankView()
    apply(api, initial_writes())
    moved, _ = moved_signals(api, "OLD", "NEW")
    apply(api, moved + bank_swap(api, api.banks["OLD"], "NEW"))  # interrupted before step 3
    assert "OLD" not in api.banks and api.holds_signals("OLD") and not api.holds_signals("UNUSED")
