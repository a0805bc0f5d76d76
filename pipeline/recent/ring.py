"""The ring buffer of recent hashes: time buckets of PDQ codes (photos', and videos' frames) and
where each upload's record is.

Buckets cover `bucket_ms` each; the oldest bucket is dropped whole once it is older than the
horizon or the ring holds more than its cap. A bucket is contiguous arrays (codes as 4 uint64
words, hash times, the hma.hashes partition and offset of each record) and its content ids back to
back in one byte string: about 80 bytes a hash. The full record of a hit is
read back from hma.hashes at its offset. Searches use the index's compiled scan.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from pipeline.index import kernels as K

REVERSE_FROM = 32  # queries at which indexing them beats scanning the ring once per query
COLUMNS = {"codes": (np.uint64, (4,)), "hashed_at": (np.int64, ()), "partition": (np.int32, ()), "offset": (np.int64, ()),
           "id_end": (np.int64, ()), "frame": (np.bool_, ())}


@dataclass
class Bucket:
    start_ms: int
    size: int = 0
    ids: bytearray = field(default_factory=bytearray)  # content ids, UTF-8, back to back (id_end: where each ends)

    def __post_init__(self) -> None:
        for name, (dtype, shape) in COLUMNS.items():
            setattr(self, name, np.zeros((1024,) + shape, dtype=dtype))

    def add(self, content_id: str, code: np.ndarray, hashed_at: int, partition: int, offset: int, frame: bool) -> None:
        if self.size == len(self.hashed_at):
            for name in COLUMNS:
                old = getattr(self, name)
                grown = np.zeros((len(old) * 3 // 2,) + old.shape[1:], dtype=old.dtype)
                grown[: self.size] = old[: self.size]
                setattr(self, name, grown)
        i = self.size
        self.codes[i] = code.view(np.uint64)
        self.hashed_at[i], self.partition[i], self.offset[i], self.frame[i] = hashed_at, partition, offset, frame
        self.ids += content_id.encode()
        self.id_end[i] = len(self.ids)
        self.size += 1

    def content_id(self, i: int) -> str:
        start = int(self.id_end[i - 1]) if i else 0
        return self.ids[start : int(self.id_end[i])].decode()


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
        """Keep a hashed upload (hma.hashes record at partition/offset): the PDQ codes its signal
        types' plug-ins give (a photo's hash, a video's frames); False if it has none."""
        codes = recent_codes(upload["signals"])
        if not codes:
            return False
        at = upload["hashed_at"]
        start = at - at % self.bucket_ms
        if not self.buckets or self.buckets[-1].start_ms < start:
            self.buckets.append(Bucket(start))
        bucket = self.buckets[-1] if self.buckets[-1].start_ms <= start else self._bucket_for(start)
        for code, frame in codes:
            bucket.add(upload["content_id"], np.frombuffer(bytes.fromhex(code), dtype=np.uint8), at, partition, offset,
                       frame)
        self.size += len(codes)
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
        """Content ids, hash times and codes ((n, 32) uint8) of every upload hashed since since_ms
        (whole signals: a photo's hash, not a video's frames)."""
        ids: list[str] = []
        times, codes = [], []
        for b in self.buckets:
            if b.start_ms + self.bucket_ms <= since_ms:
                continue
            keep = np.flatnonzero((b.hashed_at[: b.size] >= since_ms) & ~b.frame[: b.size])
            ids += [b.content_id(i) for i in keep]
            times.append(b.hashed_at[keep])
            codes.append(b.codes[keep].view(np.uint8).reshape(-1, 32))
        if not times:
            return [], np.zeros(0, np.int64), np.zeros((0, 32), np.uint8)
        return ids, np.concatenate(times), np.concatenate(codes)

    def locate(self, content_id: str) -> tuple[int, int] | None:
        """The hma.hashes (partition, offset) of the newest recent upload with this content id.

        A byte search of each bucket's content ids, newest bucket first: no topic is scanned, and
        content older than the ring's horizon (or pushed out by its cap) is not found.
        """
        needle = content_id.encode()
        for b in reversed(self.buckets):
            ends = b.id_end[: b.size]
            pos = b.ids.rfind(needle)
            while pos >= 0:
                i = int(np.searchsorted(ends, pos + len(needle)))
                start = int(ends[i - 1]) if i else 0
                if i < b.size and int(ends[i]) == pos + len(needle) and start == pos:
                    return int(b.partition[i]), int(b.offset[i])
                pos = b.ids.rfind(needle, 0, pos + len(needle) - 1)
        return None

    def search(self, codes: np.ndarray, max_distance: int) -> list[RecentHit]:
        """Recent uploads within max_distance of each query code ((Q, 32) uint8)."""
        queries = np.ascontiguousarray(codes, dtype=np.uint8).view(np.uint64).reshape(-1, 4)
        hits: list[RecentHit] = []
        # Many signals at once (an exchange sync): index them and stream the ring past them.
        reverse = len(queries) >= REVERSE_FROM and max_distance <= 31
        tables = K.build_small_tables(queries) if reverse else None
        for b in list(self.buckets):
            if b.size == 0:
                continue
            capacity = max(64, 4 * len(queries))
            while True:
                out_q = np.empty(capacity, dtype=np.int64)
                out_r = np.empty(capacity, dtype=np.int64)
                out_d = np.empty(capacity, dtype=np.int32)
                if tables is not None:
                    count = K.reverse_scan(b.codes, b.size, queries, tables[0], tables[1], max_distance, out_q, out_r, out_d)
                else:
                    count = K.scan(b.codes, queries, K.NO_ROW_LIST, 0, b.size, np.ones(b.size, np.bool_), max_distance,
                                   out_q, out_r, out_d, 0)
                if count <= capacity:
                    break
                capacity = count
            hits += [RecentHit(b.content_id(r), int(b.hashed_at[r]), int(b.partition[r]), int(b.offset[r]), int(q), int(d))
                     for q, r, d in zip(out_q[:count], out_r[:count], out_d[:count])]
        return hits


def recent_codes(signals: dict[str, dict]) -> list[tuple[str, bool]]:
    """(PDQ hex, is a frame) of the signals of one upload that the ring keeps."""
    from pipeline.signal_types import SIGNAL_TYPES

    out: list[tuple[str, bool]] = []
    for kind, signal in signals.items():
        plugin = SIGNAL_TYPES.get(kind)
        if plugin is None:
            continue
        try:
            out += [(code, plugin.frames) for code in plugin.recent_codes(signal["value"])]
        except ValueError:  # a value its type cannot read has no codes to keep
            continue
    return out
