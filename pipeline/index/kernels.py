"""Compiled kernels of the multi-index-hashing PDQ index (numba, no GIL held).

Codes are rows of 4 uint64 words (the 32 bytes viewed little-endian). Table t keys a code by its
bits [23 t, 23 t + 23) (11 tables cover 253 of the 256 bits); a table is a counting-sorted CSR:
offsets[key] .. offsets[key + 1] index into rows. Verification is the popcount of XOR on 4 words.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TABLES = 11
KEY_BITS = 23
BUCKETS = 1 << KEY_BITS


@njit(cache=True, nogil=True, inline="always")
def _popcount64(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True, nogil=True, inline="always")
def distance(a, b):
    return (_popcount64(a[0] ^ b[0]) + _popcount64(a[1] ^ b[1])
            + _popcount64(a[2] ^ b[2]) + _popcount64(a[3] ^ b[3]))


@njit(cache=True, nogil=True, inline="always")
def substring(code, table):
    start = table * KEY_BITS
    word = start >> 6
    shift = start & 63
    value = code[word] >> np.uint64(shift)
    if shift + KEY_BITS > 64:
        value |= code[word + 1] << np.uint64(64 - shift)
    return np.uint32(value & np.uint64(BUCKETS - 1))


@njit(cache=True, nogil=True)
def build_table(codes, n, table, offsets, rows):
    """Counting sort of rows [0, n) by their key in `table` into offsets (BUCKETS + 1) and rows (n)."""
    offsets[:] = 0
    for r in range(n):
        offsets[substring(codes[r], table) + 1] += 1
    for k in range(BUCKETS):
        offsets[k + 1] += offsets[k]
    fill = offsets[:-1].copy()
    for r in range(n):
        k = substring(codes[r], table)
        rows[fill[k]] = r
        fill[k] += 1


# _probe and scan each spell out the verify-and-record step: factored into a shared inline
# helper, numba compiled the probe loop 5x slower here (18k -> 3.4k lookups/s at 1M).
@njit(cache=True, nogil=True, inline="always")
def _probe(codes, q, qi, offsets, rows, key, dead, max_d, out_q, out_rows, out_d, count):
    for j in range(offsets[key], offsets[key + 1]):
        r = rows[j]
        if dead[r]:
            continue
        d = distance(codes[r], q)
        if d <= max_d:
            if count < out_rows.shape[0]:
                out_q[count] = qi
                out_rows[count] = r
                out_d[count] = d
            count += 1
    return count


@njit(cache=True, nogil=True)
def search(codes, queries, offsets, rows, indexed, total, dead, max_d, radius, out_q, out_rows, out_d):
    """(query, row, distance) for rows within max_d: table probes within `radius` bits of each
    query's keys over rows [0, indexed), then a scan of rows [indexed, total). Tables are the outer
    loop so that one table's offsets stay in cache for the whole batch. A row found through several
    tables appears several times (the caller removes repeats). Returns the count found (out_* may
    be too small: then call again with room for that many)."""
    count = 0
    for t in range(TABLES):
        offsets_t = offsets[t]
        rows_t = rows[t]
        for qi in range(queries.shape[0]):
            q = queries[qi]
            key = substring(q, t)
            count = _probe(codes, q, qi, offsets_t, rows_t, key, dead, max_d, out_q, out_rows, out_d, count)
            if radius >= 1:
                for a in range(KEY_BITS):
                    k1 = key ^ np.uint32(1 << a)
                    count = _probe(codes, q, qi, offsets_t, rows_t, k1, dead, max_d, out_q, out_rows, out_d, count)
                    if radius >= 2:
                        for b in range(a + 1, KEY_BITS):
                            k2 = k1 ^ np.uint32(1 << b)
                            count = _probe(codes, q, qi, offsets_t, rows_t, k2, dead, max_d,
                                           out_q, out_rows, out_d, count)
    return scan(codes, queries, indexed, total, dead, max_d, out_q, out_rows, out_d, count)


@njit(cache=True, nogil=True)
def scan(codes, queries, start, end, dead, max_d, out_q, out_rows, out_d, count):
    """(query, row, distance) for rows [start, end) within max_d, by scanning them: the delta, and
    the whole index for distances past 31."""
    for qi in range(queries.shape[0]):
        q = queries[qi]
        for r in range(start, end):
            if not dead[r]:
                d = distance(codes[r], q)
                if d <= max_d:
                    if count < out_rows.shape[0]:
                        out_q[count] = qi
                        out_rows[count] = r
                        out_d[count] = d
                    count += 1
    return count


# Many queries against many rows (a batch of newly banked signals against the ring of recent
# hashes): index the queries instead, with 16 tables of 16-bit keys (d <= 31 leaves some key at
# most 1 bit apart), small enough to stay in cache while every row is streamed past them.
SMALL_TABLES = 16
SMALL_BITS = 16


@njit(cache=True, nogil=True, inline="always")
def small_key(code, table):
    return np.uint32((code[table >> 2] >> np.uint64((table & 3) * 16)) & np.uint64(0xFFFF))


@njit(cache=True, nogil=True)
def build_small_tables(queries):
    n = queries.shape[0]
    offsets = np.zeros((SMALL_TABLES, (1 << SMALL_BITS) + 1), dtype=np.int64)
    members = np.zeros((SMALL_TABLES, n), dtype=np.int64)
    for t in range(SMALL_TABLES):
        for i in range(n):
            offsets[t, small_key(queries[i], t) + 1] += 1
        for k in range(1 << SMALL_BITS):
            offsets[t, k + 1] += offsets[t, k]
        fill = offsets[t, :-1].copy()
        for i in range(n):
            k = small_key(queries[i], t)
            members[t, fill[k]] = i
            fill[k] += 1
    return offsets, members


@njit(cache=True, nogil=True)
def reverse_scan(codes, size, queries, offsets, members, max_d, out_q, out_rows, out_d):
    """(query, row, distance) for rows [0, size) within max_d (<= 31) of any query, each pair once."""
    count = 0
    seen = np.full(queries.shape[0], -1, dtype=np.int64)
    for r in range(size):
        code = codes[r]
        for t in range(SMALL_TABLES):
            key = small_key(code, t)
            for flip in range(-1, SMALL_BITS):
                k = key if flip < 0 else key ^ np.uint32(1 << flip)
                for j in range(offsets[t, k], offsets[t, k + 1]):
                    qi = members[t, j]
                    if seen[qi] == r:
                        continue
                    seen[qi] = r
                    d = distance(code, queries[qi])
                    if d <= max_d:
                        if count < out_rows.shape[0]:
                            out_q[count] = qi
                            out_rows[count] = r
                            out_d[count] = d
                        count += 1
    return count
