"""Signal types as plug-ins, found through one registry built from python-threatexchange.

The registry holds python-threatexchange's own signal types (those its CLI knows: `pdq`,
`video_md5`, `video_sha256`, `raw_text`, `url`, `url_md5`, `trend_query`) and those of every
installed extension: a module with a `TX_MANIFEST` (threatexchange.extensions.manifest). The
extensions bundled with python-threatexchange load when their dependencies are installed (`vpdq`
with the vpdq package, `text_tlsh` with tlsh); more are named by the `signal_extensions` setting
(HMAS_SIGNAL_EXTENSIONS), and must load.

Each type becomes one SignalPlugin: how a value is validated, which content types it is hashed
from and how, the index that searches it, its default and maximum distance, and its quality floor.
This pipeline's own plug-ins (pipeline/plugins/) take the types they have a faster way for; any
other type python-threatexchange matches exactly is searched through a hash map, and every other
one through python-threatexchange's own SignalTypeIndex. So installing an extension adds its
signal types to banks, lookups and the pipeline without a change here.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threatexchange.signal_type import signal_base

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.hashing.base import SignalValue
    from pipeline.state.signal_index import SignalIndex, SignalValues

log = logging.getLogger(__name__)

# python-threatexchange's extensions, loaded when their dependencies are installed.
BUNDLED_EXTENSIONS = ("threatexchange.extensions.vpdq.manifest", "threatexchange.extensions.tlsh")
# This pipeline's plug-ins: modules whose PLUGIN serves one python-threatexchange signal type.
OWN_PLUGINS = ("pipeline.plugins.pdq", "pipeline.plugins.vpdq")


class InvalidSignal(ValueError):
    """A signal value that its signal type does not accept."""


@dataclass(frozen=True)
class Comparison:
    """Two values of one type compared: whether they match at the type's default distance, and how far apart."""

    match: bool
    distance: int


class SignalPlugin:
    """One signal type: python-threatexchange's class, and how this pipeline hashes, indexes and bounds it.

    The generic plug-in hashes content with the class's own hasher and searches with its own
    index (`get_index_cls`); distances per bank do not apply (0 and 0): the index decides.
    """

    default_distance = 0
    max_distance = 0
    hamming = False  # values are bit strings compared bit by bit (the UI draws the bits)
    frames = False  # its recent_codes are frames of one signal (a video's), not the signal itself
    description = ""  # the value's form, in error messages; empty: the type's own message

    def __init__(self, tx: type[signal_base.SignalType]) -> None:
        self.tx = tx
        self.name = tx.get_name()
        self.content_types = frozenset(c.get_name() for c in tx.get_content_types())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    def validate(self, value: object) -> str:
        """The value normalised, or InvalidSignal saying what is wrong."""
        if not isinstance(value, str) or not value:
            raise self.invalid(value)
        try:
            return self.tx.validate_signal_str(value)
        except Exception as exc:  # extensions raise what they like for a malformed value
            raise self.invalid(value, str(exc)) from None

    def invalid(self, value: object, reason: str = "") -> InvalidSignal:
        """The error for a value this type does not accept, saying what it should be."""
        if not isinstance(value, str) or not value:
            return InvalidSignal(f"{self.name} value must be a non-empty string")
        preview = repr(value if len(value) <= 24 else value[:21] + "...") + f" ({len(value)} characters)"
        if self.description:
            return InvalidSignal(f"{self.name} value must be {self.description}, got {preview}")
        return InvalidSignal(f"{self.name} value {preview} is not valid: {reason}")

    def min_quality(self, settings: "Settings") -> int | None:
        """The quality floor: a signal of lower quality is not looked up (None: no floor)."""
        return None

    def new_index(self, exported: dict[str, Any] | None = None) -> "SignalIndex":
        """An empty index for this type's bank signals, or one rebuilt from its `export()`."""
        from pipeline.state.signal_index import ThreatExchangeIndex

        return ThreatExchangeIndex(self.tx, exported)

    def new_value_store(self, exported: dict[str, Any] | None = None) -> "SignalValues":
        """An empty store of this type's values by row (no search), or one rebuilt from its `export()`."""
        from pipeline.state.signal_index import StoredValues

        return StoredValues(exported)

    def hash_content(self, content_type: str, data: bytes) -> "SignalValue | None":
        """This type's signal of some content, None when the type has none for it."""
        from pipeline.hashing.base import HashingError, SignalValue

        if content_type not in self.content_types:
            return None
        tx = self.tx
        if issubclass(tx, signal_base.BytesHasher):
            value = tx.hash_from_bytes(data)
        elif issubclass(tx, (signal_base.TextHasher, signal_base.MatchesStr)):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise HashingError(f"{content_type} content is not UTF-8 text") from None
            if issubclass(tx, signal_base.TextHasher):
                value = tx.hash_from_str(text)
            else:  # the text is the signal, when it is one of this type (a trend query is JSON)
                try:
                    value = tx.validate_signal_str(text)
                except Exception:
                    return None
        elif issubclass(tx, signal_base.FileHasher):
            value = _hash_as_file(tx, data)
        else:
            return None
        return SignalValue(value) if value else None

    def compare(self, a: str, b: str) -> Comparison:
        """Two valid values compared as python-threatexchange compares them."""
        if issubclass(self.tx, signal_base.FileHasher):
            result = self.tx.compare_hash(a, b)
        elif issubclass(self.tx, signal_base.MatchesStr):
            result = self.tx.matches_str(a, b)
        else:
            return Comparison(a == b, 0 if a == b else 1)
        return Comparison(result.match, similarity_distance(result.distance, result.match))

    def recent_codes(self, value: str) -> list[str]:
        """The PDQ codes (hex) of a value that the ring of recent hashes keeps, for retroactive search."""
        return []


