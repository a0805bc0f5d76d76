"""The worker's Faust application: topics as raw bytes (our codecs decode them), the services its
agents share (pipeline/services/), the agents of its role."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from pathlib import Path
from typing import Any

import faust

from pipeline import kafka_clients
from pipeline import metrics
from pipeline import topics as T
from pipeline import transport
from pipeline.config import Settings
from pipeline.logs import log_handler
from pipeline.services.bank_view import BankViewService
from pipeline.services.consumer_lag import ConsumerLagWatch
from pipeline.services.content_ids import ContentIds
from pipeline.services.delivery import AtLeastOnce, ExactlyOnce, delivery_mode
from pipeline.services.events import EventDecoder
from pipeline.services.output import PRODUCER_BATCH_BYTES, DeliveryFailed, Output
from pipeline.services.pools import ExecutorPools
from pipeline.services.worker import WorkerServices
from pipeline.state.bank_view import BankView
from pipeline.state.snapshot import snapshot_path
from pipeline.state.tables import raw_topic

log = logging.getLogger(__name__)
# What bounds the memory of a worker whose input runs ahead of it: Faust stops fetching a partition
# whose stream buffer holds this many events, and fetches at most this much of a partition at a time
# (a record larger than that still comes, alone). Unread uploads wait in Kafka, not in the worker.
STREAM_BUFFER_EVENTS = 4096
CONSUMER_FETCH_BYTES = 1 << 20
WORKER_ID_FILE = "worker-id"


class WorkerApp(faust.App):
    """Faust's app, whose transactional paths are on in exactly-once mode (pipeline/transport.py)
    while its `processing_guarantee` stays Faust's default: Faust's own exactly-once transaction
    manager is not used."""

    @property
    def in_transaction(self) -> bool:  # type: ignore[override]
        return transport.exactly_once_of(self) is not None


def faust_app_id(settings: Settings) -> str:
    """The consumer group (Settings.worker_group)."""
    return settings.worker_group


def group_instance_id(settings: Settings, data_dir: Path) -> str:
    """The worker's static member id: HMAS_WORKER_ID, else one made at its first start and kept in
    its data folder (a folder is one worker's: RocksDB locks it), so a restart comes back as itself."""
    if settings.worker_id:
        return settings.worker_id
    path = data_dir / WORKER_ID_FILE
    if not path.is_file():
        path.write_text(f"{faust_app_id(settings)}-{uuid.uuid4().hex}\n")
    return path.read_text().strip()


def subscribed_topics(app: faust.App) -> set[str]:
    """The topics a worker app reads: its agents' input topics and its tables' changelogs."""
    changelogs = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    return changelogs | {topic for agent in app.agents.values() for topic in agent.channel.topics}


def static_member_id(worker_id: str, topics: set[str]) -> str:
    """The worker's static member id in its consumer group: its worker id and a digest of the topics
    it reads. The broker hands a rejoining static member its old assignment; one holding a topic
    the worker no longer reads (an upgrade that added or removed a table or agent) stops aiokafka's
    group coordinator for good. With the digest, such a worker joins as a new member and the old
    one's membership expires after the session timeout; a restart of the same version comes back
    as itself. The transactional id stays the worker id, so a killed exactly-once worker's open
    transaction is still fenced across an upgrade."""
    digest = hashlib.sha256(",".join(sorted(topics)).encode()).hexdigest()[:8]
    return f"{worker_id}-{digest}"


def worker_agents(settings: Settings) -> list[Any]:
    """The agent modules a worker runs: by role (replica, shard mode's main worker, shard worker)."""
    from pipeline.agents import actioner, feedback, flood, hasher, matcher, merger, recent, shard_matcher

    if settings.shard is not None:
        return [shard_matcher]
    return [hasher, matcher if settings.index_shards == 1 else merger, actioner, flood, feedback, recent]


def worker_searches(settings: Settings) -> bool:
    """Whether a worker's bank view needs an index. A main worker in shard mode does not (the shard
    workers search; its merger judges their candidates, which carry their bank entries), unless it
    runs the recent task, whose retroactive matching searches the whole bank."""
    return settings.index_shards == 1 or settings.shard is not None or bool(settings.recent_enabled)


def worker_services(settings: Settings, app: faust.App, delivery: AtLeastOnce) -> WorkerServices:
    """The services of one worker, on its Faust app's producer.

    A delivery that fails stops the worker, and the producer's flush (before each offset commit)
    raises from then on, so the offsets of the input are not committed past a lost output.
    """
    def on_failure(failure: DeliveryFailed) -> None:
        producer = app.producer
        if isinstance(producer, transport.Producer):
            producer.fail(failure)
        if not app.crashed:
            asyncio.ensure_future(app.crash(failure))

    # Faust has no public accessor of the aiokafka producer it wraps; this is the one use.
    output = Output(settings, lambda: app.producer._ensure_producer(), on_failure)
    view = BankView(shard=settings.shard, searchable=worker_searches(settings))
    bank_view = BankViewService(settings, view, "worker-state", log_stats=True,
                                snapshot_path=snapshot_path(settings, faust_app_id(settings)))
    return WorkerServices(
        settings=settings,
        topics={spec.suffix: raw_topic(app, spec.name(settings)) for spec in T.ALL_TOPICS},
        output=output,
        delivery=delivery,
        events=EventDecoder(output, delivery),
        bank_view=bank_view,
        content_ids=ContentIds(output, lambda: view.content_id_base),
        pools=ExecutorPools(settings),
    )


def create_app(settings: Settings) -> tuple[faust.App, WorkerServices]:
    """The worker's Faust app with the agents of its role registered."""
    data_dir = settings.data_dir / ("worker" if settings.shard is None else f"worker-shard-{settings.index_shard}")
    data_dir.mkdir(parents=True, exist_ok=True)
    worker_id = group_instance_id(settings, data_dir)
    app = WorkerApp(
        faust_app_id(settings),
        broker=[f"{transport.SCHEME}://{server}" for server in settings.bootstrap_servers.split(",")],
        broker_credentials=kafka_clients.faust_credentials(settings),
        store="rocksdb://",
        datadir=str(data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=CONSUMER_FETCH_BYTES,
        stream_buffer_maxsize=STREAM_BUFFER_EVENTS,
        consumer_group_instance_id=worker_id,  # with the digest of its topics once the agents are registered
        broker_session_timeout=settings.worker_session_timeout_s,
        web_enabled=settings.worker_web_port > 0,
        web_port=max(settings.worker_web_port, 1),
        web_bind="127.0.0.1",
        producer_acks=-1,
        producer_max_request_size=settings.max_request_bytes,
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        autodiscover=False,
        loghandlers=[log_handler()],
    )
    transport.use_settings(app, settings)
    delivery = delivery_mode(settings, worker_id)
    if isinstance(delivery, ExactlyOnce):
        transport.use_exactly_once(app, delivery)
    services = worker_services(settings, app, delivery)
    lag_watch = ConsumerLagWatch(settings, app, faust_app_id(settings))
    lag_watch.register()
    metrics.set_process_role("worker" if settings.shard is None else "shard-worker", faust_app_id(settings),
                             "" if settings.shard is None else str(settings.index_shard))

    @app.on_before_shutdown.connect
    async def stop_services(app: faust.App, **kwargs: Any) -> None:
        await lag_watch.stop()
        await services.stop()

    for module in worker_agents(settings):
        module.register(app, services)
    topics = subscribed_topics(app)
    app.conf.consumer_group_instance_id = static_member_id(worker_id, topics)
    log.info("static group member", extra={"worker_id": worker_id, "group_instance_id": app.conf.consumer_group_instance_id,
                                           "topics": len(topics)})
    return app, services
