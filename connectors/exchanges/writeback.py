"""The write side of an exchange, which python-threatexchange's SignalExchangeAPI lacks (it has
only `report_opinion`, which only the file exchange implements): report a reviewer's opinion of a
signal the exchange gave us, and publish or withdraw a signal of a shared bank.

`ExchangeWriteAPI` is the protocol; one adapter per exchange API implements it with the write
calls of python-threatexchange's own clients. Every adapter call sets a state at the exchange (my
vote on an entry, my feedback on a hash, my descriptor of an indicator, a line of a file) rather
than adding an event, so a call repeated after a lost answer leaves the exchange as one call would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from threatexchange.exchanges.clients.fb_threatexchange.api import ThreatExchangeAPI
from threatexchange.exchanges.clients.ncmec import hash_api as ncmec
from threatexchange.exchanges.clients.stopncii import api as stopncii
from threatexchange.exchanges.fetch_state import SignalOpinion, SignalOpinionCategory
from threatexchange.exchanges.impl.fb_threatexchange_api import FBThreatExchangeSignalExchangeAPI
from threatexchange.exchanges.impl.file_api import LocalFileSignalExchangeAPI
from threatexchange.exchanges.impl.ncmec_api import NCMECSignalExchangeAPI
from threatexchange.exchanges.impl.stop_ncii_api import StopNCIISignalExchangeAPI
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal


class WriteRefused(Exception):
    """A write this exchange cannot take (no such call in its API, a signal type it does not
    hold): retrying cannot help, so it is dead-lettered at once."""


class WriteFailed(Exception):
    """The exchange answered a write with an error (retried, then dead-lettered)."""


@dataclass(frozen=True)
class ExchangeSignal:
    """A signal as an exchange knows it: type and value, and the exchange's record it came from."""

    signal_type: str
    value: str
    record_id: str | None = None
    tags: frozenset[str] = frozenset()


class ExchangeWriteAPI(Protocol):
    def report_feedback(self, signal: ExchangeSignal, opinion: SignalOpinion) -> None:
        """Tell the exchange what a reviewer decided about a signal it gave us."""

    def share_add(self, signal: ExchangeSignal) -> None:
        """Publish a signal of a shared bank."""

    def share_remove(self, signal: ExchangeSignal) -> None:
        """Withdraw a signal published before."""


def opinion_of(confirmed: bool, tags: frozenset[str] = frozenset()) -> SignalOpinion:
    """A reviewer's confirm (harmful) or deconfirm (benign) as python-threatexchange's opinion."""
    category = SignalOpinionCategory.POSITIVE_CLASS if confirmed else SignalOpinionCategory.NEGATIVE_CLASS
    return SignalOpinion(True, category, set(tags))


def _refused(exchange: str, what: str) -> WriteRefused:
    return WriteRefused(f"the {exchange} exchange API has no call to {what}")


class NCMECWrites:
    """NCMEC: feedback is an upvote or downvote of one fingerprint of one entry
    (`submit_feedback`); its hash API client has no upload, so nothing is shared."""

    FINGERPRINTS = {PdqSignal.get_name(): ncmec.FingerprintType.pdq, VideoMD5Signal.get_name(): ncmec.FingerprintType.md5}

    def __init__(self, api: NCMECSignalExchangeAPI) -> None:
        self.api = api

    def report_feedback(self, signal: ExchangeSignal, opinion: SignalOpinion) -> None:
        esp_id, _, entry_id = (signal.record_id or "").partition("-")  # the fetcher's key: "<member id>-<entry id>"
        if not esp_id.isdigit() or not entry_id:
            raise WriteRefused(f"no NCMEC entry id in record id {signal.record_id!r}")
        fingerprint = self.FINGERPRINTS.get(signal.signal_type)
        if fingerprint is None:
            raise WriteRefused(f"NCMEC takes no feedback on {signal.signal_type} signals")
        vote = (ncmec.FeedbackType.upvote if opinion.category == SignalOpinionCategory.POSITIVE_CLASS
                else ncmec.FeedbackType.downvote)
        client = self.api.get_client(self.api.collab.environment)
        client.submit_feedback(int(esp_id), entry_id, fingerprint, vote)

    def share_add(self, signal: ExchangeSignal) -> None:
        raise _refused("NCMEC", "upload entries")

    def share_remove(self, signal: ExchangeSignal) -> None:
        raise _refused("NCMEC", "remove entries")


