"""Metrics as an operator sees them: a worker, an API and an exchange fetcher on the real broker,
scraped over HTTP.

Every metric docs/metrics.md lists is exported, with its documented type, by each process it names;
after real traffic (a match, a refused URL) the series carry the documented labels; and every
metric the Grafana dashboard and the alert rules use is one of those exported.
"""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ops.kafka.broker import free_port
from pipeline import topics as T
from pipeline.client import Client
from pipeline.uploads import new_upload
from tests.monitoring_files import documented_metrics, monitoring_expressions, metric_names_in
from tests.pipeline_env import BRIDGE_ORIGINAL, SHIPPED_MEDIA, HmasProcess, PipelineStack, hmas, pipeline_env, wait_until

pytestmark = pytest.mark.kafka
TOKEN = "metrics-token"
BANK = "METRICS_BANK"


class Scraped:
    """One scrape of a /metrics endpoint: the families by their sample name, with their samples."""

    def __init__(self, base: str) -> None:
        text = requests.get(f"{base}/metrics", timeout=10).text
        self.types: dict[str, str] = {}
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            name = f"{family.name}_total" if family.type == "counter" else family.name
            self.types[name] = family.type
            self.samples += [(s.name, s.labels, s.value) for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels`."""
        return sum(v for n, sample_labels, v in self.samples
                   if n == name and all(sample_labels.get(k) == want for k, want in labels.items()))

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [sample_labels for n, sample_labels, _ in self.samples if n == name]


class MetricsStack(PipelineStack):
    """A worker (metrics on their own port), an API and a fetcher of one pipeline."""

    def __init__(self, env, tmp):
        self.worker_metrics = f"http://127.0.0.1:{env['HMAS_METRICS_PORT']}"
        fetcher_port = free_port()
        self.fetcher_metrics = f"http://127.0.0.1:{fetcher_port}"
        self.fetcher = HmasProcess({**env, "HMAS_METRICS_PORT": str(fetcher_port)}, tmp / "fetcher.log", "fetcher")
        super().__init__(env, tmp, TOKEN)

    def start(self) -> None:
        super().start()
        self.fetcher.start()

    def stop(self) -> None:
        self.fetcher.stop()
        super().stop()

    def scrape(self, process: str) -> Scraped:
        base = {"worker": self.worker_metrics, "api": self.api.base, "fetcher": self.fetcher_metrics}[process]
        return Scraped(base)


def _answers(url: str) -> int:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.ConnectionError:
        return 0


@pytest.fixture(scope="module")
def stack(kafka_broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    env = pipeline_env(kafka_broker.bootstrap, tmp / "state", HMAS_API_TOKEN=TOKEN,
                       HMAS_METRICS_PORT=str(free_port()))
    hmas(env, "topics", "create")
    s = MetricsStack(env, tmp)
    try:
        s.call("POST", "/c/banks", 201, json={"name": BANK})
        photo = SHIPPED_MEDIA.path(BRIDGE_ORIGINAL)
        s.call("POST", f"/c/bank/{BANK}/content", files={"file": (photo.name, photo.read_bytes())})
        client = Client(s.settings)
        client.produce(T.UPLOADS, "matching-photo", new_upload("matching-photo", "photo", content=photo.read_bytes()))
        client.produce(T.UPLOADS, "refused-url", new_upload("refused-url", "photo", url="http://127.0.0.1:9/x.jpg"))
        client.flush()
        wait_until(lambda: s.scrape("worker").value("hmas_actions_total", bank=BANK)
                   and s.scrape("worker").value("hmas_dead_letters_total", reason="fetch_failed")
                   and s.scrape("worker").labels_of("hmas_consumer_lag_records"),
                   120, "the worker's metrics to show the match, the dead letter and its consumer lag",
                   detail=s.worker.log_tail)
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("process", ["worker", "api", "fetcher"])
def test_every_documented_metric_is_exported_with_its_type(stack, process):
    scraped = stack.scrape(process)
    documented = {name: doc for name, doc in documented_metrics().items() if process in doc.processes}
    assert documented, f"docs/metrics.md names no metric of the {process}"
    missing = sorted(name for name in documented if name not in scraped.types)
    assert not missing, f"documented for the {process} but not exported: {missing}"
    wrong = {name: (doc.type, scraped.types[name]) for name, doc in documented.items()
             if scraped.types[name] != doc.type}
    assert not wrong, f"documented type != exported type: {wrong}"
    undocumented = sorted(name for name in scraped.types
                          if name.startswith("hmas_") and name not in documented_metrics())
    assert not undocumented, f"exported by the {process} but not in docs/metrics.md: {undocumented}"


def test_series_carry_the_documented_labels_after_traffic(stack):
    worker, api = stack.scrape("worker"), stack.scrape("api")
    for scraped in (worker, api):
        for name, doc in documented_metrics().items():
            for labels in scraped.labels_of(name):
                assert set(labels) == set(doc.labels), (name, labels, doc.labels)
    assert worker.value("hmas_process_info", role="worker") == 1
    assert api.value("hmas_process_info", role="api") == 1
    assert stack.scrape("fetcher").value("hmas_process_info", role="fetcher") == 1
    assert worker.value("hmas_actions_total", bank=BANK, action="review") == 1
    assert worker.value("hmas_hits_total", status="match") == 1
    assert worker.value("hmas_fetch_errors_total", reason="refused_address") == 1
    assert worker.value("hmas_dead_letters_total", agent="hasher", reason="fetch_failed") == 1
    assert worker.value("hmas_records_in_total", agent="hasher", topic="uploads") == 2
    assert worker.value("hmas_records_out_total", agent="hasher", topic="hashes") == 1
    assert worker.value("hmas_hash_seconds_count", content_type="photo") == 1
    assert worker.value("hmas_upload_to_match_seconds_count") == 1
    assert worker.value("hmas_lookups_total", signal_type="pdq") >= 1
    lag_topics = {labels["topic"] for labels in worker.labels_of("hmas_consumer_lag_records")}
    assert {"uploads", "hashes"} <= lag_topics
    wait_until(lambda: stack.scrape("api").value("hmas_index_signals", signal_type="pdq") == 1, 30,
               "the API's index size to be measured")
    assert stack.scrape("worker").value("hmas_index_signals", signal_type="pdq") == 1
    assert worker.value("hmas_bank_view_ready") == 1 and api.value("hmas_bank_view_ready") == 1
    assert "bank-signals" in {labels["topic"] for labels in api.labels_of("hmas_bank_view_lag_records")}


def test_worker_and_fetcher_answer_probes(stack):
    for base in (stack.worker_metrics, stack.fetcher_metrics):
        assert _answers(f"{base}/status") == 200
        assert _answers(f"{base}/status/live") == 200


def test_dashboard_and_alert_rules_use_only_exported_metrics(stack):
    exported: set[str] = set()
    for process in ("worker", "api", "fetcher"):
        scraped = stack.scrape(process)
        exported |= set(scraped.types) | {name for name, _, _ in scraped.samples}
    exported.add("up")  # Prometheus' own, per scrape target
    expressions = monitoring_expressions()
    assert len(expressions) >= 10
    used = {name: where for where, expr in expressions for name in metric_names_in(expr)}
    unknown = {name: where for name, where in used.items() if name not in exported}
    assert not unknown, f"used by a panel or a rule but exported by no process: {unknown}"
