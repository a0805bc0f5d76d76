"""The ring buffer of recent hashes: time buckets of PDQ codes with what each upload was.

Buckets cover `bucket_ms` each; the oldest bucket is dropped whole once it is older than the
horizon or the ring holds more than its cap. A bucket is contiguous arrays (codes as 4 uint64
words, hash times) plus the uploads' ids and records, searched with the index's compiled scan.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.index import kernels as K


@dataclass
class Bucket:
    start_ms: int
    codes: np.ndarray = field(default_factory=lambda: np.zeros((1024, 4), dtype=np.uint64))
    size: int = 0
    uploads: list[dict[str, Any]] = field(default_factory=list)  # the hma.hashes record of each row

    def add(self, code: np.ndarray, upload: dict[str, Any]) -> None:
        if self.size == len(self.codes):
            grown = np.zeros((2 * len(self.codes), 4), dtype=np.uint64)
            grown[: self.size] = self.codes[: self.size]
            self.codes = grown
        self.codes[self.size] = code.view(np.uint64)
        self.uploads.append(upload)
        self.size += 1


@dataclass(frozen=True)
class RecentHit:
    upload: dict[str, Any]
    query: int  # index of the query code
    distance: int


class RecentRing:
    def __init__(self, horizon_ms: int, cap: int, bucket_ms: int) -> None:
        self.horizon_ms, self.cap, self.bucket_ms = horizon_ms, cap, bucket_ms
        self.buckets: deque[Bucket] = deque()
        self.size = 0

    def add(self, upload: dict[str, Any]) -> bool:
        """Keep a hashed upload (hma.hashes record) that has a PDQ signal; False if it has none."""
        pdq = upload["signals"].get("pdq")
        if pdq is None:
            return False
        at = upload["hashed_at"]
        start = at - at % self.bucket_ms
        if not self.buckets or self.buckets[-1].start_ms < start:
            self.buckets.append(Bucket(start))
        bucket = self.buckets[-1] if self.buckets[-1].start_ms <= start else self._bucket_for(start)
        bucket.add(np.frombuffer(bytes.fromhex(pdq["value"]), dtype=np.uint8), upload)
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

    def uploads_since(self, since_ms: int) -> list[dict[str, Any]]:
        """Every kept upload hashed at or after since_ms."""
        return [u for b in self.buckets if b.start_ms + self.bucket_ms > since_ms for u in b.uploads if u["hashed_at"] >= since_ms]

    def search(self, codes: np.ndarray, max_distance: int) -> list[RecentHit]:
        """Recent uploads within max_distance of each query code ((Q, 32) uint8)."""
        queries = np.ascontiguousarray(codes, dtype=np.uint8).view(np.uint64).reshape(-1, 4)
        hits: list[RecentHit] = []
        for bucket in self.buckets:
            if bucket.size == 0:
                continue
            capacity = max(64, 4 * len(queries))
            while True:
                out_q = np.empty(capacity, dtype=np.int64)
                out_r = np.empty(capacity, dtype=np.int64)
                out_d = np.empty(capacity, dtype=np.int32)
                dead = np.zeros(bucket.size, dtype=np.bool_)
                count = K.scan(bucket.codes, queries, 0, bucket.size, dead, max_distance, out_q, out_r, out_d, 0)
                if count <= capacity:
                    break
                capacity = count
            hits += [RecentHit(bucket.uploads[r], int(q), int(d)) for q, r, d in zip(out_q[:count], out_r[:count], out_d[:count])]
        return hits