class ExactPlugin(SignalPlugin):
    """A type python-threatexchange matches only when equal (its TrivialSignalTypeIndex): a hash map."""

    def new_index(self, exported: dict[str, Any] | None = None) -> "SignalIndex":
        from pipeline.state.signal_index import ExactSignalIndex

        return ExactSignalIndex(exported)

    def compare(self, a: str, b: str) -> Comparison:
        return Comparison(a == b, 0 if a == b else 1)


def similarity_distance(info: object, matched: bool) -> int:
    """An integer distance from python-threatexchange's similarity info: its single distance when
    it has one, else 0 for a match and 1 for none."""
    distance = getattr(info, "distance", None)
    if isinstance(distance, (int, float)) and not isinstance(distance, bool):
        return int(round(distance))
    return 0 if matched else 1


def _hash_as_file(tx: Any, data: bytes) -> str:
    with tempfile.NamedTemporaryFile(delete=False) as tmp:
        tmp.write(data)
    try:
        return tx.hash_from_file(Path(tmp.name))
    finally:
        os.unlink(tmp.name)


def default_tx_types() -> list[type[signal_base.SignalType]]:
    """python-threatexchange's own signal types, as its CLI lists them."""
    from threatexchange.cli.main import _DEFAULT_SIGNAL_TYPES

    return list(_DEFAULT_SIGNAL_TYPES)


def load_extension(module: str) -> list[type[signal_base.SignalType]]:
    """The signal types of one extension module (its TX_MANIFEST); ValueError if it does not load."""
    from threatexchange.extensions.manifest import ThreatExchangeExtensionManifest

    try:
        return list(ThreatExchangeExtensionManifest.load_from_module_name(module).signal_types)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"signal extension {module!r} does not load: {exc}") from None


def extension_tx_types(required: tuple[str, ...]) -> list[type[signal_base.SignalType]]:
    """The signal types of the bundled extensions that load, and of every extension named in settings."""
    found: list[type[signal_base.SignalType]] = []
    for module in BUNDLED_EXTENSIONS:
        if module in required:
            continue
        try:
            found += load_extension(module)
        except ValueError as exc:
            log.debug("bundled extension not installed", extra={"extension": module, "reason": str(exc)})
    for module in required:
        found += load_extension(module)
    return found


