"""The lookup front (pipeline/api/front.py): GET lookups answered ahead of aiohttp, exactly as
aiohttp answers them, and every other request handed over to aiohttp on the same connection.

Two `hmas api` processes on one broker and one set of topics: one with the front (the default),
one without (HMAS_API_FRONT_LOOKUPS=0); their answers are compared byte for byte in the body and
status, over raw sockets where the HTTP framing itself is what is checked.
"""

from __future__ import annotations

import socket
import time

import pytest
import requests

from ops.kafka.broker import free_port
from tests.pipeline_env import ApiProcess, checked, create_topics, flip, pipeline_env, random_pdq

TOKEN = "front-token"
CODES = [random_pdq() for _ in range(6)]


@pytest.fixture(scope="module")
def apis(kafka_broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("front")
    env = pipeline_env(kafka_broker.bootstrap, tmp / "state", HMAS_API_TOKEN=TOKEN, HMAS_API_OPEN_READS="0",
                       HMAS_API_LOOKUP_RATE="40")
    create_topics(env)
    front = ApiProcess(env, tmp / "front.log", free_port()).start()
    plain = ApiProcess({**env, "HMAS_DATA_DIR": str(tmp / "plain"), "HMAS_API_FRONT_LOOKUPS": "0"},
                       tmp / "plain.log", free_port()).start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    checked(requests.post(f"{front.base}/c/banks", json={"name": "FRONT"}, headers=auth), 201)
    for code in CODES:
        checked(requests.post(f"{front.base}/c/bank/FRONT/signal", json={"pdq": code}, headers=auth))
    probe = f"/m/raw_lookup?signal_type=pdq&signal={CODES[-1]}"
    deadline = time.monotonic() + 60
    while checked(requests.get(plain.base + probe, headers=auth))["matches"] == []:  # the other view reads it too
        assert time.monotonic() < deadline, "the second API never read the bank"
        time.sleep(0.2)
    try:
        yield front, plain
    finally:
        front.stop()
        plain.stop()


def exchange(base: str, raw: bytes, answers: int, timeout_s: float = 30) -> list[tuple[bytes, dict, bytes]]:
    """Send raw bytes on one connection; the `answers` responses read back: (status line, headers, body)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(raw)
        return read_responses(sock, answers)


def read_responses(sock: socket.socket, answers: int) -> list[tuple[bytes, dict, bytes]]:
    data, out = b"", []
    while len(out) < answers:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            status, *lines = data[:end].split(b"\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines)}
            length = int(headers[b"content-length"])
            if len(data) >= end + 4 + length:
                out.append((status, headers, data[end + 4:end + 4 + length]))
                data = data[end + 4 + length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(out)} of {answers} answers"
        data += chunk
    return out


def get(path: str, token: str | None = TOKEN, extra: str = "") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: api\r\n{auth}{extra}\r\n".encode()


LOOKUPS = [
    f"/m/raw_lookup?signal_type=pdq&signal={CODES[0]}",
    f"/m/raw_lookup?signal_type=pdq&signal={flip(CODES[1], 5)}&include_distance=true",
    f"/m/raw_lookup?signal_type=pdq&signal={random_pdq()}",
    f"/m/lookup?signal_type=pdq&signal={CODES[2]}",
    f"/m/lookup?signal_type=pdq&signal={flip(CODES[3], 9)}&banks=FRONT",
    f"/m/lookup?signal_type=pdq&signal={CODES[3]}&banks=OTHER",
    "/m/raw_lookup?signal_type=pdq&signal=not-hex",  # 400s: the same messages
    "/m/raw_lookup?signal_type=pdq",
    f"/m/raw_lookup?signal_type=nope&signal={CODES[0]}",
    "/m/lookup?signal_type=pdq",
    f"/m/lookup?signal=%20{CODES[0]}&signal_type=pdq",
    "/m/raw_lookup?signal_type=pdq&signal=%ZZ",
    f"/m/lookup?signal_type=pdq&signal={CODES[4]}&banks=OTHER%2CFRONT",
    f"/m/raw_lookup?signal_type=pdq&signal={CODES[4]}&include_distance=1&include_distance=0&seed=a+b",
]


def test_lookups_are_answered_as_aiohttp_answers_them(apis):
    front, plain = apis
    for path in LOOKUPS:
        [(status, headers, body)] = exchange(front.base, get(path), 1)
        [(plain_status, plain_headers, plain_body)] = exchange(plain.base, get(path), 1)
        assert (status, body) == (plain_status, plain_body), path
        assert headers[b"content-type"] == plain_headers[b"content-type"] == b"application/json; charset=utf-8"
    hits = requests.get(front.base + LOOKUPS[0], headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert len(hits["matches"]) == 1  # the comparison above was of answers with hits, not only of empty ones


def test_pipelined_lookups_and_other_routes_share_a_connection(apis):
    front, plain = apis
    raw = b"".join([get(LOOKUPS[0]), get(LOOKUPS[3]), get("/status"), get(LOOKUPS[1])])
    answers = exchange(front.base, raw, 4)
    assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 4
    assert answers[0][2] == exchange(plain.base, get(LOOKUPS[0]), 1)[0][2]
    assert answers[1][2] == exchange(plain.base, get(LOOKUPS[3]), 1)[0][2]
    assert answers[3][2] == exchange(plain.base, get(LOOKUPS[1]), 1)[0][2]  # answered by aiohttp, after the hand-over


def test_a_head_split_across_packets_and_a_closing_client(apis):
    front, _ = apis
    host, port = front.base.removeprefix("http://").split(":")
    request = get(LOOKUPS[0], extra="Connection: close\r\n")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        for part in (request[:7], request[7:40], request[40:]):
            sock.sendall(part)
            time.sleep(0.05)
        [(status, headers, body)] = read_responses(sock, 1)
        assert status == b"HTTP/1.1 200 OK" and headers[b"connection"] == b"close"
        assert sock.recv(1) == b""  # closed by the server


def test_tokens_limits_and_metrics_apply_to_the_front(apis):
    front, _ = apis
    [(status, headers, body)] = exchange(front.base, get(LOOKUPS[0], token=None), 1)
    assert status.startswith(b"HTTP/1.1 401") and headers[b"www-authenticate"] == b"Bearer"
    assert b"Authorization: Bearer" in body
    [(status, _, _)] = exchange(front.base, get(LOOKUPS[0], token="not-ours"), 1)
    assert status.startswith(b"HTTP/1.1 401")

    def count() -> float:
        text = requests.get(f"{front.base}/metrics").text
        line = next((ln for ln in text.splitlines()
                     if ln.startswith('hmas_api_requests_total{route="/m/raw_lookup",status="200"}')), None)
        return float(line.split()[-1]) if line else 0.0

    before = count()
    exchange(front.base, get(LOOKUPS[0]) * 3, 3)
    assert count() == before + 3



def test_everything_else_goes_to_aiohttp(apis):
    front, plain = apis
    for raw in (
        f"HEAD {LOOKUPS[0]} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode(),
        f"GET {LOOKUPS[0]} HTTP/1.0\r\nHost: api\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode(),
        get(LOOKUPS[0], extra="Content-Length: 2\r\n") + b"{}",
        get("/m/lookup?url=http://127.0.0.1:1/x.jpg&content_type=photo"),
    ):
        front_status = exchange_status(front.base, raw)
        assert front_status == exchange_status(plain.base, raw), raw[:60]


def exchange_status(base: str, raw: bytes) -> bytes:
    """The status line of the first answer (HEAD and HTTP/1.0 answers are read up to their head)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "closed without an answer"
            data += chunk
        return data.split(b"\r\n", 1)[0]


def test_a_client_over_its_rate_gets_429s_from_the_front(apis):
    """Last in this module: it spends the token's lookup budget."""
    front, _ = apis
    answers = exchange(front.base, get(LOOKUPS[2]) * 100, 100)  # 40/s, bursts of 80, for this token
    limited = [a for a in answers if a[0].startswith(b"HTTP/1.1 429")]
    assert limited and all(int(a[1][b"retry-after"]) >= 1 for a in limited)
    assert b"over the rate limit" in limited[0][2]