class StopNCIIWrites:
    """StopNCII: feedback and sharing are both a CSP's feedback value on a hash (`submit_feedback`,
    `submit_hashes`). Its write endpoints are called with the fetch function key (an Azure host
    key serves every function); the credentials have no other."""

    TYPES = {PdqSignal.get_name(): stopncii.StopNCIISignalType.ImagePDQ,
             VideoMD5Signal.get_name(): stopncii.StopNCIISignalType.VideoMD5}

    def __init__(self, api: StopNCIISignalExchangeAPI) -> None:
        client = api.api
        keys = client._function_keys
        key = keys[stopncii.StopNCIIEndpoint.FetchHashes]
        for endpoint in (stopncii.StopNCIIEndpoint.SubmitHashes, stopncii.StopNCIIEndpoint.SubmitFeedback):
            keys.setdefault(endpoint, key)
        self.client = client

    def _type(self, signal: ExchangeSignal) -> stopncii.StopNCIISignalType:
        kind = self.TYPES.get(signal.signal_type)
        if kind is None:
            raise WriteRefused(f"StopNCII takes no {signal.signal_type} signals")
        return kind

    def report_feedback(self, signal: ExchangeSignal, opinion: SignalOpinion) -> None:
        value = (stopncii.StopNCIICSPFeedbackValue.Blocked if opinion.category == SignalOpinionCategory.POSITIVE_CLASS
                 else stopncii.StopNCIICSPFeedbackValue.NotBlocked)
        self.client.submit_feedback(self._type(signal), signal.value, value, set(opinion.tags))

    def share_add(self, signal: ExchangeSignal) -> None:
        self.client.submit_hash(self._type(signal), signal.value, set(signal.tags))

    def share_remove(self, signal: ExchangeSignal) -> None:
        self.client.submit_feedback(self._type(signal), signal.value, stopncii.StopNCIICSPFeedbackValue.Withdrawn)


class ThreatExchangeWrites:
    """ThreatExchange: feedback is a reaction (HELPFUL / NOT_HELPFUL) on the other members'
    descriptors of the indicator; sharing uploads this app's descriptor into the collaboration's
    privacy group, and withdrawing deletes it. An upload first looks for this app's descriptor of
    the indicator, so a repeated upload does not make a second one."""

    TYPES = {PdqSignal.get_name(): "HASH_PDQ", VideoMD5Signal.get_name(): "HASH_VIDEO_MD5"}

    def __init__(self, api: FBThreatExchangeSignalExchangeAPI) -> None:
        self.client: ThreatExchangeAPI = api.client
        self.privacy_group = api.collab.privacy_group

    def _type(self, signal: ExchangeSignal) -> str:
        kind = self.TYPES.get(signal.signal_type)
        if kind is None:
            raise WriteRefused(f"ThreatExchange sharing takes no {signal.signal_type} signals")
        return kind

    def _descriptors(self, signal: ExchangeSignal, mine: bool) -> list[str]:
        cursor = self.client.search_threat_descriptors(
            privacy_groups=[self.privacy_group], text=signal.value, strict_text=True, type=self._type(signal),
            fields=("id", "owner"))
        found = [d for page in cursor for d in page]
        app = str(self.client.app_id)
        return [str(d["id"]) for d in found if (str(d.get("owner", {}).get("id")) == app) == mine]

    @staticmethod
    def _check(answer: list[Any]) -> None:
        message, error, body = answer
        problem = message or error or (body.get("error") if isinstance(body, dict) else None)
        if problem:
            raise WriteFailed(f"ThreatExchange answered: {problem}")

    def report_feedback(self, signal: ExchangeSignal, opinion: SignalOpinion) -> None:
        reaction = "HELPFUL" if opinion.category == SignalOpinionCategory.POSITIVE_CLASS else "NOT_HELPFUL"
        descriptors = self._descriptors(signal, mine=False)
        if not descriptors:
            raise WriteFailed(f"ThreatExchange has no descriptor of {signal.value} in privacy group {self.privacy_group}")
        for descriptor in descriptors:
            self._check(self.client.react_to_threat_descriptor(descriptor, reaction))

    def share_add(self, signal: ExchangeSignal) -> None:
        if self._descriptors(signal, mine=True):
            return
        self._check(self.client.upload_threat_descriptor({
            "indicator": signal.value, "type": self._type(signal), "description": "shared by HMA Streams",
            "share_level": "AMBER", "status": "MALICIOUS", "privacy_type": "HAS_PRIVACY_GROUP",
            "privacy_members": str(self.privacy_group), "tags": ",".join(sorted(signal.tags)),
        }, False, False))

    def share_remove(self, signal: ExchangeSignal) -> None:
        for descriptor in self._descriptors(signal, mine=True):
            self._check(self.client.delete_threat_descriptor(descriptor, False, False))


