"""The one place that names the pipeline's Kafka topics and how each is kept."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import Settings


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    compact: bool = False
    retention_setting: str | None = None  # Settings attribute holding retention.ms

    def name(self, settings: Settings) -> str:
        return settings.topic_prefix + self.suffix

    def config(self, settings: Settings) -> dict[str, str]:
        if self.compact:
            return {"cleanup.policy": "compact"}
        conf = {"cleanup.policy": "delete"}
        if self.retention_setting:
            conf["retention.ms"] = str(getattr(settings, self.retention_setting))
        return conf


UPLOADS = TopicSpec("uploads", retention_setting="uploads_retention_ms")
HASHES = TopicSpec("hashes", retention_setting="hashes_retention_ms")
MATCHES = TopicSpec("matches")
ACTIONS = TopicSpec("actions")
RETRO_MATCHES = TopicSpec("retro-matches")
BANKS = TopicSpec("banks", compact=True)
BANK_SIGNALS = TopicSpec("bank-signals", compact=True)
FEEDBACK = TopicSpec("feedback")
QUARANTINE = TopicSpec("quarantine", compact=True)
DEAD_LETTERS = TopicSpec("dead-letters")

ALL_TOPICS: tuple[TopicSpec, ...] = (
    UPLOADS, HASHES, MATCHES, ACTIONS, RETRO_MATCHES,
    BANKS, BANK_SIGNALS, FEEDBACK, QUARANTINE, DEAD_LETTERS,
)

# Compacted topics hold state every process rebuilds its view from; they get one partition so
# that a reader sees one total order of changes.
STATE_TOPICS = (BANKS, BANK_SIGNALS, QUARANTINE)


def partitions_for(spec: TopicSpec, settings: Settings) -> int:
    return 1 if spec in STATE_TOPICS else settings.topic_partitions
