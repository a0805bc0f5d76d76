"""Recent content through the worker and the API: similar uploads, and clusters of near-duplicates."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from ops.kafka.broker import free_port
from pipeline import topics as T
from pipeline.client import Client
from pipeline.uploads import new_upload
from tests.pipeline_env import (
    BRIDGE, ApiProcess, WorkerProcess, collect_until, create_topics, hmas, pipeline_env, settings_from, stop_all,
    wait_until,
)

pytestmark = pytest.mark.kafka
BRIDGE_GROUP = ["aaa-orig", "blur-a-little", "blur-a-lot", "high-contrast", "shrink-a-little"]  # within distance 6


def variants(rng, n: int) -> list[str]:
    code = rng.integers(0, 256, 32, dtype=np.uint8)
    out = []
    for i in range(n):
        v = code.copy()
        for b in rng.choice(256, 3, replace=False):
            v[b // 8] ^= 1 << (b % 8)
        out.append(v.tobytes().hex())
    return out


def test_recent_similar_and_three_clusters(kafka_broker, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state")
    create_topics(env)
    settings = settings_from(env)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    api = ApiProcess(env, tmp_path / "api.log", free_port()).start()
    try:
        rng = np.random.default_rng(21)
        uploads = [new_upload(f"bridge-{n}", "photo", content=(BRIDGE / f"{n}.jpg").read_bytes()) for n in BRIDGE_GROUP]
        uploads += [new_upload(f"four-{i}", "photo", signals={"pdq": v}) for i, v in enumerate(variants(rng, 4))]
        uploads += [new_upload(f"three-{i}", "photo", signals={"pdq": v}) for i, v in enumerate(variants(rng, 3))]
        uploads += [new_upload(f"single-{i}", "photo", signals={"pdq": rng.bytes(32).hex()}) for i in range(5)]
        client = Client(settings)
        for u in uploads:
            client.produce(T.UPLOADS, u["content_id"], u)
        client.flush()
        hashed = collect_until(settings, T.HASHES, {u["content_id"] for u in uploads})

        def clusters() -> list[dict]:
            return requests.get(f"{api.base}/recent/clusters", params={"window": "1h", "distance": 16, "min_size": 2}).json()

        def all_clustered() -> list[dict] | None:
            found = clusters()
            return found if sum(c["size"] for c in found) >= 12 else None

        found = wait_until(all_clustered, 30, "the API's ring to cluster all 12 near-duplicate uploads", interval_s=0.5,
                           detail=lambda: f"clusters now: {clusters()}")
        assert [c["size"] for c in found] == [5, 4, 3]
        assert {cid.split("-")[0] for cid in found[0]["content_ids"]} == {"bridge"}
        assert found[0]["first_upload_at"] <= found[0]["last_upload_at"]

        probe = hashed["bridge-aaa-orig"][0]["signals"]["pdq"]["value"]
        near = requests.get(f"{api.base}/recent/similar", params={"signal_type": "pdq", "signal": probe, "distance": 16}).json()
        assert near[0] == {**near[0], "content_id": "bridge-aaa-orig", "distance": 0}
        assert {r["content_id"] for r in near} == {f"bridge-{n}" for n in BRIDGE_GROUP}
        assert all(r["uploaded_at"] > 0 for r in near)
        r = requests.get(f"{api.base}/recent/clusters", params={"window": "forever"})
        assert r.status_code == 400 and "window" in r.json()["message"]

        cli = hmas({**env, "HMAS_API_PORT": api.base.rsplit(":", 1)[1]}, "recent", "clusters", "--distance", "16")
        assert len(cli.stdout.splitlines()) == 3
    finally:
        stop_all(api, worker)
