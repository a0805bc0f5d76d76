"""Dense regions of a bank as groups around leaders: an exact pruning layer beside the tables.

Real banks hold clusters of near-duplicates (hundreds to thousands of codes within a few bits).
In multi-index hashing their codes crowd the same buckets of every table, so a query landing in
one reaches each member through most of the 11 tables. Here such codes are taken out of the
tables and kept in groups instead, each a leader code and its members (codes within
GROUP_RADIUS of it), stored side by side. A query measures its distance to every leader first;
by the triangle inequality no member of a group is within max_d when d(query, leader) - radius >
max_d, and the group is skipped; otherwise its members are verified in one sequential pass.
Every grouped code is checked either way, so the search stays exact.

Groups are found at an index's first build (find_groups): the keys of table 0 that crowd (far
more rows than a uniform bank puts there) give the leaders, and each leader takes the codes not
grouped yet within GROUP_RADIUS among the buckets within 2 bits of its key.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from pipeline.index import kernels as K

GROUP_RADIUS = 24  # members of a cluster of radius 12 are within 24 of any other member
MIN_GROUP = 32  # a key with this many rows (and 4x its uniform share) leads a group; smaller groups are not kept


class Groups(NamedTuple):
    """Leaders (codes, radius) and their members: rows and codes, group g's at bounds[g]:bounds[g + 1]."""
    leaders: np.ndarray  # (G, 4) uint64
    radius: np.ndarray  # (G,) int32: the farthest member's distance to the leader
    bounds: np.ndarray  # (G + 1,) int64
    rows: np.ndarray  # (M,) int64
    codes: np.ndarray  # (M, 4) uint64, the members' codes in group order


def no_groups() -> Groups:
    return Groups(np.zeros((0, 4), np.uint64), np.zeros(0, np.int32), np.zeros(1, np.int64),
                  np.zeros(0, np.int64), np.zeros((0, 4), np.uint64))


def find_groups(codes: np.ndarray, live: np.ndarray) -> Groups:
    """Groups over the rows marked in `live` (bool over the first rows of `codes`)."""
    offsets = np.zeros(K.BUCKETS + 1, dtype=np.uint32)
    table = np.zeros(int(live.sum()), dtype=np.uint32)
    K.build_table(codes, live, 0, offsets, table)
    crowd = max(MIN_GROUP, 4 * len(table) // K.BUCKETS)
    n, member_rows, leaders, radius = _group(codes, offsets, table, K.PROBE_MASKS, crowd, GROUP_RADIUS)
    del offsets, table
    bounds = np.zeros(n + 1, np.int64)
    np.cumsum(leaders[:n, 1], out=bounds[1:])
    return Groups(codes[leaders[:n, 0]].copy(), radius[:n].astype(np.int32), bounds, member_rows,
                  codes[member_rows].copy())


@njit(cache=True, nogil=True)
def _group(codes, offsets, table, masks, crowd, max_radius):
    """Leaders in key order: a key still holding `crowd` ungrouped rows leads with its first; the
    leader takes the ungrouped rows within max_radius in the buckets within 2 bits of its key.
    Returns (groups, member rows in group order, (leader row, size) per group, radius per group)."""
    grouped = np.zeros(codes.shape[0], np.bool_)
    members = np.empty(table.shape[0], np.int64)
    leaders = np.empty((table.shape[0] // crowd + 1, 2), np.int64)
    radius = np.empty(table.shape[0] // crowd + 1, np.int64)
    n_members = 0
    n_groups = 0
    taken = np.empty(table.shape[0], np.int64)
    for key in range(K.BUCKETS):
        s, e = offsets[key], offsets[key + 1]
        if e - s < crowd:
            continue
        while True:
            leader = -1
            left = 0
            for j in range(s, e):
                if not grouped[table[j]]:
                    if leader < 0:
                        leader = table[j]
                    left += 1
            if left < crowd:
                break
            lead = codes[leader]
            n_taken = 0
            far = 0
            for p in range(masks.shape[0]):
                k = key ^ masks[p]
                for j in range(offsets[k], offsets[k + 1]):
                    r = table[j]
                    if grouped[r]:
                        continue
                    d = K.distance(codes[r], lead)
                    if d <= max_radius:
                        grouped[r] = True
                        taken[n_taken] = r
                        n_taken += 1
                        far = max(far, d)
            if n_taken < crowd:  # too small to be worth a group: back to the tables
                for i in range(n_taken):
                    grouped[taken[i]] = False
                break
            members[n_members:n_members + n_taken] = taken[:n_taken]
            n_members += n_taken
            leaders[n_groups, 0] = leader
            leaders[n_groups, 1] = n_taken
            radius[n_groups] = far
            n_groups += 1
    return n_groups, members[:n_members], leaders, radius


@njit(cache=True, nogil=True)
def search_groups(leaders, radius, bounds, member_rows, member_codes, member_of_row, live, queries, max_d,
                  out_q, out_rows, out_d, count):
    """(query, row, distance) for the live members within max_d of each query: a group is skipped
    when its leader is farther than max_d + its radius (no member can be within max_d), else its
    members are verified in one pass. A member whose row died (member_of_row no longer points at
    it) is not reported. Returns the count found; out_* may be too small (then call again)."""
    for qi in range(queries.shape[0]):
        q = queries[qi]
        for g in range(leaders.shape[0]):
            if K.distance(leaders[g], q) > max_d + radius[g]:
                continue
            for m in range(bounds[g], bounds[g + 1]):
                d = K.distance(member_codes[m], q)
                if d <= max_d:
                    r = member_rows[m]
                    if live[r] and member_of_row[r] == m:
                        count = K.record(out_q, out_rows, out_d, count, qi, r, d)
    return count
