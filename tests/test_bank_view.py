"""The bank view's columnar signal rows against a plain dict model, under interleaved changes.

Also the key map (open addressing with backward-shift deletion) against a dict, and the overflow
path for keys whose 64-bit hashes collide (forced here with a tiny hash).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from pipeline import topics as T
from pipeline.banks import bank_signal_record
from pipeline.index.codes import code_to_hex
from pipeline.state import bank_view as bank_view_module
from pipeline.state.bank_view import BankEntry, BankView
from pipeline.state.u64_map import MAX_LOAD, U64Map
from tests.pipeline_env import VIEW_MODEL_BANKS, VIEW_MODEL_MD5S, VIEW_MODEL_POOL, check_view, conformed_bank, run_ops

# changes to the view: ("add", bank, pool index, content id, disable_until_ts, has metadata), ("md5", bank, index),
# ("remove", n)
op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(VIEW_MODEL_BANKS), st.integers(0, len(VIEW_MODEL_POOL) - 1),
              st.integers(1, 50), st.sampled_from([0, 1, 4_000_000_000]), st.booleans()),
    st.tuples(st.just("md5"), st.sampled_from(VIEW_MODEL_BANKS), st.integers(0, len(VIEW_MODEL_MD5S) - 1)),
    st.tuples(st.just("remove"), st.integers(0, 200)),
)


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.lists(op, min_size=1, max_size=12), min_size=1, max_size=8))
def test_view_follows_interleaved_adds_updates_and_removes(batches):
    view = BankView()
    for bank in VIEW_MODEL_BANKS:
        view.apply_bank(bank, conformed_bank(bank))
    run_ops(view, batches)


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.lists(op, min_size=1, max_size=12), min_size=1, max_size=6))
def test_colliding_key_hashes_go_to_the_overflow(batches):
    original = bank_view_module.key_hash
    bank_view_module.key_hash = lambda key: original(key) % 3  # three hashes for every key
    try:
        view = BankView()
        run_ops(view, batches)
    finally:
        bank_view_module.key_hash = original


def test_new_and_reenabled_signals_are_announced():
    view = BankView()
    seen = []
    view.on_new_signals = lambda entries: seen.extend((e.key, e.value) for e in entries)
    key, record = bank_signal_record("ALPHA", 1, "pdq", VIEW_MODEL_POOL[1])
    view.apply_signals([(key, record)])  # a bank without a record banks nothing
    assert seen == []
    view.apply_bank("ALPHA", conformed_bank("ALPHA"))  # its record makes the waiting signal banked
    assert seen == [(key, VIEW_MODEL_POOL[1])]
    view.apply_bank("ALPHA", conformed_bank("ALPHA", action="remove"))  # a change of a known bank
    assert len(seen) == 1
    view.apply_signals([(key, None)])
    view.apply_signals([(key, {**record, "disable_until_ts": 0})])
    assert len(seen) == 1
    view.apply_signals([(key, record)])
    assert seen == [(key, VIEW_MODEL_POOL[1])] * 2
    view.apply_signals([(key, record)])  # already enabled: not new
    assert len(seen) == 2


def test_a_renamed_banks_record_announces_nothing():
    """The signals of a rename's new name matched already under the old one (pipeline/bank_rename.py)."""
    view = BankView()
    seen = []
    view.apply_bank("OLD", conformed_bank("OLD"))
    key, record = bank_signal_record("OLD", 1, "pdq", VIEW_MODEL_POOL[2])
    view.apply_signals([(key, record)])
    view.on_new_signals = lambda entries: seen.extend(e.key for e in entries)
    moved_key, moved = bank_signal_record("NEW", 1, "pdq", VIEW_MODEL_POOL[2], {"renamed_from": "OLD"})
    view.apply_signals([(moved_key, moved)])
    view.apply_bank("NEW", {**conformed_bank("NEW"), "renamed_from": "OLD"})
    assert seen == []


def test_records_whose_key_and_signal_disagree_are_not_applied():
    view = BankView()
    key, record = bank_signal_record("ALPHA", 1, "pdq", VIEW_MODEL_POOL[1])
    view.apply_signals([("ALPHA/pdq/0000000000000000", record), (key, {**record, "value": "zz"}),
                        (key, {**record, "signal_id": "not-hex"})])
    assert view.signal_count() == 0 and view.rejected == 3


@hsettings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300), st.integers(0, 10**6)), max_size=400))
def test_u64_map_matches_a_dict(ops):
    m, model = U64Map(), {}
    for put, key, value in ops:
        k = key * 0x100000001  # spread over high and low bits; many share a home slot in 1024
        if put:
            m.put_many(np.array([k], dtype=np.uint64), np.array([value]))
            model[k] = value
        else:
            m.delete_many(np.array([k], dtype=np.uint64))
            model.pop(k, None)
    queries = np.array([k * 0x100000001 for k in range(301)], dtype=np.uint64)
    assert m.get_many(queries).tolist() == [model.get(int(q), -1) for q in queries]
    assert len(m) == len(model)


def test_u64_map_grows():
    m = U64Map()
    keys = np.random.default_rng(1).integers(0, 2**63, 50_000).astype(np.uint64)
    m.put_many(keys, np.arange(50_000))
    m.delete_many(keys[::2])
    assert len(m) == 25_000
    assert m.get_many(keys[1::2]).tolist() == list(range(1, 50_000, 2))
    assert (m.get_many(keys[::2]) == -1).all()


