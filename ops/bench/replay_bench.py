"""`hmas bench replay`: records/s of `hmas replay` over hma.hashes, on a broker of its own."""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ops.bench.index_bench import machine
from ops.kafka.broker import LocalBroker, free_ports
from pipeline import topics as T
from pipeline.admin import ensure_topics
from pipeline.banks import bank_record, bank_signal_record
from pipeline.client import Client
from pipeline.clock import now_ms
from pipeline.config import load_settings
from pipeline.replay import replay


def run_replay_bench(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hmas-bench-replay-") as tmp:
        broker = LocalBroker(Path(tmp) / "kafka", *free_ports(2))
        broker.start()
        try:
            settings = load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                                          "HMAS_TOPIC_PREFIX": f"b{uuid.uuid4().hex[:6]}.", "HMAS_DATA_DIR": tmp})
            ensure_topics(broker.bootstrap, settings)
            client = Client(settings)
            rng = np.random.default_rng(5)
            start_ms = now_ms() - 1000
            codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
            t = time.perf_counter()
            for i, code in enumerate(codes):
                client.produce(T.HASHES, f"c{i}", {
                    "content_id": f"c{i}", "content_type": "photo", "source": "signals", "hashed_at": start_ms + 500,
                    "signals": {"pdq": {"value": code.tobytes().hex(), "quality": 100}},
                })
            client.flush()
            produce_s = time.perf_counter() - t
            client.produce(T.BANKS, "BENCH", bank_record("BENCH"))
            for j in range(100):  # banked signals: every 1,000th upload matches
                key, record = bank_signal_record("BENCH", j + 1, "pdq", codes[j * (n // 100)].tobytes().hex())
                client.produce(T.BANK_SIGNALS, key, record)
            client.flush()
            t = time.perf_counter()
            stats = replay(settings, start_ms)
            elapsed = time.perf_counter() - t
        finally:
            broker.stop()
    return {"n": n, "machine": machine(), "produce_records_per_s": round(n / produce_s),
            "replay_s": round(elapsed, 1), "replay_records_per_s": round(stats.records / elapsed),
            "records": stats.records, "retroactive_matches": stats.written}
