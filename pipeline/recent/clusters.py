"""Clusters of recent near-duplicates: connected components of uploads within a PDQ distance."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.index import build_pdq_index
from pipeline.index.codes import codes_from_hex

SAMPLE_IDS = 5


def clusters(uploads: list[dict[str, Any]], distance: int, min_size: int = 2) -> list[dict[str, Any]]:
    """Each cluster's size, first and last upload time and a few content ids, largest first."""
    if not uploads:
        return []
    codes = codes_from_hex([u["signals"]["pdq"]["value"] for u in uploads])
    index = build_pdq_index(codes, np.arange(len(uploads), dtype=np.int64))
    lims, ids, _ = index.search(codes, max_distance=distance)
    parent = np.arange(len(uploads))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for q in range(len(uploads)):
        for other in ids[lims[q]:lims[q + 1]]:
            a, b = root(q), root(int(other))
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(uploads)):
        groups.setdefault(root(i), []).append(i)
    out = []
    for members in groups.values():
        if len(members) < min_size:
            continue
        times = [uploads[i]["hashed_at"] for i in members]
        members.sort(key=lambda i: uploads[i]["hashed_at"])
        out.append({
            "size": len(members), "first_upload_at": min(times), "last_upload_at": max(times),
            "content_ids": [uploads[i]["content_id"] for i in members[:SAMPLE_IDS]],
        })
    return sorted(out, key=lambda c: (-c["size"], c["first_upload_at"]))
