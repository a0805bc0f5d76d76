"""Compiled kernels of the multi-index-hashing PDQ index (numba, no GIL held).

Codes are rows of 4 uint64 words (the 32 bytes viewed little-endian). Table t keys a code by its
bits [23 t, 23 t + 23) (11 tables cover 253 of the 256 bits); a table is a CSR: offsets[key] ..
offsets[key + 1] index into its rows, sorted by key. Verification is the popcount of XOR on 4 words.

The probe loop is memory-bound (random reads of offsets, rows and codes at 10M codes), so it runs
in stages per (table, query) and prefetches what the next stage reads: the keys' offsets, then
the buckets' rows, then the candidates' codes. That keeps many cache misses in flight instead
of waiting for each in turn (1.7x the lookups/s of the plain loop at 10M codes).
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

TABLES = 11
KEY_BITS = 23
BUCKETS = 1 << KEY_BITS
MAX_TABLE_DISTANCE = 32  # radius 2 in every table covers d <= 32 (pigeonhole); beyond: a full scan
SCAN_BLOCK = 1024  # rows scanned against every query while they sit in L1 (32 KB of codes)


@intrinsic
def prefetch(typingctx, array, index):
    """Hint the CPU to fetch array[index] into cache (llvm.prefetch: read, high locality)."""
    sig = types.void(array, index)

    def codegen(context, builder, signature, args):
        array_type, index_type = signature.args
        ary = context.make_array(array_type)(context, builder, args[0])
        i = context.cast(builder, args[1], index_type, types.intp)
        ptr = cgutils.get_item_pointer(context, builder, array_type, ary, [i], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _popcount64(x):
    # LLVM turns this into the popcnt instruction where the CPU has it
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


@njit(cache=True, nogil=True, inline="always")
def record(out_q, out_rows, out_d, count, qi, r, d):
    """Write one (query, row, distance) if there is room; the count goes on regardless."""
    if count < out_rows.shape[0]:
        out_q[count] = qi
        out_rows[count] = r
        out_d[count] = d
    return count + 1


def probe_masks() -> np.ndarray:
    """XOR masks of the keys within 2 bits of a key: 0, then the 23 one-bit, then the 253 two-bit ones."""
    singles = [1 << a for a in range(KEY_BITS)]
    doubles = [(1 << a) | (1 << b) for a in range(KEY_BITS) for b in range(a + 1, KEY_BITS)]
    return np.array([0, *singles, *doubles], dtype=np.uint32)


PROBE_MASKS = probe_masks()
PROBES_WITHIN = np.array([1, 1 + KEY_BITS, len(PROBE_MASKS)], dtype=np.int64)  # radius 0, 1, 2


@functools.lru_cache(maxsize=None)
def probes_per_table(max_distance: int) -> np.ndarray:
    """How many of PROBE_MASKS each table needs to be exact for max_distance (<= 32).

    Generalised pigeonhole: if table t is probed within radius r_t and the sum of (r_t + 1) over
    the tables exceeds max_distance, a code within max_distance is within r_t of the query in some
    table t. So (max_distance + 1) is spread over the tables: at 31, ten tables of radius 2 and one
    of radius 1; at 10, radius 0 everywhere; at 0, one table at radius 0 and the rest unprobed.
    """
    if not 0 <= max_distance <= MAX_TABLE_DISTANCE:
        raise ValueError(f"table search covers distances 0-{MAX_TABLE_DISTANCE}, not {max_distance}")
    base, extra = divmod(max_distance + 1, TABLES)
    radius = np.array([base if t < extra else base - 1 for t in range(TABLES)])
    radius = np.minimum(radius, 2)
    probes = np.where(radius < 0, 0, PROBES_WITHIN[np.clip(radius, 0, 2)])
    probes.flags.writeable = False  # computed once per distance (every search asks) and shared
    return probes


CROWD_MARGIN = 64  # a query's buckets in a table hold more than twice their expected rows plus this: crowded


@njit(cache=True, nogil=True)
def search_tables(codes, queries, offsets, rows, live, max_d, masks, probes, out_q, out_rows, out_d, count):
    """(query, row, distance) for live rows within max_d found through the tables, each once.

    Table by table, then query by query (one table's offsets and rows at a time): the probed
    keys' offsets are prefetched, then their buckets' rows, then the candidates' codes, and the
    candidates verified. A hit is recorded by the first table whose probes reach it only.
    A query whose buckets crowd (a cluster of near-duplicates around it) leaves this loop at
    that table and finishes in _search_crowded, which reads and verifies each row it reaches once
    (in a crowded cluster a code is reached through most of the 11 tables). Liveness is checked
    only for the few within max_d. Returns the count found; out_* may be too small: then call
    again with room for it.
    """
    flat = codes.reshape(-1)
    n_masks = masks.shape[0]
    keys = np.empty(n_masks, np.uint32)
    starts = np.empty(n_masks, np.uint32)
    ends = np.empty(n_masks, np.uint32)
    cand = np.empty(4096, np.uint32)
    crowded_from = np.full(queries.shape[0], TABLES, np.int64)
    for t in range(TABLES):
        n_probes = probes[t]
        if n_probes == 0:
            continue
        offsets_t = offsets[t]
        rows_t = rows[t]
        crowd = 2 * ((np.int64(offsets_t[BUCKETS]) * n_probes) >> KEY_BITS) + CROWD_MARGIN
        for qi in range(queries.shape[0]):
            if crowded_from[qi] < t:
                continue
            q = queries[qi]
            if _bucket_bounds(offsets_t, rows_t, q, t, masks, n_probes, keys, starts, ends) > crowd:
                crowded_from[qi] = t
                continue
            n_cand = 0
            for p in range(n_probes):
                for j in range(starts[p], ends[p]):
                    r = rows_t[j]
                    if n_cand == cand.shape[0]:
                        cand = np.concatenate((cand, np.empty(n_cand, np.uint32)))
                    cand[n_cand] = r
                    n_cand += 1
                    prefetch(flat, np.int64(r) * 4)
            for c in range(n_cand):
                r = cand[c]
                d = distance(codes[r], q)
                if d <= max_d and live[r] and not _found_earlier(codes[r], q, t, probes):
                    count = record(out_q, out_rows, out_d, count, qi, r, d)
    reached = np.empty(SEEN_SLOTS // 2, np.uint32)
    slot_rows, slot_query = _seen_slots(SEEN_SLOTS)
    for qi in range(queries.shape[0]):
        if crowded_from[qi] < TABLES:
            count, reached, slot_rows, slot_query = _search_crowded(
                codes, queries[qi], qi, crowded_from[qi], offsets, rows, live, max_d, masks, probes,
                keys, starts, ends, reached, slot_rows, slot_query, out_q, out_rows, out_d, count)
    return count


@njit(cache=True, nogil=True, inline="always")
def _bucket_bounds(offsets_t, rows_t, q, t, masks, n_probes, keys, starts, ends):
    """The bounds of q's probed buckets in table t (prefetching their offsets, then their rows);
    returns how many rows they hold."""
    key = substring(q, t)
    for p in range(n_probes):
        k = key ^ masks[p]
        keys[p] = k
        prefetch(offsets_t, k)
    total = 0
    for p in range(n_probes):
        k = keys[p]
        s = offsets_t[k]
        e = offsets_t[k + 1]
        starts[p] = s
        ends[p] = e
        total += e - s
        if e > s:
            prefetch(rows_t, s)
    return total


@njit(cache=True, nogil=True)
def _search_crowded(codes, q, qi, first_table, offsets, rows, live, max_d, masks, probes, keys, starts, ends,
                    reached, slot_rows, slot_query, out_q, out_rows, out_d, count):
    """One crowded query's hits through tables first_table.., each row it reaches read and verified
    once (a hash set of the rows reached); hits an earlier table reached were recorded there.
    Returns the count and the (possibly grown) set."""
    flat = codes.reshape(-1)
    n_reached = 0
    for t in range(first_table, TABLES):
        n_probes = probes[t]
        if n_probes == 0:
            continue
        rows_t = rows[t]
        _bucket_bounds(offsets[t], rows_t, q, t, masks, n_probes, keys, starts, ends)
        first_new = n_reached
        for p in range(n_probes):
            for j in range(starts[p], ends[p]):
                r = rows_t[j]
                mask = slot_rows.shape[0] - 1
                i = _slot_of(r, mask)
                while slot_query[i] == qi and slot_rows[i] != r:
                    i = (i + 1) & mask
                if slot_query[i] == qi:
                    continue  # reached through an earlier probe or table
                slot_rows[i] = r
                slot_query[i] = qi
                reached[n_reached] = r
                n_reached += 1
                prefetch(flat, np.int64(r) * 4)
                if n_reached == reached.shape[0]:  # keep the slots at most half full
                    reached = np.concatenate((reached, np.empty(n_reached, np.uint32)))
                    slot_rows, slot_query = _seen_slots(2 * slot_rows.shape[0])
                    for m in range(n_reached):
                        _seen_put(slot_rows, slot_query, qi, reached[m])
        for c in range(first_new, n_reached):
            r = reached[c]
            d = distance(codes[r], q)
            if d <= max_d and live[r] and not _found_earlier(codes[r], q, first_table, probes):
                count = record(out_q, out_rows, out_d, count, qi, r, d)
    return count, reached, slot_rows, slot_query


@njit(cache=True, nogil=True, inline="always")
def _probe_radius(n_probes):
    if n_probes == 0:
        return -1
    if n_probes == 1:
        return 0
    return 1 if n_probes == 1 + KEY_BITS else 2


@njit(cache=True, nogil=True, inline="always")
def _found_earlier(code, q, t, probes):
    """Whether an earlier table's probes reached this code too (its key within that table's radius):
    each hit is then recorded by the first table that finds it only. In crowded clusters a code is
    found through most tables, and recording it each time multiplied the output by up to 11."""
    for e in range(t):
        radius = _probe_radius(probes[e])
        if radius >= 0 and _popcount64(np.uint64(substring(code, e) ^ substring(q, e))) <= radius:
            return True
    return False



# The rows a query has reached: open addressing over slots of (row, owner query). A slot is
# empty unless its owner is the current query, so moving to the next query clears nothing.
SEEN_SLOTS = 1 << 13


@njit(cache=True, nogil=True)
def _seen_slots(n_slots):
    return np.empty(n_slots, np.uint32), np.full(n_slots, -1, np.int64)


@njit(cache=True, nogil=True, inline="always")
def _slot_of(r, mask):
    return np.int64((np.uint64(r) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & mask


@njit(cache=True, nogil=True)
def _seen_put(slot_rows, slot_query, qi, r):
    mask = slot_rows.shape[0] - 1
    i = _slot_of(r, mask)
    while slot_query[i] == qi:
        i = (i + 1) & mask
    slot_rows[i] = r
    slot_query[i] = qi


@njit(cache=True, nogil=True)
def scan(codes, queries, row_list, start, end, live, max_d, out_q, out_rows, out_d, count):
    """(query, row, distance) for the live rows within max_d among row_list[start:end] (or the
    rows start..end when row_list is empty), by scanning them.

    Blocks of rows are copied together and scanned against every query while in L1. Used for
    the delta (rows not in every table yet), for all rows past distance 32, and by the ring.
    """
    listed = row_list.shape[0] > 0
    block = np.empty((SCAN_BLOCK, 4), np.uint64)
    for b0 in range(start, end, SCAN_BLOCK):
        b1 = min(end, b0 + SCAN_BLOCK)
        for i in range(b0, b1):
            block[i - b0] = codes[row_list[i] if listed else i]
        for qi in range(queries.shape[0]):
            q = queries[qi]
            for i in range(b1 - b0):
                d = distance(block[i], q)
                if d <= max_d:
                    r = row_list[b0 + i] if listed else b0 + i
                    if live[r]:
                        count = record(out_q, out_rows, out_d, count, qi, r, d)
    return count


NO_ROW_LIST = np.zeros(0, dtype=np.int64)


@njit(cache=True, nogil=True)
def build_table(codes, live, table, offsets, rows):
    """Counting sort of the rows marked in `live` (a snapshot: both passes must see the same rows)
    by their key in `table` into offsets (BUCKETS + 1) and rows; returns how many rows it holds."""
    offsets[:] = 0
    for r in range(live.shape[0]):
        if live[r]:
            offsets[substring(codes[r], table) + 1] += 1
    for k in range(BUCKETS):
        offsets[k + 1] += offsets[k]
    fill = offsets[:-1].copy()
    for r in range(live.shape[0]):
        if live[r]:
            k = substring(codes[r], table)
            rows[fill[k]] = r
            fill[k] += 1
    return offsets[BUCKETS]


@njit(cache=True, nogil=True)
def keys_of(codes, row_list, table):
    out = np.empty(row_list.shape[0], np.uint32)
    for i in range(row_list.shape[0]):
        out[i] = substring(codes[row_list[i]], table)
    return out


@njit(cache=True, nogil=True)
def merge_table(live, old_offsets, old_rows, new_rows_sorted, new_keys_sorted, offsets, rows):
    """One pass over a table: its live rows, with new rows (sorted by key) merged in at their keys.

    Reads the old table sequentially and no codes, so it costs a fraction of build_table's
    counting sort over every code. Returns the rows written."""
    out = 0
    i = 0
    n_new = new_rows_sorted.shape[0]
    for k in range(BUCKETS):
        offsets[k] = out
        for j in range(old_offsets[k], old_offsets[k + 1]):
            r = old_rows[j]
            if live[r]:
                rows[out] = r
                out += 1
        while i < n_new and new_keys_sorted[i] == k:
            r = new_rows_sorted[i]
            if live[r]:
                rows[out] = r
                out += 1
            i += 1
    offsets[BUCKETS] = out
    return out


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
                        count = record(out_q, out_rows, out_d, count, qi, r, d)
    return count
