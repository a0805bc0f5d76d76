"""Index shards: which bank signals one matcher instance holds.

In shard mode (HMAS_INDEX_SHARDS=S > 1) bank signals are split into S shards by signal id, so a
signal banked in several banks lives in one shard. Every shard worker (`hmas worker --shard K`)
looks up every hashed upload against its shard alone and writes its candidates to hma.shard-hits;
the merger, in the main workers, joins the S partial results of each upload and runs the guard
once on the whole set (negative banks may sit in another shard than the hits they suppress).
With S = 1 (replica mode) every matcher holds every signal and writes match records itself.
"""

from __future__ import annotations

from dataclasses import dataclass


def shard_of(signal_id: str | bytes, shards: int) -> int:
    """The shard holding a signal: its id is hex (sha256 digits), so its leading bits are uniform."""
    return int(signal_id[:8], 16) % shards


def signal_id_of_key(key: str) -> str:
    """hma.bank-signals keys are BANK/signal_type/signal_id."""
    return key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ShardSpec:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}: need 0 <= shard < shards")

    def holds_key(self, key: str | bytes) -> bool:
        """Whether a hma.bank-signals key belongs to this shard (tombstones carry only the key).
        A key as read from the topic (bytes) is judged without decoding it: a shard worker asks
        this of every bank signal's record, most of them other shards'."""
        if self.count == 1:
            return True
        signal_id = key[key.rfind(b"/") + 1:] if isinstance(key, bytes) else signal_id_of_key(key)
        return shard_of(signal_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
