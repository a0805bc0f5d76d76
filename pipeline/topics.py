"""The one place that names the pipeline's Kafka topics and how each is kept."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import Settings
from schemas.codec import RecordCodec, codec


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    schema: str  # full Avro record name, schemas/<schema>.avsc
    compact: bool = False
    retention_setting: str | None = None  # Settings attribute holding retention.ms
    max_bytes_setting: str = "max_message_bytes"  # Settings attribute holding max.message.bytes

    def name(self, settings: Settings) -> str:
        return settings.topic_prefix + self.suffix

    @property
    def codec(self) -> "RecordCodec":
        return codec(self.schema)

    def config(self, settings: Settings) -> dict[str, str]:
        max_bytes = getattr(settings, self.max_bytes_setting)
        if self.compact:
            return {"cleanup.policy": "compact", "max.message.bytes": str(max_bytes)}
        conf = {"cleanup.policy": "delete", "max.message.bytes": str(max_bytes)}
        if self.retention_setting:
            conf["retention.ms"] = str(getattr(settings, self.retention_setting))
        return conf


UPLOADS = TopicSpec("uploads", "hma.Upload", retention_setting="uploads_retention_ms")
HASHES = TopicSpec("hashes", "hma.HashedUpload", retention_setting="hashes_retention_ms")
MATCHES = TopicSpec("matches", "hma.MatchRecord")
ACTIONS = TopicSpec("actions", "hma.Action")
RETRO_MATCHES = TopicSpec("retro-matches", "hma.MatchRecord")
BANKS = TopicSpec("banks", "hma.Bank", compact=True)
BANK_SIGNALS = TopicSpec("bank-signals", "hma.BankSignal", compact=True)
FEEDBACK = TopicSpec("feedback", "hma.Feedback", retention_setting="feedback_retention_ms")
QUARANTINE = TopicSpec("quarantine", "hma.Quarantine", compact=True)
DEAD_LETTERS = TopicSpec("dead-letters", "hma.DeadLetter", max_bytes_setting="dead_letter_max_bytes")
FLOOD_HITS = TopicSpec("flood-hits", "hma.SignalHit")  # repartition topic: matches re-keyed by signal id
CONFIG = TopicSpec("config", "hma.Setting", compact=True)
CONTENT_IDS = TopicSpec("content-ids", "hma.ContentIdClaim")  # offsets hand out bank content ids
SHARD_HITS = TopicSpec("shard-hits", "hma.ShardHits")  # shard mode: each shard's part of a lookup
EXCHANGES = TopicSpec("exchanges", "hma.Exchange", compact=True)  # exchange configs; the fetcher's group topic
EXCHANGE_FETCH = TopicSpec("exchange-fetch", "hma.ExchangeFetch", compact=True)  # checkpoints and progress
EXCHANGE_CREDENTIALS = TopicSpec("exchange-credentials", "hma.ExchangeCredentials", compact=True)  # sealed
EXCHANGE_OUTBOX = TopicSpec("exchange-outbox", "hma.ExchangeWrite")  # writes to exchanges; the writer's group topic
EXCHANGE_DELIVERED = TopicSpec("exchange-delivered", "hma.ExchangeDelivered", compact=True)  # by idempotency key
EXCHANGE_WRITE_STATUS = TopicSpec("exchange-write-status", "hma.ExchangeWriteStatus", compact=True)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    UPLOADS, HASHES, MATCHES, ACTIONS, RETRO_MATCHES,
    BANKS, BANK_SIGNALS, FEEDBACK, QUARANTINE, DEAD_LETTERS, FLOOD_HITS, CONFIG, CONTENT_IDS,
    SHARD_HITS, EXCHANGES, EXCHANGE_FETCH, EXCHANGE_CREDENTIALS, EXCHANGE_OUTBOX, EXCHANGE_DELIVERED,
    EXCHANGE_WRITE_STATUS,
)

# Compacted topics hold state every process rebuilds its view from; they get one partition so
# that a reader sees one total order of changes. Feedback (human decisions, low volume) too, so
# that decisions apply in the order reviewers made them.
SINGLE_PARTITION_TOPICS = (
    BANKS, BANK_SIGNALS, QUARANTINE, FEEDBACK, CONFIG, CONTENT_IDS, EXCHANGES, EXCHANGE_FETCH, EXCHANGE_CREDENTIALS,
    EXCHANGE_OUTBOX, EXCHANGE_DELIVERED, EXCHANGE_WRITE_STATUS,
)

# What the exchange routes follow (the API's view) besides VIEW_TOPICS.
EXCHANGE_TOPICS = (EXCHANGES, EXCHANGE_FETCH, EXCHANGE_CREDENTIALS, EXCHANGE_WRITE_STATUS)


# What every bank view (worker, API) follows.
VIEW_TOPICS = (BANKS, BANK_SIGNALS, QUARANTINE, CONFIG)


def partitions_for(spec: TopicSpec, settings: Settings) -> int:
    return 1 if spec in SINGLE_PARTITION_TOPICS else settings.topic_partitions


def spec_for(name: str, settings: Settings) -> TopicSpec:
    """The topic a user names, by its full name ("hma.matches") or its suffix ("matches")."""
    for spec in ALL_TOPICS:
        if name in (spec.suffix, spec.name(settings)):
            return spec
    known = ", ".join(spec.suffix for spec in ALL_TOPICS)
    raise KeyError(f"unknown topic {name!r}; known: {known}")
