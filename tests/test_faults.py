"""The fault bench at a small size (`hmas bench faults` runs it at full size): a worker in
exactly-once mode SIGKILLed while pre-hashed and photo uploads flow, then restarted; a consumer
reading committed records finds every upload's hash record and match record exactly once, every
matching upload's action and flood hit exactly once, and the flood counts (read back from the
flood table's changelog) within the sketch's error."""

from __future__ import annotations

import json

import pytest

from ops.bench.faults_bench import Workload, exactly_once_held, worker_kills
from ops.bench.harness import BenchPipeline
from pipeline import topics as T

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_a_worker_killed_in_exactly_once_mode_writes_each_output_once(kafka_broker):
    workload = Workload.make(prehashed=600, photos=6)

    with BenchPipeline(bootstrap=kafka_broker.bootstrap, HMAS_PROCESSING_GUARANTEE="exactly_once") as p:
        report = worker_kills(p, workload, kills=1, rate=40, seed=3, timeout_s=180)

    for spec in (T.HASHES, T.MATCHES):
        assert report[spec.suffix]["expected"] == len(workload.uploads)
    for spec in (T.ACTIONS, T.FLOOD_HITS):
        assert report[spec.suffix]["expected"] == len(workload.matching) > len(workload.uploads) // 2
    assert report["faults"] == 1
    assert exactly_once_held(report), json.dumps(report, indent=1)
