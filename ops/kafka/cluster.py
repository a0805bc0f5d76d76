"""A local Kafka cluster of N KRaft nodes on loopback (`hmas kafka start --brokers 3`), for trying
replication and broker failures on one machine.

Every node is a broker and a controller in one JVM (combined mode), and the controller quorum is
all N of them: three JVMs instead of six (three controllers beside three brokers) on a machine the
pipeline shares, and one node down leaves both a metadata quorum (2 of 3) and an in-sync
replica set of min.insync.replicas=2, which is the failure the cluster is for. Each node is a
LocalBroker with its own folder, log dir and ports; the cluster id is made once and kept.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ops.kafka.broker import LIB_DIR, LocalBroker, ensure_jars, new_cluster_id

CLUSTER_ID_FILE = "cluster-id"


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of a cluster's topics: every node holds a copy,
    and a write needs all but one of them (1 and 1 for a single node)."""
    return brokers, max(1, brokers - 1)


class LocalCluster:
    """N LocalBroker nodes, node k (1-based) in <data_dir>/node-k on ports[k - 1] (port, controller port)."""

    def __init__(self, data_dir: Path, ports: list[tuple[int, int]], lib_dir: Path = LIB_DIR,
                 message_max_bytes: int | None = None) -> None:
        if len(ports) < 1:
            raise ValueError("a cluster needs at least one node")
        self.data_dir = Path(data_dir).resolve()
        self.lib_dir = lib_dir
        voters = ",".join(f"{k}@127.0.0.1:{controller}" for k, (_, controller) in enumerate(ports, 1))
        self.replication, self.min_isr = replication_for(len(ports))
        self.nodes = [
            LocalBroker(self.data_dir / f"node-{k}", port, controller, lib_dir=lib_dir,
                        message_max_bytes=message_max_bytes, node_id=k, voters=voters,
                        replication=self.replication, min_isr=self.min_isr)
            for k, (port, controller) in enumerate(ports, 1)
        ]

    @property
    def bootstrap(self) -> str:
        """Every node's address: a client still connects while any one of them is down."""
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, k: int) -> LocalBroker:
        """Node k, counted from 1 (its node.id)."""
        if not 1 <= k <= len(self.nodes):
            raise ValueError(f"node {k}: the cluster has nodes 1 to {len(self.nodes)}")
        return self.nodes[k - 1]

    def _cluster_id(self) -> str:
        """The id every node's storage is formatted with: made at the first start, kept in the folder."""
        path = self.data_dir / CLUSTER_ID_FILE
        if not path.is_file():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id() + "\n")
        return path.read_text().strip()

    def start(self, wait_s: float = 120.0) -> list[int]:
        """Start every node that is not running (all at once: none answers before a quorum runs)
        and wait until each answers; returns the node ids started."""
        ensure_jars(self.lib_dir)
        cluster_id = self._cluster_id()
        stopped = [node for node in self.nodes if not node.is_running()]
        for node in stopped:
            node.cluster_id = cluster_id
        with ThreadPoolExecutor(max(1, len(stopped))) as pool:  # each formats its storage first: a JVM each
            launched = list(zip(stopped, pool.map(LocalBroker.launch, stopped)))
        deadline = time.monotonic() + wait_s
        for node, proc in launched:
            node.wait_answering(proc, max(1.0, deadline - time.monotonic()))
        return [node.node_id for node, _ in launched]

    def start_node(self, k: int, wait_s: float = 120.0) -> None:
        """Start one stopped node again (the others running): it catches up from the leaders."""
        node = self.node(k)
        node.cluster_id = self._cluster_id()
        node.start(wait_s)

    def stop_node(self, k: int) -> None:
        """Stop one node (SIGTERM: a controlled shutdown that hands its partitions' leadership over)."""
        self.node(k).stop()

    def stop(self) -> None:
        """Stop every node at once: stopped one after another, the last ones would wait for a quorum gone."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(LocalBroker.stop, self.nodes))

    def running(self) -> list[int]:
        return [node.node_id for node in self.nodes if node.is_running()]

    def is_running(self) -> bool:
        return bool(self.running())

    def status(self) -> str:
        return "\n".join(f"node {node.node_id}: {node.status()}" for node in self.nodes)
