"""The ring of recent hashes: search, eviction of whole oldest buckets by horizon and by cap."""

import numpy as np

from pipeline.recent.ring import RecentRing

rng = np.random.default_rng(4)


def upload(cid: str, code: np.ndarray, at: int) -> dict:
    return {"content_id": cid, "signals": {"pdq": {"value": code.tobytes().hex(), "quality": 100}}, "hashed_at": at}


def test_search_finds_near_uploads_with_their_distance():
    ring = RecentRing(horizon_ms=3_600_000, cap=1000, bucket_ms=60_000)
    codes = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    for i, c in enumerate(codes):
        ring.add(upload(f"c{i}", c, 1_000_000 + i * 10_000))
    near = codes[7].copy()
    near[0] ^= 0b111
    hits = ring.search(near[None, :], 31)
    assert [(h.content_id, h.distance, h.hashed_at) for h in hits] == [("c7", 3, 1_070_000)]
    ids, times, codes_since = ring.since(1_400_000)
    assert ids == [f"c{i}" for i in range(40, 50)] and (codes_since == codes[40:]).all() and times[0] == 1_400_000
    assert not ring.add({"content_id": "video", "signals": {"video_md5": {"value": "0" * 32}}, "hashed_at": 1})


def test_the_oldest_bucket_goes_first_past_the_horizon():
    ring = RecentRing(horizon_ms=120_000, cap=1000, bucket_ms=60_000)
    for minute in range(5):
        for i in range(3):
            ring.add(upload(f"m{minute}-{i}", rng.integers(0, 256, 32, dtype=np.uint8), minute * 60_000 + i))
    assert [b.start_ms for b in ring.buckets] == [120_000, 180_000, 240_000]
    assert ring.size == 9


def test_the_cap_drops_whole_oldest_buckets():
    ring = RecentRing(horizon_ms=10**9, cap=5, bucket_ms=1000)
    for second in range(4):
        for i in range(2):
            ring.add(upload(f"s{second}-{i}", rng.integers(0, 256, 32, dtype=np.uint8), second * 1000 + i))
    assert ring.size <= 5 and [b.start_ms for b in ring.buckets] == [2000, 3000]


def test_many_signals_at_once_find_the_same_as_one_by_one():
    ring = RecentRing(horizon_ms=10**9, cap=10**6, bucket_ms=1000)
    codes = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    for i, c in enumerate(codes):
        ring.add(upload(f"u{i}", c, i))
    queries = codes[rng.integers(0, 3000, 100)].copy()
    for i, q in enumerate(queries):
        for b in rng.choice(256, i % 32, replace=False):
            q[b // 8] ^= 1 << (b % 8)
    queries = np.concatenate([queries, np.zeros((1, 32), np.uint8)])
    for d in (0, 15, 31):
        together = sorted((h.query, h.content_id, h.distance) for h in ring.search(queries, d))
        alone = sorted((i, h.content_id, h.distance) for i, q in enumerate(queries) for h in ring.search(q[None, :], d))
        assert together == alone


def test_locate_finds_the_newest_record_of_a_content_id_and_only_whole_ids():
    ring = RecentRing(horizon_ms=10**9, cap=10**6, bucket_ms=1000)
    code = np.zeros(32, np.uint8)
    for offset, (cid, at) in enumerate([("ab", 10), ("b", 20), ("abc", 1500), ("bc", 1600), ("b", 2500)]):
        ring.add(upload(cid, code, at), partition=offset % 2, offset=offset)
    assert ring.locate("b") == (0, 4)  # the newer of the two, in a later bucket
    assert ring.locate("ab") == (0, 0) and ring.locate("abc") == (0, 2) and ring.locate("bc") == (1, 3)
    assert ring.locate("a") is None and ring.locate("c") is None and ring.locate("abcb") is None
    ring.evict(10**9 + 5000)
    assert ring.locate("b") is None  # gone with its bucket
