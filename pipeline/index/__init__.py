"""The PDQ index (faiss-like API, see docs/architecture.md):

    index = build_pdq_index(codes, ids)        # codes uint8 (N, 32), ids int64 (N,)
    lims, ids, distances = index.search(queries, max_distance=31)
    index.add(codes, ids); index.remove(ids)

Search is exact: every code within max_distance (inclusive), no approximate recall loss.
"""

from __future__ import annotations

import numpy as np

from pipeline.index.codes import code_to_hex, codes_from_hex, pdq_hex_to_code
from pipeline.index.flat import FlatPdqIndex
from pipeline.index.mih import MihPdqIndex

__all__ = ["build_pdq_index", "codes_from_hex", "code_to_hex", "pdq_hex_to_code", "FlatPdqIndex", "MihPdqIndex"]


def build_pdq_index(codes: np.ndarray, ids: np.ndarray) -> MihPdqIndex:
    """The multi-index-hashing index (pipeline.index.mih); FlatPdqIndex is the reference scan."""
    return MihPdqIndex(codes, ids)
