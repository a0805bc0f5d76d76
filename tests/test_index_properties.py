"""The PDQ index against brute force, with hypothesis: random and adversarial codes, every
max_distance 0-31 and some past it, interleaved adds, removals and searches, across table rebuilds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops.bench.index_bench import make_data
from pipeline.index import groups, mih
from pipeline.index import kernels as K
from pipeline.index.flat import FlatPdqIndex
from pipeline.index.mih import MihPdqIndex

pytestmark = pytest.mark.slow


def as_sets(result, n):
    lims, ids, d = result
    return [sorted(zip(ids[lims[i]:lims[i + 1]].tolist(), d[lims[i]:lims[i + 1]].tolist())) for i in range(n)]


def flip(code: np.ndarray, bits: list[int]) -> np.ndarray:
    out = code.copy()
    for b in bits:
        out[b // 8] ^= 1 << (b % 8)
    return out


@st.composite
def code_sets(draw):
    """Codes that stress the index: duplicates, all-zero, all-one, clusters a few bits apart."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 300))
    kind = draw(st.sampled_from(["random", "clustered", "duplicates", "extremes"]))
    codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    if kind == "clustered":
        centre = codes[0]
        codes = np.stack([flip(centre, list(rng.choice(256, rng.integers(0, 40), replace=False))) for _ in range(n)])
    elif kind == "duplicates":
        codes = codes[rng.integers(0, max(1, n // 10), n)]
    elif kind == "extremes":
        codes[: n // 2] = 0
        codes[n // 2 :] = 255
    queries = np.concatenate([
        np.stack([flip(codes[i % n], list(rng.choice(256, i % 40, replace=False))) for i in range(20)]),
        rng.integers(0, 256, (5, 32), dtype=np.uint8), np.zeros((1, 32), np.uint8), np.full((1, 32), 255, np.uint8),
    ])
    return codes, queries, rng


# Each example builds an index's tables (11 x 2^23 buckets, about a second): the two properties
# that build them most draw 20 and 12 examples a run, new ones each run.
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code_sets())
def test_search_equals_brute_force_at_every_distance(data):
    codes, queries, _ = data
    ids = np.arange(len(codes), dtype=np.int64) * 3 + 7
    index = MihPdqIndex(codes, ids, background_merge=False)
    index.merge()
    reference = FlatPdqIndex(codes, ids)
    for d in range(33):  # 0-31, and 32, the widest the tables serve
        assert as_sets(index.search(queries, d), len(queries)) == as_sets(reference.search(queries, d), len(queries))


@settings(max_examples=10, deadline=None)
@given(code_sets(), st.sampled_from([33, 40, 63, 128]))
def test_distances_past_32_take_the_exact_scan(data, max_distance):
    codes, queries, _ = data
    ids = np.arange(len(codes), dtype=np.int64)
    index, reference = MihPdqIndex(codes, ids, background_merge=False), FlatPdqIndex(codes, ids)
    index.merge()  # tables exist, and are passed by for these distances
    assert as_sets(index.search(queries, max_distance), len(queries)) == as_sets(reference.search(queries, max_distance), len(queries))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code_sets(), st.lists(st.sampled_from(["add", "remove", "replace", "search", "merge"]), min_size=5, max_size=25))
def test_interleaved_changes_match_brute_force(data, steps):
    codes, queries, rng = data
    old = mih.MIN_DELTA
    mih.MIN_DELTA = 16  # tables, merges and row reuse at test sizes
    try:
        index = MihPdqIndex(background_merge=False)
        reference = FlatPdqIndex()
        next_id = 0
        for step in steps:
            if step in ("add", "replace") or next_id == 0:
                k = int(rng.integers(1, 40))
                batch = codes[rng.integers(0, len(codes), k)]
                ids = np.arange(next_id, next_id + k) if step != "replace" or next_id == 0 else rng.integers(0, next_id, k)
                next_id = max(next_id, int(np.max(ids)) + 1)
                index.add(batch, ids)
                reference.add(batch, ids)
            elif step == "remove":
                gone = rng.integers(0, next_id + 5, int(rng.integers(1, 30)))
                index.remove(gone)
                reference.remove(gone)
            elif step == "merge":
                index.merge()
            d = int(rng.integers(0, 32))
            assert len(index) == len(reference)
            assert as_sets(index.search(queries, d), len(queries)) == as_sets(reference.search(queries, d), len(queries))
    finally:
        mih.MIN_DELTA = old


def test_key_substrings_cover_253_bits_without_overlap():
    seen = np.zeros(256, dtype=int)
    for t in range(K.TABLES):
        for bit in range(K.KEY_BITS):
            code = np.zeros(4, dtype=np.uint64)
            b = t * K.KEY_BITS + bit
            code[b // 64] = np.uint64(1) << np.uint64(b % 64)
            assert K.substring(code, t) == 1 << bit
            seen[b] += 1
    assert seen[:253].tolist() == [1] * 253


def test_probe_radii_add_up_past_every_distance():
    for d in range(K.MAX_TABLE_DISTANCE + 1):
        probes = K.probes_per_table(d)
        radius = np.searchsorted(K.PROBES_WITHIN, probes)  # 0, 1 or 2 (-1 for an unprobed table)
        radius[probes == 0] = -1
        assert (radius + 1).sum() > d  # pigeonhole: some table holds every code within d
        assert radius.max() <= 2


def test_removed_rows_are_reused_under_churn(monkeypatch):
    """Memory follows the live codes: after many rounds of churn the row store has not grown."""
    monkeypatch.setattr(mih, "MIN_DELTA", 50)
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 256, (2000, 32), dtype=np.uint8)
    index = MihPdqIndex(codes, np.arange(2000), background_merge=False)
    index.merge()
    reference = FlatPdqIndex(codes, np.arange(2000))
    for _ in range(60):
        ids = rng.choice(2000, 40, replace=False)
        new = rng.integers(0, 256, (40, 32), dtype=np.uint8)
        index.remove(ids)
        index.add(new, ids)
        reference.remove(ids)
        reference.add(new, ids)
    assert index.stats()["high"] <= 2000 + 3 * mih.MIN_DELTA
    queries = np.concatenate([index.codes_of(np.arange(0, 2000, 50)), codes[:10]])
    for d in (0, 12, 31):
        assert as_sets(index.search(queries, d), len(queries)) == as_sets(reference.search(queries, d), len(queries))


def test_searches_stay_exact_while_background_merges_run(monkeypatch):
    """Changes and searches from this thread while the merge thread rebuilds tables under them."""
    monkeypatch.setattr(mih, "MIN_DELTA", 200)
    rng = np.random.default_rng(9)
    base = rng.integers(0, 256, (5000, 32), dtype=np.uint8)
    index = MihPdqIndex(base, np.arange(5000))  # background merges
    reference = FlatPdqIndex(base, np.arange(5000))
    merges_seen = 0
    for step in range(120):
        ids = rng.choice(6000, 100, replace=False)
        if step % 3 == 2:
            index.remove(ids)
            reference.remove(ids)
        else:
            new = base[rng.integers(0, 5000, 100)].copy()
            new[:, 0] ^= rng.integers(0, 256, 100, dtype=np.uint8)  # near-duplicates of banked codes
            index.add(new, ids)
            reference.add(new, ids)
        merges_seen += index._merging is not None and index._merging.is_alive()
        queries = base[rng.integers(0, 5000, 30)]
        d = int(rng.integers(0, 32))
        assert as_sets(index.search(queries, d), 30) == as_sets(reference.search(queries, d), 30)
    index.wait_for_merges()
    assert merges_seen > 0
    assert len(index) == len(reference)


@pytest.mark.parametrize("grouped", [True, False], ids=["groups", "tables-only"])
def test_crowded_clusters_of_a_real_looking_bank_match_brute_force(monkeypatch, grouped):
    """A bank shaped like the clustered bench's: half the codes in clusters of 100-3,000 within
    distance 12 of their centre around shared prototypes, so that tables' buckets crowd; queries
    inside clusters, at their edges and random, checked at every distance the tables serve. With
    the clusters kept as groups, and with no groups (every crowded query through the tables)."""
    if not grouped:
        monkeypatch.setattr(groups, "MIN_GROUP", 10**9)
    codes, queries = make_data(40_000, 120, seed=11, distribution="clustered")
    ids = np.arange(len(codes), dtype=np.int64)
    index = MihPdqIndex(codes, ids, background_merge=False)
    index.merge()
    assert (index.stats()["grouped"] > 10_000) == grouped
    reference = FlatPdqIndex(codes, ids)
    crowded = 0
    for d in (0, 5, 12, 20, 31, 32):
        got, want = as_sets(index.search(queries, d), len(queries)), as_sets(reference.search(queries, d), len(queries))
        assert got == want, d
        crowded = max(crowded, max(len(hits) for hits in want))
    assert crowded >= 100  # some queries did land inside a crowded cluster


def test_a_restored_export_answers_and_changes_as_the_original(monkeypatch):
    """An export taken mid-churn (tables, a delta, dying and free rows) restores to an index whose
    searches, and whose changes after that, are the brute force's; no table is built on the way."""
    monkeypatch.setattr(mih, "MIN_DELTA", 100)
    rng = np.random.default_rng(12)
    codes = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    index = MihPdqIndex(codes, np.arange(3000), background_merge=False)
    reference = FlatPdqIndex(codes, np.arange(3000))

    def churn(target: MihPdqIndex, rounds: int) -> None:
        for _ in range(rounds):
            ids = rng.choice(3500, 60, replace=False)
            new = codes[rng.integers(0, 3000, 60)].copy()
            new[:, 1] ^= rng.integers(0, 256, 60, dtype=np.uint8)
            target.remove(ids[:20])
            reference.remove(ids[:20])
            target.add(new, ids)
            reference.add(new, ids)

    churn(index, 7)
    exported = index.export()
    assert len(exported["delta"]) and len(exported["dying"]) and exported["table_sizes"].max() > 0
    monkeypatch.setattr(mih.K, "build_table", None)  # restoring builds nothing
    restored = MihPdqIndex.restore({name: array.copy() for name, array in exported.items()}, background_merge=False)
    assert restored.stats() == index.stats()
    queries = np.concatenate([codes[rng.integers(0, 3000, 40)], rng.integers(0, 256, (5, 32), dtype=np.uint8)])
    for d in (0, 9, 31, 40):
        assert as_sets(restored.search(queries, d), len(queries)) == as_sets(reference.search(queries, d), len(queries))
    churn(restored, 6)
    assert restored.stats()["free"] + restored.stats()["live"] <= restored.stats()["high"]
    for d in (0, 17, 31):
        assert as_sets(restored.search(queries, d), len(queries)) == as_sets(reference.search(queries, d), len(queries))


def test_grouped_codes_removed_replaced_and_their_rows_reused_match_brute_force():
    """Grouped codes removed, replaced by other codes under their ids, and their freed rows taken
    by new codes near the clusters: no group reports a code its row no longer holds."""
    codes, queries = make_data(40_000, 120, seed=12, distribution="clustered")
    ids = np.arange(len(codes), dtype=np.int64)
    index = MihPdqIndex(codes, ids, background_merge=False)
    reference = FlatPdqIndex(codes, ids)
    grouped_ids = index._ids[index._groups.rows]
    rng = np.random.default_rng(5)
    chosen = rng.choice(grouped_ids, 4000, replace=False)
    removed, replaced = chosen[:2000], chosen[2000:]
    for target in (index, reference):
        target.remove(removed)
    others = rng.integers(0, 256, (2000, 32), dtype=np.uint8)
    for target in (index, reference):
        target.add(others, replaced)
    index.merge()  # the dead rows are free now
    assert index.stats()["free"] >= 4000
    near = codes[rng.integers(0, len(codes), 3000)].copy()
    near[:, 3] ^= rng.integers(0, 256, 3000, dtype=np.uint8)  # near-duplicates of banked codes, in freed rows
    new_ids = np.arange(len(codes), len(codes) + 3000, dtype=np.int64)
    for target in (index, reference):
        target.add(near, new_ids)
    assert index.stats()["free"] <= 1000
    probe = np.concatenate([queries, codes[removed[:40]], codes[replaced[:40]], others[:20], near[:40]])
    for d in (0, 8, 20, 31, 32):
        assert as_sets(index.search(probe, d), len(probe)) == as_sets(reference.search(probe, d), len(probe)), d


def test_a_restored_export_of_a_grouped_index_keeps_its_groups():
    """Codes kept in groups (out of the tables) are in the export too: the restored index finds them."""
    codes, queries = make_data(40_000, 120, seed=21, distribution="clustered")
    ids = np.arange(len(codes), dtype=np.int64)
    index = MihPdqIndex(codes, ids, background_merge=False)
    assert index.stats()["grouped"] > 0
    restored = MihPdqIndex.restore({name: array.copy() for name, array in index.export().items()},
                                   background_merge=False)
    assert restored.stats() == index.stats()
    reference = FlatPdqIndex(codes, ids)
    for d in (0, 12, 31):
        assert as_sets(restored.search(queries, d), len(queries)) == as_sets(reference.search(queries, d), len(queries))


def test_a_bulk_load_merges_a_few_large_deltas(monkeypatch):
    """While changes keep coming, the background merge waits for a pause or a delta several times
    its limit; the answers stay exact meanwhile, and a pause merges what is left."""
    monkeypatch.setattr(mih, "MIN_DELTA", 100)
    monkeypatch.setattr(mih, "QUIET_S", 3600.0)  # no pause comes in the first part
    rng = np.random.default_rng(12)
    codes = rng.integers(0, 256, (750, 32), dtype=np.uint8)
    index, reference = MihPdqIndex(codes[:200], np.arange(200)), FlatPdqIndex(codes[:200], np.arange(200))
    assert index.stats()["delta"] == 0
    for start in range(200, 600, 100):  # 400 rows: over the limit (100), under 5x it
        index.add(codes[start:start + 100], np.arange(start, start + 100))
        reference.add(codes[start:start + 100], np.arange(start, start + 100))
    assert index.stats()["delta"] == 400
    queries = codes[rng.integers(0, 600, 40)]
    assert as_sets(index.search(queries, 31), 40) == as_sets(reference.search(queries, 31), 40)

    index.add(codes[600:750], np.arange(600, 750))  # 550 rows waiting: past 5x the limit, merged at once
    reference.add(codes[600:750], np.arange(600, 750))
    index.wait_for_merges()
    assert index.stats()["delta"] == 0

    monkeypatch.setattr(mih, "QUIET_S", 0.1)
    index.remove(np.arange(0, 150))  # dead rows over the limit: merged once the changes pause
    reference.remove(np.arange(0, 150))
    index.wait_for_merges()
    assert index.stats()["dying"] == 0
    queries = codes[rng.integers(0, 750, 40)]
    assert as_sets(index.search(queries, 31), 40) == as_sets(reference.search(queries, 31), 40)
