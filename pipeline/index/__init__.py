"""The PDQ index (faiss-like API, see docs/architecture.md):

    index = build_pdq_index(codes, ids)        # codes uint8 (N, 32), ids int64 (N,)
    lims, ids, distances = index.search(queries, max_distance=31)
    index.add(codes, ids); index.remove(ids)

Search is exact: every code within max_distance (inclusive), no approximate recall loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.index.codes import code_to_hex, codes_from_hex, pdq_hex_to_code

if TYPE_CHECKING:
    from pipeline.index.flat import FlatPdqIndex
    from pipeline.index.mih import MihPdqIndex

__all__ = ["build_pdq_index", "codes_from_hex", "code_to_hex", "pdq_hex_to_code", "FlatPdqIndex", "MihPdqIndex"]


def build_pdq_index(codes: np.ndarray, ids: np.ndarray) -> "MihPdqIndex":
    """The multi-index-hashing index (pipeline.index.mih); FlatPdqIndex is the reference scan."""
    from pipeline.index.mih import MihPdqIndex

    return MihPdqIndex(codes, ids)


def __getattr__(name: str) -> Any:
    """The index classes, imported when first named: the multi-index-hashing one loads numba and
    its compiled kernels (about 120 MB resident), which a process that only reads and converts
    codes (the exchange fetcher, the API's validation) does without."""
    if name == "MihPdqIndex":
        from pipeline.index.mih import MihPdqIndex

        return MihPdqIndex
    if name == "FlatPdqIndex":
        from pipeline.index.flat import FlatPdqIndex

        return FlatPdqIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