class LocalFileWrites:
    """The file exchange: a file of positive signals, one `<type> <value>` line each. A confirm
    or a share adds the line unless it is there; a deconfirm or a withdrawal removes it.
    (python-threatexchange 1.2.17's `report_opinion` would append the same line, but opens the file
    with mode "wta", which Python refuses.)"""

    def __init__(self, api: LocalFileSignalExchangeAPI) -> None:
        self.api = api
        self.path = Path(api.collab.filename)

    def _line(self, signal: ExchangeSignal) -> str:
        return signal.value if self.api.collab.signal_type else f"{signal.signal_type} {signal.value}"

    def _lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def report_feedback(self, signal: ExchangeSignal, opinion: SignalOpinion) -> None:
        if opinion.category == SignalOpinionCategory.POSITIVE_CLASS:
            self.share_add(signal)
        else:
            self.share_remove(signal)

    def share_add(self, signal: ExchangeSignal) -> None:
        if self._line(signal) in self._lines():
            return
        text = self.path.read_text() if self.path.exists() else ""
        with self.path.open("a") as appended:
            appended.write(("" if not text or text.endswith("\n") else "\n") + self._line(signal) + "\n")

    def share_remove(self, signal: ExchangeSignal) -> None:
        lines = self._lines()
        kept = [line for line in lines if line.strip() != self._line(signal)]
        if kept != lines:
            temporary = self.path.with_name(self.path.name + ".hmas-tmp")
            temporary.write_text("".join(f"{line}\n" for line in kept))
            os.replace(temporary, self.path)


def write_api(api: Any) -> ExchangeWriteAPI:
    """The write adapter of an exchange API object (exchange_client's answer)."""
    for api_cls, adapter in ((NCMECSignalExchangeAPI, NCMECWrites), (StopNCIISignalExchangeAPI, StopNCIIWrites),
                             (FBThreatExchangeSignalExchangeAPI, ThreatExchangeWrites),
                             (LocalFileSignalExchangeAPI, LocalFileWrites)):
        if isinstance(api, api_cls):
            return adapter(api)  # type: ignore[abstract]
    raise WriteRefused(f"the {type(api).get_name()} exchange API takes no writes")


def signal_of(write: dict[str, Any]) -> ExchangeSignal:
    """The signal of a hma.exchange-outbox value."""
    return ExchangeSignal(write["signal_type"], write["value"], write["record_id"], frozenset(write["tags"]))


def deliver(api: ExchangeWriteAPI, write: dict[str, Any]) -> None:
    """Make one hma.exchange-outbox write at the exchange (blocking: the clients are synchronous)."""
    signal, op = signal_of(write), write["op"]
    if op in ("confirm", "deconfirm"):
        api.report_feedback(signal, opinion_of(op == "confirm", signal.tags))
    elif op == "share_add":
        api.share_add(signal)
    elif op == "share_remove":
        api.share_remove(signal)
    else:
        raise WriteRefused(f"unknown write {op!r}")

