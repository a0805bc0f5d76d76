"""HTTP servers on loopback that answer what python-threatexchange's own clients ask of NCMEC,
StopNCII and ThreatExchange: their fetch pagination, credentials, and write calls, with faults a
test arms (an expired credential, a rate limit, a malformed answer, a failing write).

Shapes follow the clients in threatexchange/exchanges/clients/ (and NCMEC's XML as its client
parses it). Each server keeps the state its write calls set, as the real exchanges do (my vote on
an entry's fingerprint, my feedback on a hash, my descriptor of an indicator), and a log of the
write calls it applied, so a test sees every write received once.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

NCMEC_DATE = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class Fault:
    """Answers the next `times` requests whose path contains `path` with `status` and `body`."""

    path: str
    status: int
    body: bytes = b""
    times: int = 1


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"


class FakeExchange:
    """One fake exchange server: subclasses answer (method, path, query, body, headers)."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.applied: list[tuple[Any, ...]] = []  # every write call applied, in order
        self.lock = threading.Lock()
        self.hold_writes = threading.Event()  # set: a write is applied, then its answer waits for `release`
        self.write_held = threading.Event()
        self.release = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- serving ----------------------------------------------------------------------------------
    def start(self) -> "FakeExchange":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = fake.answer(self.command, parsed.path, urllib.parse.parse_qs(parsed.query), body, self.headers)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: Any) -> Answer:
        with self.lock:
            self.requests.append((method, path))
            for fault in self.faults:
                if fault.path in path and fault.times > 0:
                    fault.times -= 1
                    return Answer(fault.status, fault.body)
            answer = self.route(method, path, query, body, headers)
        if method != "GET" and self.hold_writes.is_set():  # the caller may die before it hears back
            self.write_held.set()
            self.release.wait(120)
        return answer

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: Any) -> Answer:
        raise NotImplementedError

    def fail(self, path: str, status: int, body: bytes = b"", times: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(path, status, body, times))

    def count(self, method: str, fragment: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and fragment in p)


def _json(value: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(value).encode())


# -- StopNCII ---------------------------------------------------------------------------------------
@dataclass
class StopNCIIHash:
    value: str
    modified: int
    signal_type: str = "ImagePDQ"
    status: str = "Active"


class FakeStopNCII(FakeExchange):
    """/v1/FetchHashes (pages of `page_size` by lastModtimestamp, then nextPageToken),
    /v1/SubmitHashes and /v1/SubmitFeedback; both keys checked on every call."""

    def __init__(self, function_key: str, subscription_key: str, page_size: int = 2) -> None:
        super().__init__()
        self.keys = (function_key, subscription_key)
        self.page_size = page_size
        self.hashes: list[StopNCIIHash] = []
        self.feedback: dict[str, str] = {}  # hash -> my feedback value
        self.submitted: dict[str, str] = {}  # hash -> feedback value of my submission

    @property
    def endpoint(self) -> str:
        return self.base + "/v1"

    def route(self, method, path, query, body, headers) -> Answer:
        if (headers.get("x-functions-key"), headers.get("Ocp-Apim-Subscription-Key")) != self.keys:
            return _json({"statusCode": 401, "message": "Access denied due to invalid subscription key."}, 401)
        if method == "GET" and path == "/v1/FetchHashes":
            start = int(query["startTimestamp"][0])
            offset = int(query.get("nextPageToken", ["0"])[0])
            due = sorted((h for h in self.hashes if h.modified >= start), key=lambda h: h.modified)
            page = due[offset:offset + self.page_size]
            more = offset + self.page_size < len(due)
            return _json({
                "count": len(page), "nextPageToken": str(offset + self.page_size) if more else None,
                "nextSetTimestamp": max([h.modified for h in due[:offset + len(page)]] or [start]),
                "hasMoreRecords": more,
                "hashRecords": [{"lastModtimestamp": h.modified, "signalType": h.signal_type, "hashValue": h.value,
                                 "hashStatus": h.status, "caseNumbers": {}, "CSPFeedbacks": []} for h in page],
            })
        if method == "POST" and path in ("/v1/SubmitHashes", "/v1/SubmitFeedback"):
            payload = json.loads(body)
            target = self.submitted if path.endswith("SubmitHashes") else self.feedback
            items = payload.get("hashRecords") or payload.get("hashFeedbacks") or []
            for item in items:
                value = item.get("feedbackValue") or item["CSPFeedbacks"][0]["feedbackValue"]
                target[item["hashValue"]] = value
                self.applied.append((path.rsplit("/", 1)[1], item["hashValue"], value))
            return _json({"count": len(items)})
        return _json({"message": "not found"}, 404)


