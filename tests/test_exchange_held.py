"""The exchange fetcher's map of what a bank holds (connectors/exchanges/held.py): the filter in
memory never hides a held record, and the map answers the same with it."""

from __future__ import annotations

from connectors.exchanges.held import HeldRecords, RecordFilter


def test_the_filter_says_maybe_for_every_added_id_and_rarely_for_others():
    ids = [f'["pdq", "{i:064x}"]' for i in range(200_000)]
    others = [f'["pdq", "{i:064x}"]' for i in range(200_000, 400_000)]
    record_filter = RecordFilter()
    record_filter.add(ids[:100_000])
    record_filter.add(ids[100_000:])
    assert record_filter.maybe(ids) == ids  # no false "not held"
    assert len(record_filter.maybe(others)) < len(others) // 1000
    assert record_filter.maybe([]) == []


def test_held_records_are_found_through_the_filter_after_a_load_and_after_updates():
    held = HeldRecords()
    try:
        held.put_signal("bank/pdq/a1", "r1", 1)
        held.put_signal("bank/pdq/a2", "r1", 1)
        held.put_signal("bank/pdq/b", "r2", 2)
        held.index_records()  # as at a fetch's start: the filter is filled from the loaded map
        assert held.get(["r1", "r2", "r3"]) == {"r1": (1, {"bank/pdq/a1", "bank/pdq/a2"}), "r2": (2, {"bank/pdq/b"})}

        held.update(added=[("r3", 3, {"bank/pdq/c"})], changed=[("r1", {"bank/pdq/a1"})], removed=["r2"])
        assert held.get(["r1", "r2", "r3", "r4"]) == {"r1": (1, {"bank/pdq/a1"}), "r3": (3, {"bank/pdq/c"})}
        assert len(held) == 2

        held.update(added=[("r2", 4, {"bank/pdq/b"})], changed=[], removed=[])  # back after its removal
        assert held.get(["r2"]) == {"r2": (4, {"bank/pdq/b"})}
    finally:
        held.close()


def test_an_added_record_that_is_held_already_replaces_its_row():
    held = HeldRecords()
    try:
        held.update(added=[("r1", 1, ["bank/pdq/a"]), ("r2", 2, ["bank/pdq/b"])], changed=[], removed=[])
        held.update(added=[("r1", 5, ["bank/pdq/a2"])], changed=[], removed=[])
        assert held.get(["r1", "r2"]) == {"r1": (5, {"bank/pdq/a2"}), "r2": (2, {"bank/pdq/b"})}
        assert len(held) == 2 and held.ids() == ["r1", "r2"]
    finally:
        held.close()


def test_records_whose_ids_share_a_hash_are_told_apart(monkeypatch):
    """Rows are found by a hash of the record id; two ids of one hash keep their own rows."""
    import connectors.exchanges.held as held_module

    same = lambda rid: 7  # noqa: E731 - every id collides
    monkeypatch.setattr(held_module, "hash", same, raising=False)
    held = HeldRecords()
    try:
        held._db.create_function("rid_hash", 1, same, deterministic=True)
        held.update(added=[("r1", 1, ["bank/pdq/a"]), ("r2", 2, ["bank/pdq/b"])], changed=[], removed=[])
        assert held.get(["r1"]) == {"r1": (1, {"bank/pdq/a"})}
        held.update(added=[], changed=[("r2", {"bank/pdq/c"})], removed=["r1"])
        assert held.get(["r1", "r2"]) == {"r2": (2, {"bank/pdq/c"})} and len(held) == 1
    finally:
        held.close()
