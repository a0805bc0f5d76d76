"""Clusters of recent near-duplicates: connected components of uploads within a PDQ distance."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.index import build_pdq_index

SAMPLE_IDS = 5


def clusters(content_ids: list[str], times: np.ndarray, codes: np.ndarray, distance: int,
             min_size: int = 2) -> list[dict[str, Any]]:
    """Each cluster's size, first and last upload time, a few content ids and its first upload's
    PDQ hash, largest first."""
    if not content_ids:
        return []
    index = build_pdq_index(codes, np.arange(len(content_ids), dtype=np.int64))
    lims, ids, _ = index.search(codes, max_distance=distance)
    parent = np.arange(len(content_ids))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for q in range(len(content_ids)):
        for other in ids[lims[q]:lims[q + 1]]:
            a, b = root(q), root(int(other))
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(content_ids)):
        groups.setdefault(root(i), []).append(i)
    out = []
    for members in groups.values():
        if len(members) < min_size:
            continue
        members.sort(key=lambda i: times[i])
        out.append({
            "size": len(members), "first_upload_at": int(times[members[0]]), "last_upload_at": int(times[members[-1]]),
            "content_ids": [content_ids[i] for i in members[:SAMPLE_IDS]],
            "pdq": codes[members[0]].tobytes().hex(),  # the first upload's hash stands for the cluster
        })
    return sorted(out, key=lambda c: (-c["size"], c["first_upload_at"]))
