"""Sampling by enabled_ratio: a signal type's and a bank's share of uploads, decided per content id.

Upstream HMA draws one coin per lookup (seeded by the lookup's content id when it gives one) and
keeps every bank whose matching_enabled_ratio reaches it. Here the coin is a number in [0, 1)
fixed by the content id, so a replay, a retroactive match, the API and /m/explain decide an upload
as the worker did. One coin serves every bank and signal type of an upload, as upstream's one coin
serves every bank: a bank at 0.2 matches a subset of the uploads a bank at 0.5 matches, and the
share of uploads that reach a bank is its smallest ratio on the way, not their product.
"""

from __future__ import annotations

import hashlib


def content_coin(content_id: str) -> float:
    """A number in [0, 1) fixed by the content id."""
    return int.from_bytes(hashlib.sha256(content_id.encode()).digest()[:8], "big") / 2**64


def sampled_out(ratio: float, content_id: str | None) -> float | None:
    """The content's coin when an enabled_ratio leaves this content out (coin >= ratio), else None.

    A ratio of 1 keeps every content and 0 none (reported as coin 0.0), without hashing the content
    id: the matcher asks this for every hit. No content id (upstream's bypass_coinflip) is a coin
    of 0: every ratio above 0 keeps it.
    """
    if ratio >= 1 or (content_id is None and ratio > 0):
        return None
    coin = 0.0 if ratio <= 0 else content_coin(content_id)
    return coin if coin >= ratio else None