def test_key_map_grows_by_doubling_its_slots():
    """Keys added in batches, as a cold read adds them: the map stays between MAX_LOAD / 2 and
    MAX_LOAD full once past its first size, and keeps every key."""
    m = U64Map()
    keys = np.random.default_rng(2).integers(0, 2**63, 300_000).astype(np.uint64)
    for start in range(0, len(keys), 20_000):
        m.put_many(keys[start:start + 20_000], np.arange(start, start + 20_000))
        load = len(m) / (m.nbytes() // 16)
        assert MAX_LOAD / 2 - 0.05 < load <= MAX_LOAD
    assert m.get_many(keys).tolist() == list(range(len(keys)))
    m.put_many(np.arange(1, 2_000_001, dtype=np.uint64), np.zeros(2_000_000, dtype=np.int64))  # a batch past twice
    assert len(m) / (m.nbytes() // 16) <= MAX_LOAD


def test_rows_of_removed_signals_are_reused():
    view = BankView()
    view.apply_bank("ALPHA", conformed_bank("ALPHA"))
    rng = np.random.default_rng(3)
    codes = [code_to_hex(rng.integers(0, 256, 32, dtype=np.uint8)) for _ in range(3000)]
    live: dict[str, str] = {}
    for round_ in range(30):
        changes = []
        for key in list(live)[: len(live) // 10]:  # a tenth of the bank removed ...
            changes.append((key, None))
            del live[key]
        while len(live) < 200:  # ... and as many new signals banked
            key, record = bank_signal_record("ALPHA", 1000 * round_ + len(live), "pdq", codes[len(changes) % 3000])
            changes.append((key, record))
            live[key] = record["value"]
        view.apply_signals(changes)
    assert view.signal_count() == 200
    assert view.rows.n <= 200 + 2 * 20  # the rows of one batch's removals wait for the next batch
    assert sorted(e.key for e in view.entries()) == sorted(live)
    for key, value in list(live.items())[:20]:
        [found] = view.search("pdq", [value], 0)
        assert key in {c.entry.key for c in found}


def test_a_pinned_search_keeps_its_rows_from_being_reused():
    view = BankView()
    view.apply_bank("ALPHA", conformed_bank("ALPHA"))
    old_key, old = bank_signal_record("ALPHA", 1, "pdq", VIEW_MODEL_POOL[0])
    view.apply_signals([(old_key, old)])
    with view.pinned():
        [[(row, distance)]] = view.search_rows("pdq", [VIEW_MODEL_POOL[0]], 0)
        view.apply_signals([(old_key, None)])
        new_key, new = bank_signal_record("ALPHA", 2, "pdq", VIEW_MODEL_POOL[5])
        view.apply_signals([(new_key, new)])  # a new signal, while the search's row is still read
        assert view.candidates([[(row, distance)]]) == [[]]  # the removed signal is gone, not replaced
    view.apply_signals([bank_signal_record("ALPHA", 3, "pdq", VIEW_MODEL_POOL[6])])
    assert view.rows.n == 2  # once the pin is gone, row 0 is taken again
    assert sorted(e.key for e in view.entries()) == sorted([new_key, bank_signal_record("ALPHA", 3, "pdq", VIEW_MODEL_POOL[6])[0]])


def test_an_entry_rewritten_as_a_record_reads_back_as_itself_with_its_changes():
    key, record = bank_signal_record("ALPHA", 7, "pdq", VIEW_MODEL_POOL[0], {"note": "n"})
    view = BankView()
    view.apply_signals([(key, T.BANK_SIGNALS.codec.conform(record))])
    [entry] = view.entries()
    rewritten = T.BANK_SIGNALS.codec.conform(entry.to_record())
    assert rewritten["added_at"] >= record["added_at"]
    assert {**rewritten, "added_at": 0} == {**T.BANK_SIGNALS.codec.conform(record), "added_at": 0}
    entry.to_record()["metadata"]["note"] = "changed"
    assert entry.metadata == {"note": "n"}  # the record's metadata is a copy
    view.apply_signals([(key, entry.to_record(disable_until_ts=0, metadata={"note": "m"}))])
    assert list(view.entries()) == [BankEntry(key, "ALPHA", 7, "pdq", entry.signal_id, VIEW_MODEL_POOL[0], 0, {"note": "m"})]


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.lists(op, min_size=1, max_size=12), min_size=1, max_size=8))
def test_a_view_without_an_index_keeps_the_same_entries(batches):
    view = BankView(searchable=False)
    for bank in VIEW_MODEL_BANKS:
        view.apply_bank(bank, conformed_bank(bank))
    model = run_ops(view, batches)
    restored = BankView(searchable=False)
    restored.load(*view.export())  # a snapshot of values only restores them
    check_view(restored, model)


def test_a_view_without_an_index_refuses_searches_and_indexed_snapshots():
    view = BankView(searchable=False)
    view.apply_bank("ALPHA", conformed_bank("ALPHA"))
    view.apply_signals([bank_signal_record("ALPHA", 1, "pdq", VIEW_MODEL_POOL[1])])
    with pytest.raises(RuntimeError, match="without an index"):
        view.search("pdq", [VIEW_MODEL_POOL[1]], 0)
    with pytest.raises(ValueError, match="values-only"):
        BankView().load(*view.export())
    with pytest.raises(ValueError, match="values-only"):
        view.load(*BankView().export())


def test_row_metadata_reads_back_as_new_dicts_and_empty_means_none():
    from pipeline.state.signal_rows import RowMetadata

    md = RowMetadata()
    md.set(3, {"exchange": "X", "exchange_record": '["pdq", "ab"]'})
    md.set(4, {})
    first = md.get(3)
    first["exchange"] = "changed"
    assert md.get(3) == {"exchange": "X", "exchange_record": '["pdq", "ab"]'}
    assert (3 in md, 4 in md, len(md), md.get(4)) == (True, False, 1, {})
    md.set(3, {})
    md.set(5, {"note": "n"})
    md.drop(5)
    assert len(md) == 0 and list(md.items()) == []
