"""A three-broker local cluster (replication 3, min.insync.replicas 2): one broker stopped while
uploads flow and started again; nothing is lost, and the stall of matching is reported."""

from __future__ import annotations

import json

import pytest

from ops.bench.cluster_faults import run_cluster_faults
from pipeline import topics as T

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_a_broker_of_three_stopped_mid_stream_loses_nothing(record_property):
    report = run_cluster_faults(n=1000, uploads=1500, rate=100, stop_after_s=4, down_s=4)
    print(json.dumps(report, indent=2))  # the stall, for whoever reads the test's output
    record_property("stall", {key: value for key, value in report.items() if "gap" in key or "upload_to_match" in key})

    assert report["uploads_topic"] == {"replicas": 3, "min_insync_replicas": 2}
    assert {"stopped", "answering_again"} <= report["outage_s_from_start"].keys()
    accounting = report["accounting"]
    for spec in (T.HASHES, T.MATCHES, T.ACTIONS):
        assert accounting[spec.suffix]["missing"] == 0, (spec.suffix, accounting)
    assert accounting[T.ACTIONS.suffix]["expected"] == 750
    assert accounting["dead_letters"] == 0
    assert report["nothing_lost"]
    assert report["longest_gap_between_matches_s"] is not None
