"""Settings for every hmas process, from environment variables and an optional TOML file.

Precedence: environment variable > config file > default. The file is `hmas.toml` in the working
directory, or the path in `HMAS_CONFIG`. Every key is the lower-case environment variable name
without its `HMAS_` prefix (KAFKA_BOOTSTRAP_SERVERS keeps its usual name), e.g.

    kafka_bootstrap_servers = "broker1:9092,broker2:9092"
    topic_prefix = "hma."
    fetch_max_bytes = 33554432

Defaults run everything locally.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")  # pipeline/services/delivery.py
API_EVENT_LOOPS = ("uvloop", "asyncio")  # pipeline/api/serve.py


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    # Kafka. Empty bootstrap means "use the local broker that hmas manages".
    kafka_bootstrap_servers: str = ""
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    # Nodes of the local cluster (`hmas kafka start --brokers N`): node k listens on kafka_port + 2(k-1)
    # and its controller on kafka_controller_port + 2(k-1); clients bootstrap from all of them.
    kafka_brokers: int = 1
    topic_prefix: str = "hma."
    topic_partitions: int = 4
    # Copies of every partition, and how many must have a write before it is acknowledged (the
    # producers send with acks=all): 3 and 2 on a cluster of three brokers, so one can be down.
    topic_replication: int = 1
    topic_min_isr: int = 1
    uploads_retention_ms: int = 7 * 24 * 3600 * 1000
    hashes_retention_ms: int = 7 * 24 * 3600 * 1000
    feedback_retention_ms: int = -1  # reviewers' decisions are kept: tallies are rebuilt from them
    # Largest record (an inline upload): the one setting behind every size limit, the topics'
    # max.message.bytes, the producers' request size and the local broker's message.max.bytes.
    max_message_bytes: int = 8 * 1024 * 1024
    # Kafka security (pipeline/kafka_clients.py makes every client with it): PLAINTEXT, SSL,
    # SASL_PLAINTEXT or SASL_SSL; SASL as PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; the CA that signed
    # the brokers' certificates, and a client certificate and key when the brokers ask for one.
    # Environment names keep Kafka's usual KAFKA_ prefix (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = dataclasses.field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""

    # Local state: the managed broker's data, Faust's RocksDB tables.
    data_dir: Path = PROJECT_ROOT / ".hmas"

    # Worker.
    app_id: str = "hma-streams"
    worker_web_port: int = 0  # Faust's own web server; 0 = off
    # Static group membership: a worker restarted with the same id takes its partitions back at once,
    # without a rebalance waiting for the old member's session to expire. Empty: an id made once and
    # kept in the worker's data folder. Two live workers of one group must not share an id.
    worker_id: str = ""
    # How long the broker waits for a silent worker before its partitions go to the others.
    worker_session_timeout_s: float = 30.0
    # at_least_once: outputs flushed before input offsets are committed (duplicates after a crash
    # carry the first copy's event id); exactly_once: outputs and offsets in Kafka transactions,
    # for consumers reading with isolation_level=read_committed (pipeline/services/delivery.py).
    processing_guarantee: str = "at_least_once"
    # The worker's and the fetcher's /metrics and /status (pipeline/services/status_server.py); 0 = off.
    # In a container, HMAS_METRICS_HOST=0.0.0.0 lets Prometheus and the probes reach it.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    hash_workers: int = 2
    view_snapshot_interval_s: float = 300.0  # how often a worker saves its bank view (0: never)
    # How long the worker's producer waits to fill a batch: fewer, larger produce requests cost the
    # worker and the broker far less CPU per record, for a few ms of latency per hop.
    producer_linger_ms: float = 5.0
    # Index shards (pipeline/sharding.py): 1 = replica mode, every worker holds every signal.
    # With S > 1, `hmas worker --shard K` (or HMAS_INDEX_SHARD=K) runs the matcher of shard K.
    index_shards: int = 1
    index_shard: int = -1  # -1: not a shard worker (hasher, merger, actioner, flood, feedback, recent)
    output_encoding: str = "json"  # json | avro

    # HTTP API (hmas api): upstream HMA's address; mutating routes need the token when it is set.
    api_host: str = "127.0.0.1"
    api_port: int = 5000
    api_token: str = dataclasses.field(default="", repr=False)  # a token of role admin (pipeline/api/auth.py)
    # More tokens with roles: `token:role` entries (read, curate, admin), comma-separated, or the
    # path of a file of them, one a line. Never logged, never in a repr.
    api_tokens: str = dataclasses.field(default="", repr=False)
    api_open_reads: int = 1  # 0: reading routes need a token too (any role) once tokens are configured
    # Per-client rate limits (requests/s; a burst of twice that): lookups, and routes that fetch or
    # hash content. 0 = no limit. A client is its token, or its address when it presents none.
    api_lookup_rate: float = 5000.0
    api_hash_rate: float = 20.0
    api_dev_routes: bool = False  # upstream's /dev routes (factory reset, seeding); never in production
    index_stale_s: float = 65.0  # /status answers INDEX-STALE when the view lags longer (as upstream)
    # Server processes of one `hmas api`, forked once the bank view is loaded so that they share
    # it, all on one port (SO_REUSEPORT; pipeline/api/serve.py).
    api_processes: int = 1
    # The API's event loop: uvloop (sockets, timers and callbacks in C: less CPU per request) or the
    # standard library's. And how long one of its threads may hold the interpreter before the other
    # (the event loop; the index search thread) gets a turn: Python's default of 5 ms sits directly
    # in a lookup's latency when a search finishes while the loop is busy (pipeline/api/serve.py).
    api_event_loop: str = "uvloop"
    api_switch_interval_ms: float = 0.5

    # Content fetching (connectors/fetch.py).
    fetch_timeout_s: float = 10.0
    fetch_max_bytes: int = 32 * 1024 * 1024
    fetch_max_redirects: int = 5
    fetch_allow_hosts: tuple[str, ...] = ()  # hosts or CIDRs let through the private-address guard

    # Exchanges (connectors/exchanges/): how often the fetcher fetches each enabled exchange, how
    # many exchange records go into one Kafka transaction, and the key that seals stored credentials
    # (a Fernet key; without it, credentials come from the environment or files only).
    exchange_fetch_interval_s: float = 60.0
    exchange_batch_records: int = 5000
    secret_key: str = dataclasses.field(default="", repr=False)  # never in a repr or a log line
    # Retries (connectors/exchanges/retry.py): attempts of a rate-limited fetch, attempts per write
    # before it is dead-lettered, the first retry's wait (doubling up to the cap); and how often the
    # writer compares shared banks with what their exchanges were sent.
    exchange_fetch_attempts: int = 3
    exchange_write_attempts: int = 6
    exchange_backoff_s: float = 1.0
    exchange_backoff_max_s: float = 60.0
    exchange_share_interval_s: float = 30.0

    # Hashing.
    max_image_pixels: int = 50_000_000
    max_video_seconds: float = 1800.0  # longer videos (and streams without an end) are refused for vPDQ
    pdq_min_quality: int = 50
    # Signal types: modules with a python-threatexchange TX_MANIFEST whose signal types are added to
    # python-threatexchange's own and its bundled extensions' (pipeline/signal_types.py).
    signal_extensions: tuple[str, ...] = ()
    # "exact": python-threatexchange's PDQ bit for bit; "fast": JPEGs decoded at reduced scale (see
    # pipeline/hashing/photo.py and BENCHMARKS.md for its distance to the exact hash).
    photo_hash: str = "exact"

    # Retroactive matching: the ring of recent hashes (run it on one worker: HMAS_RECENT_ENABLED=0 elsewhere).
    recent_enabled: int = 1
    recent_horizon_ms: int = 24 * 3600 * 1000
    recent_cap: int = 10_000_000
    recent_bucket_ms: int = 3600 * 1000

    # Flood detection: count-min sketch error bound and time buckets.
    flood_epsilon: float = 0.001
    flood_delta: float = 0.01
    flood_bucket_ms: int = 60_000
    flood_baseline_windows: int = 24
    # How long the flood agent remembers the hits it counted, so a hit written again after a crash
    # (same event id) is not counted twice: longer than a crashed worker takes to be replaced.
    flood_replay_horizon_ms: int = 15 * 60_000

    def __post_init__(self) -> None:
        from pipeline.kafka_clients import check_security

        check_security(self)
        if not 1 <= self.topic_min_isr <= self.topic_replication:
            raise ValueError(f"topic_min_isr {self.topic_min_isr} with topic_replication {self.topic_replication}: "
                             "need 1 <= min ISR <= replication")
        if self.processing_guarantee not in PROCESSING_GUARANTEES:
            raise ValueError(f"processing_guarantee {self.processing_guarantee!r}: one of {', '.join(PROCESSING_GUARANTEES)}")
        if self.api_event_loop not in API_EVENT_LOOPS:
            raise ValueError(f"api_event_loop {self.api_event_loop!r}: one of {', '.join(API_EVENT_LOOPS)}")
        if self.api_switch_interval_ms <= 0:
            raise ValueError(f"api_switch_interval_ms {self.api_switch_interval_ms}: must be above 0")
        if self.index_shards < 1 or not -1 <= self.index_shard < self.index_shards:
            raise ValueError(
                f"index_shard {self.index_shard} with index_shards {self.index_shards}: need 1 <= shards "
                "and -1 <= shard < shards"
            )

    def with_overrides(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def dead_letter_max_bytes(self) -> int:
        """Largest dead letter: it carries the largest record that failed, base64, and why."""
        return 2 * self.max_message_bytes

    @property
    def max_request_bytes(self) -> int:
        """What producers may send in one request, and so what a broker must accept: the largest
        dead letter and its headers."""
        return self.dead_letter_max_bytes + 64 * 1024

    @property
    def shard(self) -> "ShardSpec | None":
        """The index shard this process matches against, when it is a shard worker."""
        from pipeline.sharding import ShardSpec

        return ShardSpec(self.index_shard, self.index_shards) if self.index_shard >= 0 else None

    @property
    def worker_group(self) -> str:
        """The workers' consumer group (Faust's app id): shared by the main workers; each index shard has its own."""
        shard = f"-shard-{self.index_shard}" if self.shard is not None else ""
        return f"{self.topic_prefix}{self.app_id}{shard}"

    @property
    def uses_local_broker(self) -> bool:
        return not self.kafka_bootstrap_servers

    @property
    def local_kafka_ports(self) -> list[tuple[int, int]]:
        """(port, controller port) of each node of the local broker or cluster, node 1 first."""
        return [(self.kafka_port + 2 * k, self.kafka_controller_port + 2 * k) for k in range(self.kafka_brokers)]

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or ",".join(f"127.0.0.1:{port}" for port, _ in self.local_kafka_ports)


# Settings read from Kafka's usual environment names, without the HMAS_ prefix.
KAFKA_ENV_NAMES = frozenset({
    "kafka_bootstrap_servers", "kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username",
    "kafka_sasl_password", "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
})


def _env_name(field_name: str) -> str:
    if field_name in KAFKA_ENV_NAMES:
        return field_name.upper()
    return "HMAS_" + field_name.upper()


def _coerce(f: dataclasses.Field, raw: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind.startswith("tuple"):
        return _split_list(raw) if isinstance(raw, str) else tuple(raw)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "Path":
        return Path(raw).expanduser()
    return str(raw)


def load_settings(env: Mapping[str, str] | None = None, config_file: str | os.PathLike | None = None) -> Settings:
    """Settings from defaults, then the config file, then the environment."""
    env = os.environ if env is None else env
    path = Path(config_file or env.get("HMAS_CONFIG") or "hmas.toml")
    from_file: dict[str, Any] = {}
    if path.is_file():
        with path.open("rb") as fh:
            from_file = tomllib.load(fh)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        if _env_name(f.name) in env:
            values[f.name] = _coerce(f, env[_env_name(f.name)])
        elif f.name in from_file:
            values[f.name] = _coerce(f, from_file[f.name])
    unknown = set(from_file) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise ValueError(f"unknown keys in {path}: {', '.join(sorted(unknown))}")
    return Settings(**values)