def _own_plugins() -> dict[type, type[SignalPlugin]]:
    own: dict[type, type[SignalPlugin]] = {}
    for module in OWN_PLUGINS:
        plugin = importlib.import_module(module).PLUGIN
        tx = plugin.served()
        if tx is not None:
            own[tx] = plugin
    return own


def plugin_for(tx: type[signal_base.SignalType], own: Mapping[type, type[SignalPlugin]]) -> SignalPlugin:
    """This pipeline's plug-in for a python-threatexchange type, the exact one, or the generic one."""
    if tx in own:
        return own[tx](tx)
    if issubclass(tx.get_index_cls(), signal_base.TrivialSignalTypeIndex):
        return ExactPlugin(tx)
    return SignalPlugin(tx)


class Registry(Mapping[str, SignalPlugin]):
    """Signal type name -> plug-in, built on first use from python-threatexchange and the settings."""

    def __init__(self) -> None:
        self._plugins: dict[str, SignalPlugin] | None = None
        self._lock = threading.Lock()

    def _loaded(self) -> dict[str, SignalPlugin]:
        if self._plugins is None:
            with self._lock:
                if self._plugins is None:
                    from pipeline.config import load_settings

                    self._plugins = self._build(load_settings().signal_extensions)
        return self._plugins

    @staticmethod
    def _build(extensions: tuple[str, ...]) -> dict[str, SignalPlugin]:
        own = _own_plugins()
        plugins: dict[str, SignalPlugin] = {}
        for tx in default_tx_types() + extension_tx_types(extensions):
            plugin = plugin_for(tx, own)
            if plugin.name in plugins and plugins[plugin.name].tx is not tx:
                raise ValueError(f"two signal types are named {plugin.name!r}: "
                                 f"{plugins[plugin.name].tx.__name__} and {tx.__name__}")
            plugins[plugin.name] = plugin
        return plugins

    def add_extension(self, module: str) -> list[str]:
        """Load one more extension into this process's registry; the names of its signal types."""
        own = _own_plugins()
        added = [plugin_for(tx, own) for tx in load_extension(module)]
        plugins = self._loaded()
        for plugin in added:
            plugins.setdefault(plugin.name, plugin)
        return [p.name for p in added]

    def __getitem__(self, name: str) -> SignalPlugin:
        return self._loaded()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._loaded()))

    def __len__(self) -> int:
        return len(self._loaded())


SIGNAL_TYPES = Registry()


def signal_type(name: str) -> SignalPlugin:
    try:
        return SIGNAL_TYPES[name]
    except KeyError:
        raise InvalidSignal(f"unknown signal type {name!r}; known: {', '.join(SIGNAL_TYPES)}") from None


def default_signal_type() -> str:
    """The type a bare hash is taken to be where none is named (a form, a CLI argument): the first
    of the registry's types compared bit by bit (python-threatexchange's photo hash)."""
    return next(name for name, plugin in SIGNAL_TYPES.items() if plugin.hamming)


def content_type_of(signal_type_names: Iterable[str]) -> str:
    """The content type of uploads that bring these signals: the first one their types share."""
    shared: set[str] | None = None
    for name in signal_type_names:
        served = signal_type(name).content_types
        shared = set(served) if shared is None else shared & served
    return next((c for c in content_types() if c in (shared or ())), content_types()[0])


def content_types() -> list[str]:
    """The content types uploads may have: those of the schema that some signal type hashes."""
    from pipeline.topics import UPLOADS

    served = {c for plugin in SIGNAL_TYPES.values() for c in plugin.content_types}
    return [c for c in content_type_symbols(UPLOADS.codec.schema) if c in served]


def content_type_symbols(schema: Any) -> list[str]:
    """The symbols of hma.ContentType inside a parsed schema."""
    for f in schema["fields"]:
        branch = f["type"]
        if isinstance(branch, dict) and branch.get("name") in ("hma.ContentType", "ContentType"):
            return list(branch["symbols"])
    raise ValueError("no hma.ContentType in the schema")


def signal_id(signal_type_name: str, value: str) -> str:
    """A short stable id for a signal value, the same in every bank (flood counting is per signal)."""
    return hashlib.sha256(f"{signal_type_name}:{value}".encode()).hexdigest()[:16]
