"""A signal type neither python-threatexchange nor this project knows, shipped as a third party
ships one: a module with a TX_MANIFEST (threatexchange.extensions.manifest).

`word_set`: the set of words of a text, two texts matching when most of their words are shared,
searched by python-threatexchange's own linear-search index (this project has no index of its own
for it). Tests load it with HMAS_SIGNAL_EXTENSIONS=tests.signal_extension.
"""

from __future__ import annotations

import re
import typing as t

from threatexchange.content_type.content_base import ContentType
from threatexchange.content_type.text import TextContent
from threatexchange.extensions.manifest import ThreatExchangeExtensionManifest
from threatexchange.signal_type import signal_base
from threatexchange.signal_type.index import SignalSimilarityInfoWithIntDistance

SHARED_PERCENT = 75  # texts match when this share of their words (of the union) is shared


class WordSetSignal(signal_base.SimpleSignalType, signal_base.TextHasher):
    """The distinct lower-case words of a text, sorted, space-separated."""

    @classmethod
    def get_content_types(cls) -> t.List[t.Type[ContentType]]:
        return [TextContent]

    @classmethod
    def get_index_cls(cls) -> t.Type["WordSetIndex"]:
        return WordSetIndex

    @classmethod
    def hash_from_str(cls, text: str) -> str:
        return " ".join(sorted(set(re.findall(r"[a-z0-9]+", text.lower()))))

    @classmethod
    def validate_signal_str(cls, signal_str: str) -> str:
        words = signal_str.split(" ")
        if not signal_str or words != sorted(set(words)) or not all(re.fullmatch(r"[a-z0-9]+", w) for w in words):
            raise ValueError("a word set is distinct lower-case words, sorted, one space apart")
        return signal_str

    @classmethod
    def compare_hash(cls, hash1: str, hash2: str) -> signal_base.SignalComparisonResult:
        a, b = set(hash1.split()), set(hash2.split())
        different = 100 - 100 * len(a & b) // max(1, len(a | b))
        return signal_base.SignalComparisonResult(different <= 100 - SHARED_PERCENT,
                                                  SignalSimilarityInfoWithIntDistance(different))

    @staticmethod
    def get_examples() -> t.List[str]:
        return ["brown dog fox jumps lazy over quick the"]


class WordSetIndex(signal_base.TrivialLinearSearchHashIndex):
    _SIGNAL_TYPE = WordSetSignal


TX_MANIFEST = ThreatExchangeExtensionManifest(signal_types=(WordSetSignal,))
