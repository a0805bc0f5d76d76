"""The ring buffer of recent hashes: time buckets of PDQ codes and where each upload's record is.

Buckets cover `bucket_ms` each; the oldest bucket is dropped whole once it is older than the
horizon or the ring holds more than its cap. A bucket is contiguous arrays (codes as 4 uint64
words, hash times, the hma.hashes partition and offset of each record) and the content ids: about
60 bytes a hash, so 10M recent uploads fit in well under a gigabyte. The full record of a hit is
read back from hma.hashes at its offset. Searches use the index's compiled scan.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from pipeline.index import kernels as K

COLUMNS = {"codes": (np.uint64, (4,)), "hashed_at": (np.int64, ()), "partition": (np.int32, ()), "offset": (np.int64, ())}


@dataclass
class Bucket:
    start_ms: int
    size: int = 0
    content_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, (dtype, shape) in COLUMNS.items():
            setattr(self, name, np.zeros((1024,) + shape, dtype=dtype))

    def add(self, content_id: str, code: np.ndarray, hashed_at: int, partition: int, offset: int) -> None:
        if self.size == len(self.hashed_at):
            for name in COLUMNS:
                old = getattr(self, name)
                grown = np.zeros((2 * len(old),) + old.shape[1:], dtype=old.dtype)
                grown[: self.size] = old[: self.size]
                setattr(self, name, grown)
        i = self.size
        self.codes[i] = code.view(np.uint64)
        self.hashed_at[i], self.partition[i], self.offset[i] = hashed_at, partition, offset
        self.content_ids.append(content_id)
        self.size += 1


@dataclass(frozen=True)
class RecentHit:
    content_id: str
    hashed_at: int
    partition: int
    offset: int
    query: int  # index of the query code
    distance: int


class RecentRing:
    def __init__(self, horizon_ms: int, cap: int, bucket_ms: int) -> None:
        self.horizon_ms, self.cap, self.bucket_ms = horizon_ms, cap, bucket_ms
        self.buckets: deque[Bucket] = deque()
        self.size = 0

    def add(self, upload: dict, partition: int = 0, offset: int = -1) -> bool:
        """Keep a hashed upload (hma.hashes record at partition/offset); False if it has no PDQ."""
        pdq = upload["signals"].get("pdq")
        if pdq is None:
            return False
        at = upload["hashed_at"]
        start = at - at % self.bucket_ms
        if not self.buckets or self.buckets[-1].start_ms < start:
            self.buckets.append(Bucket(start))
        bucket = self.buckets[-1] if self.buckets[-1].start_ms <= start else self._bucket_for(start)
        code = np.frombuffer(bytes.fromhex(pdq["value"]), dtype=np.uint8)
        bucket.add(upload["content_id"], code, at, partition, offset)
        self.size += 1
        self.evict(at)
        return True

    def _bucket_for(self, start: int) -> Bucket:
        """A late record's bucket (records arrive in time order per partition, not across them)."""
        for bucket in reversed(self.buckets):
            if bucket.start_ms <= start:
                return bucket
        return self.buckets[0]

    def evict(self, now_ms: int) -> int:
        """Drop whole oldest buckets past the horizon or the cap; returns the hashes dropped."""
        dropped = 0
        while self.buckets and (
            self.buckets[0].start_ms + self.bucket_ms <= now_ms - self.horizon_ms or self.size > self.cap
        ):
            gone = self.buckets.popleft()
            self.size -= gone.size
            dropped += gone.size
        return dropped

    def since(self, since_ms: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Content ids, hash times and codes ((n, 32) uint8) of every upload hashed since since_ms."""
        ids: list[str] = []
        times, codes = [], []
        for b in self.buckets:
            if b.start_ms + self.bucket_ms <= since_ms:
                continue
            keep = np.flatnonzero(b.hashed_at[: b.size] >= since_ms)
            ids += [b.content_ids[i] for i in keep]
            times.append(b.hashed_at[keep])
            codes.append(b.codes[keep].view(np.uint8).reshape(-1, 32))
        if not times:
            return [], np.zeros(0, np.int64), np.zeros((0, 32), np.uint8)
        return ids, np.concatenate(times), np.concatenate(codes)

    def search(self, codes: np.ndarray, max_distance: int) -> list[RecentHit]:
        """Recent uploads within max_distance of each query code ((Q, 32) uint8)."""
        queries = np.ascontiguousarray(codes, dtype=np.uint8).view(np.uint64).reshape(-1, 4)
        hits: list[RecentHit] = []
        for b in list(self.buckets):
            if b.size == 0:
                continue
            capacity = max(64, 4 * len(queries))
            while True:
                out_q = np.empty(capacity, dtype=np.int64)
                out_r = np.empty(capacity, dtype=np.int64)
                out_d = np.empty(capacity, dtype=np.int32)
                count = K.scan(b.codes, queries, 0, b.size, np.zeros(b.size, np.bool_), max_distance, out_q, out_r, out_d, 0)
                if count <= capacity:
                    break
                capacity = count
            hits += [RecentHit(b.content_ids[r], int(b.hashed_at[r]), int(b.partition[r]), int(b.offset[r]), int(q), int(d))
                     for q, r, d in zip(out_q[:count], out_r[:count], out_d[:count])]
        return hits
