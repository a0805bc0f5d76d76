"""The flat (reference) PDQ index against a brute force written independently."""

import numpy as np
import pytest

from pipeline.index import build_pdq_index, code_to_hex, codes_from_hex

rng = np.random.default_rng(5)


def brute(codes: dict[int, np.ndarray], query: np.ndarray, r: int) -> list[tuple[int, int]]:
    out = []
    for i, c in codes.items():
        d = int(np.unpackbits(c ^ query).sum())
        if d <= r:
            out.append((i, d))
    return sorted(out)


def results(index, queries, r):
    lims, ids, dist = index.search(queries, max_distance=r)
    return [sorted(zip(ids[lims[q]:lims[q + 1]].tolist(), dist[lims[q]:lims[q + 1]].tolist())) for q in range(len(queries))]


def near(code: np.ndarray, bits: int) -> np.ndarray:
    out = code.copy()
    for b in rng.choice(256, bits, replace=False):
        out[b // 8] ^= 1 << (b % 8)
    return out


def test_matches_brute_force_through_adds_and_removes():
    base = rng.integers(0, 256, (200, 32), dtype=np.uint8)
    ids = np.arange(1000, 1200, dtype=np.int64)
    index = build_pdq_index(base, ids)
    live = dict(zip(ids.tolist(), base))
    queries = np.stack([near(base[i], b) for i, b in zip(range(0, 200, 10), range(0, 40, 2))] + [base[0] * 0])
    for r in (0, 5, 16, 31, 32, 63):
        assert results(index, queries, r) == [brute(live, q, r) for q in queries]
    gone = ids[::3]
    index.remove(gone)
    index.remove(np.array([999_999]))  # unknown: ignored
    for i in gone.tolist():
        del live[i]
    replacement = rng.integers(0, 256, (5, 32), dtype=np.uint8)
    index.add(replacement, ids[1:6])  # replace existing ids
    live.update(zip(ids[1:6].tolist(), replacement))
    assert len(index) == len(live)
    assert results(index, queries, 31) == [brute(live, q, 31) for q in queries]


def test_hex_round_trip_and_bad_arguments():
    code = rng.integers(0, 256, 32, dtype=np.uint8)
    assert (codes_from_hex([code_to_hex(code)])[0] == code).all()
    index = build_pdq_index(np.zeros((0, 32), np.uint8), np.zeros(0, np.int64))
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 32), np.uint8), max_distance=-1)
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 16), np.uint8))