# -- NCMEC --------------------------------------------------------------------------------------------
@dataclass
class NCMECEntry:
    member_id: int
    entry_id: str
    timestamp: int
    pdq: str
    deleted: bool = False


class FakeNCMEC(FakeExchange):
    """/v2/entries (XML by `from`/`to`, pages of `page_size` through paging/next),
    /v2/feedback/<type>/reasons, and PUT /v2/entries/<esp>/<entry>/<type>/feedback; basic auth."""

    def __init__(self, user: str, password: str, page_size: int = 2) -> None:
        super().__init__()
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.page_size = page_size
        self.entries: list[NCMECEntry] = []
        self.votes: dict[tuple[int, str, str], str] = {}  # (esp, entry, fingerprint) -> affirmative / negative

    def route(self, method, path, query, body, headers) -> Answer:
        if headers.get("Authorization") != self.auth:
            return Answer(401, b"<error>unauthorized</error>", "application/xml")
        if method == "GET" and path == "/v2/entries":
            return self._entries(query)
        if method == "GET" and path.startswith("/v2/feedback/") and path.endswith("/reasons"):
            return Answer(200, b'<feedbackReasons><availableFeedbackReasons><reason guid="g-1" name="Not CSAM"/>'
                               b"</availableFeedbackReasons></feedbackReasons>", "application/xml")
        parts = path.split("/")
        if method == "PUT" and len(parts) == 7 and parts[2] == "entries" and parts[6] == "feedback":
            vote = "affirmative" if b"affirmative" in body else "negative"
            self.votes[int(parts[3]), parts[4], parts[5]] = vote
            self.applied.append(("feedback", int(parts[3]), parts[4], parts[5], vote))
            return Answer(200, b"", "application/xml")
        return Answer(404, b"<error>not found</error>", "application/xml")

    def _entries(self, query: dict[str, list[str]]) -> Answer:
        def ts(name: str) -> int:
            return int(datetime.strptime(query[name][0], NCMEC_DATE).replace(tzinfo=timezone.utc).timestamp())

        start, end = ts("from"), ts("to")
        offset = int(query.get("start", ["0"])[0])
        due = sorted((e for e in self.entries if start <= e.timestamp <= end), key=lambda e: e.timestamp)
        page = due[offset:offset + self.page_size]
        nxt = ""
        if offset + self.page_size < len(due):
            params = urllib.parse.urlencode({"from": query["from"][0], "to": query["to"][0],
                                             "start": offset + self.page_size, "size": self.page_size,
                                             "max": len(due)})
            nxt = escape(f"/v2/entries?{params}")
        images = "".join(
            f"<{'deletedImage' if e.deleted else 'image'}><id>{e.entry_id}</id><classification>A1</classification>"
            f'<member id="{e.member_id}">Member {e.member_id}</member>'
            f"<fingerprints><pdq>{e.pdq}</pdq></fingerprints></{'deletedImage' if e.deleted else 'image'}>"
            for e in page)
        max_ts = datetime.fromtimestamp(max([e.timestamp for e in due] or [end]), timezone.utc).strftime(NCMEC_DATE)
        xml = (f'<queryResult xmlns="https://hashsharing.ncmec.org/hashsharing/v2">'
               f'<images count="{len(page)}" maxTimestamp="{max_ts}">{images}</images>'
               f"<paging><next>{nxt}</next></paging></queryResult>")
        return Answer(200, xml.encode(), "application/xml")


