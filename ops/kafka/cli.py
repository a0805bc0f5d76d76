"""`hmas kafka start|stop|status|jars`: the local broker, or a local cluster of them (`--brokers 3`),
unless KAFKA_BOOTSTRAP_SERVERS names a cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from ops.kafka.broker import BrokerError, LocalBroker, ensure_jars
from ops.kafka.cluster import LocalCluster, replication_for
from pipeline.config import Settings

EXIT_NOT_RUNNING = 3  # as `systemctl status` and LSB init scripts answer for a stopped service


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kafka", help="the local Kafka broker (KRaft), or a local cluster of them")
    p.add_argument("action", choices=("start", "stop", "status", "jars"),
                   help="jars: only fetch the broker's jars from Maven Central")
    p.add_argument("--brokers", type=int, default=None,
                   help="nodes of the local cluster (default HMAS_KAFKA_BROKERS, 1); with 3, topics get "
                        "replication 3 and min.insync.replicas 2 once HMAS_TOPIC_REPLICATION and HMAS_TOPIC_MIN_ISR say so")
    p.add_argument("--node", type=int, default=None,
                   help="start or stop only this node of the cluster (1-based), e.g. to try a broker failure")
    p.set_defaults(handler=run)


def local_broker(settings: Settings) -> LocalBroker:
    """The single broker `hmas kafka` manages: data in <data_dir>/kafka, on the configured loopback ports."""
    return LocalBroker(settings.data_dir / "kafka", settings.kafka_port, settings.kafka_controller_port,
                       message_max_bytes=settings.max_request_bytes)


def cluster_dir(settings: Settings) -> Path:
    return settings.data_dir / "kafka-cluster"


def local_cluster(settings: Settings) -> LocalCluster:
    """The cluster of settings.kafka_brokers nodes: data in <data_dir>/kafka-cluster/node-k."""
    return LocalCluster(cluster_dir(settings), settings.local_kafka_ports, message_max_bytes=settings.max_request_bytes)


def local_kafka(settings: Settings) -> LocalBroker | LocalCluster:
    """What `hmas up` starts: the single broker, or the cluster of HMAS_KAFKA_BROKERS nodes."""
    return local_cluster(settings) if settings.kafka_brokers > 1 else local_broker(settings)


def nodes_on_disk(settings: Settings) -> int:
    """Nodes a cluster started here has had (its node folders): `stop` and `status` reach them all."""
    return len(list(cluster_dir(settings).glob("node-*")))


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "jars":
        print(f"Kafka jars in {ensure_jars()}")
        return 0
    if not settings.uses_local_broker:
        print(f"KAFKA_BOOTSTRAP_SERVERS is set: using the cluster at {settings.bootstrap_servers}; "
              "no local broker is started or stopped")
        return 0
    brokers = settings.kafka_brokers if args.brokers is None else args.brokers
    if args.action != "start":
        brokers = max(brokers, nodes_on_disk(settings))
    try:
        if brokers < 1 or (args.node is not None and brokers == 1):
            raise ValueError("--node names a node of a cluster: give --brokers N (or HMAS_KAFKA_BROKERS) too")
        if args.action == "start" or args.node is not None:
            if brokers > 1:
                return _run_cluster(args, settings.with_overrides(kafka_brokers=brokers))
            return _run_broker(args, local_broker(settings))
        # stop and status: the single broker and the cluster, whichever ran here
        if brokers == 1:
            return _run_broker(args, local_broker(settings))
        print("single broker: ", end="")
        codes = [_run_broker(args, local_broker(settings))]
        print(f"cluster of {brokers}:")
        codes.append(_run_cluster(args, settings.with_overrides(kafka_brokers=brokers)))
        return min(codes)
    except (BrokerError, ValueError) as exc:
        print(f"hmas kafka {args.action}: {exc}")
        return 1


def _run_broker(args: argparse.Namespace, broker: LocalBroker) -> int:
    if args.action == "start":
        if broker.is_running():
            print(f"already running: {broker.status()}")
            return 0
        broker.start()
        print(f"started: {broker.bootstrap} (data and broker.log in {broker.data_dir})")
    elif args.action == "stop":
        was_running = broker.is_running()
        broker.stop()
        print("stopped" if was_running else "was not running")
    else:
        print(broker.status())
        return 0 if broker.is_running() else EXIT_NOT_RUNNING
    return 0


def _run_cluster(args: argparse.Namespace, settings: Settings) -> int:
    cluster = local_cluster(settings)
    if args.action == "start":
        if args.node is not None:
            cluster.start_node(args.node)
            print(f"node {args.node} started: {cluster.node(args.node).bootstrap}")
            return 0
        started = cluster.start()
        print(f"started nodes {started or 'none (all running)'}: {cluster.bootstrap} (data in {cluster.data_dir})")
        replication, min_isr = replication_for(len(cluster.nodes))
        if settings.topic_replication != replication or settings.topic_min_isr != min_isr:
            print(f"for topics replicated on every node, set HMAS_KAFKA_BROKERS={len(cluster.nodes)} "
                  f"HMAS_TOPIC_REPLICATION={replication} HMAS_TOPIC_MIN_ISR={min_isr} before `hmas topics create`")
    elif args.action == "stop":
        if args.node is not None:
            cluster.stop_node(args.node)
            print(f"node {args.node} stopped")
            return 0
        was_running = cluster.running()
        cluster.stop()
        print(f"stopped nodes {was_running}" if was_running else "was not running")
    else:
        print(cluster.status())
        return 0 if cluster.is_running() else EXIT_NOT_RUNNING
    return 0
