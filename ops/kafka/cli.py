"""`hmas kafka start|stop|status|jars`: the local broker, unless KAFKA_BOOTSTRAP_SERVERS names a cluster."""

from __future__ import annotations

import argparse

from ops.kafka.broker import BrokerError, LocalBroker, ensure_jars
from pipeline.config import Settings

EXIT_NOT_RUNNING = 3  # as `systemctl status` and LSB init scripts answer for a stopped service


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kafka", help="the local single-node Kafka broker (KRaft)")
    p.add_argument("action", choices=("start", "stop", "status", "jars"),
                   help="jars: only fetch the broker's jars from Maven Central")
    p.set_defaults(handler=run)


def local_broker(settings: Settings) -> LocalBroker:
    """The broker `hmas kafka` manages: data in <data_dir>/kafka, on the configured loopback ports."""
    return LocalBroker(settings.data_dir / "kafka", settings.kafka_port, settings.kafka_controller_port,
                       message_max_bytes=settings.max_request_bytes)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "jars":
        print(f"Kafka jars in {ensure_jars()}")
        return 0
    if not settings.uses_local_broker:
        print(f"KAFKA_BOOTSTRAP_SERVERS is set: using the cluster at {settings.bootstrap_servers}; "
              "no local broker is started or stopped")
        return 0
    broker = local_broker(settings)
    try:
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
    except BrokerError as exc:
        print(f"hmas kafka {args.action}: {exc}")
        return 1
    return 0