# -- ThreatExchange -------------------------------------------------------------------------------
@dataclass
class Descriptor:
    id: int
    owner: int
    indicator: str
    type: str
    updated: int
    tags: list[str] = field(default_factory=list)
    status: str = "MALICIOUS"
    reactions: dict[int, str] = field(default_factory=dict)  # app id -> reaction


class FakeThreatExchange(FakeExchange):
    """The Graph API paths the ThreatExchange client uses under `endpoint`: threat_updates of a
    privacy group (pages through paging.next), threat_descriptors search and upload, reactions
    on a descriptor, and its deletion; the access token checked on each."""

    PREFIX = "/te"

    def __init__(self, token: str, privacy_group: int, page_size: int = 2) -> None:
        super().__init__()
        self.token = token
        self.app_id = int(token.partition("|")[0])
        self.privacy_group = privacy_group
        self.page_size = page_size
        self.descriptors: dict[int, Descriptor] = {}
        self._next_id = 1000

    @property
    def endpoint(self) -> str:
        return self.base + self.PREFIX

    def add(self, owner: int, indicator: str, updated: int, kind: str = "HASH_PDQ", tags: list[str] | None = None) -> Descriptor:
        self._next_id += 1
        d = self.descriptors[self._next_id] = Descriptor(self._next_id, owner, indicator, kind, updated, tags or [])
        return d

    def route(self, method, path, query, body, headers) -> Answer:
        if query.get("access_token", [""])[0] != self.token:
            return _json({"error": {"message": "Error validating access token: Session has expired", "code": 190}}, 400)
        rest = path[len(self.PREFIX):].strip("/")
        if method == "GET" and rest == f"{self.privacy_group}/threat_updates":
            return self._updates(query)
        if method == "GET" and rest == "threat_descriptors":
            found = [d for d in self.descriptors.values()
                     if d.indicator == query.get("text", [""])[0] and d.type == query.get("type", [d.type])[0]]
            return _json({"data": [{"id": str(d.id), "owner": {"id": str(d.owner)}} for d in found]})
        if method == "POST" and rest == "threat_descriptors":
            d = self.add(self.app_id, query["indicator"][0], int(time.time()), query["type"][0],
                         [t for t in query.get("tags", [""])[0].split(",") if t])
            self.applied.append(("upload", d.indicator))
            return _json({"success": True, "id": str(d.id)})
        if rest.isdigit() and int(rest) in self.descriptors:
            d = self.descriptors[int(rest)]
            if method == "POST" and "reactions" in query:
                d.reactions[self.app_id] = query["reactions"][0]
                self.applied.append(("react", d.id, query["reactions"][0]))
                return _json({"success": True})
            if method == "DELETE" and d.owner == self.app_id:
                del self.descriptors[d.id]
                self.applied.append(("delete", d.indicator))
                return _json({"success": True})
        return _json({"error": {"message": "Unsupported request", "code": 100}}, 400)

    def _updates(self, query: dict[str, list[str]]) -> Answer:
        start = int(query["start_time"][0]) if query.get("start_time", [""])[0] not in ("", "None") else 0
        offset = int(query.get("after", ["0"])[0])
        due = sorted((d for d in self.descriptors.values() if d.updated >= start), key=lambda d: d.updated)
        page = due[offset:offset + self.page_size]
        data = [{"id": str(d.id + 10**6), "indicator": d.indicator, "type": d.type, "last_updated": d.updated,
                 "should_delete": False,
                 "descriptors": {"data": [{"id": str(d.id), "owner": {"id": str(d.owner)}, "tags": d.tags,
                                           "status": d.status, "reactions": []}]}} for d in page]
        answer: dict[str, Any] = {"data": data}
        if offset + self.page_size < len(due):
            params = urllib.parse.urlencode({"access_token": self.token, "start_time": start,
                                             "after": offset + self.page_size})
            answer["paging"] = {"next": f"{self.endpoint}/{self.privacy_group}/threat_updates/?{params}"}
        return _json(answer)


