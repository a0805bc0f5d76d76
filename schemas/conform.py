"""Checking decoded JSON against an Avro schema, compiled once per schema into nested closures.

Every record in and out of the pipeline passes through here, so the happy path builds nothing
but the output dict: no path strings, no error text. A mismatch raises `Mismatch`, which
collects the path to the bad value while it unwinds; the codec turns it into a DecodeError that
names the field ("metadata.a: 1 is not string").
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any, Callable

Conformer = Callable[[Any], Any]
_INT_RANGES = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class Mismatch(Exception):
    """A value that does not fit its schema: what is wrong, and where (filled in on the way up)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []  # innermost first

    def where(self) -> str:
        out = ""
        for part in reversed(self.path):
            out += part if part.startswith("[") or not out else f".{part}"
        return out or "value"

    def __str__(self) -> str:
        return f"{self.where()}: {self.problem}"


def describe(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, bytes) else f"{len(value)} bytes"
    return text if len(text) <= 60 else text[:57] + "..."


def compile_schema(schema: Any, named: dict[str, Any]) -> Conformer:
    """A function that checks a value against `schema`, fills record defaults and returns the result."""
    compiled: dict[str, Conformer] = {}

    def build(node: Any) -> Conformer:
        if isinstance(node, str) and node in named:
            if node not in compiled:
                compiled[node] = lambda v: target(v)  # placeholder for recursive schemas
                target = build(named[node])
                compiled[node] = target
            return compiled[node]
        if isinstance(node, list):
            return _union([build(branch) for branch in node], node)
        if isinstance(node, str):
            return _primitive(node)
        kind = node["type"]
        if kind == "record":
            return _record(node, build)
        if kind == "enum":
            return _enum(node["symbols"])
        if kind == "array":
            return _array(build(node["items"]))
        if kind == "map":
            return _map(build(node["values"]))
        return build(kind)  # {"type": "string"} and the like

    return build(schema)


def _label(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return " or ".join(_label(n) for n in node)
    return node.get("name") or node["type"]


def _primitive(name: str) -> Conformer:
    if name == "string":
        kinds: tuple[type, ...] = (str,)
    elif name == "bytes":
        kinds = (bytes,)
    elif name == "null":
        kinds = (type(None),)
    elif name == "boolean":
        kinds = (bool,)
    elif name in ("int", "long", "float", "double"):
        kinds = (int,) if name in _INT_RANGES else (int, float)
    else:
        raise ValueError(f"unknown Avro type {name!r}")
    lo, hi = _INT_RANGES.get(name, (None, None))
    boolean = name == "boolean"

    def conform(value: Any) -> Any:
        if not isinstance(value, kinds) or (isinstance(value, bool) and not boolean):
            raise Mismatch(f"{describe(value)} is not {name}")
        if lo is not None and not lo <= value <= hi:
            raise Mismatch(f"{value} is out of range for {name}")
        if isinstance(value, float) and not math.isfinite(value):  # JSON has no way to write it on
            raise Mismatch(f"{value} is not a finite {name}")
        return value

    return conform


def _union(branches: list[Conformer], node: list[Any]) -> Conformer:
    label = _label(node)
    if len(node) == 2 and "null" in node:  # the common optional field: no try/except when None
        other = branches[1] if node[0] == "null" else branches[0]

        def optional(value: Any) -> Any:
            if value is None:
                return None
            try:
                return other(value)
            except Mismatch:
                raise Mismatch(f"{describe(value)} is not {label}") from None

        return optional

    def union(value: Any) -> Any:
        for branch in branches:
            try:
                return branch(value)
            except Mismatch:
                continue
        raise Mismatch(f"{describe(value)} is not {label}")

    return union


def _record(node: dict[str, Any], build: Callable[[Any], Conformer]) -> Conformer:
    fields = []
    for f in node["fields"]:
        has_default = "default" in f
        default = f.get("default")
        fields.append((f["name"], build(f["type"]), has_default, default, isinstance(default, (dict, list))))

    def record(value: Any) -> Any:
        if not isinstance(value, dict):
            raise Mismatch(f"{describe(value)} is not an object")
        out = {}
        for name, conform, has_default, default, mutable in fields:
            if name in value:
                try:
                    out[name] = conform(value[name])
                except Mismatch as exc:
                    exc.path.append(name)
                    raise
            elif has_default:
                out[name] = copy.deepcopy(default) if mutable else default
            else:
                exc = Mismatch("missing")
                exc.path.append(name)
                raise exc
        return out

    return record


def _enum(symbols: list[str]) -> Conformer:
    allowed = frozenset(symbols)
    listed = ", ".join(symbols)

    def enum(value: Any) -> Any:
        if not isinstance(value, str) or value not in allowed:
            raise Mismatch(f"{describe(value)} is not one of {listed}")
        return value

    return enum


def _array(items: Conformer) -> Conformer:
    def array(value: Any) -> Any:
        if not isinstance(value, list):
            raise Mismatch(f"{describe(value)} is not an array")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(items(v))
            except Mismatch as exc:
                exc.path.append(f"[{i}]")
                raise
        return out

    return array


def _map(values: Conformer) -> Conformer:
    def mapping(value: Any) -> Any:
        if not isinstance(value, dict):
            raise Mismatch(f"{describe(value)} is not an object")
        out = {}
        for k, v in value.items():
            try:
                out[str(k)] = values(v)
            except Mismatch as exc:
                exc.path.append(str(k))
                raise
        return out

    return mapping


PlainCheck = Callable[[Any], bool]
_PLAIN_TYPES = {"string": str, "boolean": bool, "int": int, "long": int}
_STR_ONLY = {str}


def plain_record_check(schema: Any) -> PlainCheck | None:
    """For a record of primitive fields (and maps of strings): a check that a dict already is its
    conformed form (every field present with its exact type, no other key; a map's keys are not
    looked at: JSON's are strings), so the bulk readers of a topic skip building a copy and bulk
    writers encode it as it is; None for a schema with other field types.

    A value the check refuses is not necessarily wrong: the full conformer decides (defaults,
    extra keys, the reason for an error)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    names: list[str] = []
    kinds: list[type] = []
    bounded: list[tuple[int, int, int]] = []  # (position, low, high) of int and long fields
    maps: list[int] = []  # positions of maps of strings
    for f in schema["fields"]:
        kind = f["type"]["type"] if isinstance(f["type"], dict) and set(f["type"]) == {"type"} else f["type"]
        if isinstance(kind, str) and kind in _PLAIN_TYPES:
            kinds.append(_PLAIN_TYPES[kind])
            if kind in _INT_RANGES:
                bounded.append((len(names), *_INT_RANGES[kind]))
        elif isinstance(kind, dict) and kind.get("type") == "map" and kind.get("values") == "string":
            kinds.append(dict)
            maps.append(len(names))
        else:
            return None
        names.append(f["name"])
    return _compiled_check(names, kinds, bounded, maps)


def _only_strings(mapping: dict) -> bool:
    for value in mapping.values():
        if type(value) is not str:
            return False
    return True


def _compiled_check(names: list[str], kinds: list[type], bounded: list[tuple[int, int, int]],
                    maps: list[int]) -> PlainCheck:
    """The check as one generated function, each field's test written out: it runs for every
    record a bulk reader or writer handles (millions), where a loop over the fields cost about
    twice as much."""
    kinds_by_name = {kind.__name__: kind for kind in kinds}
    tests = [f"type(f{i}) is {kind.__name__}" for i, kind in enumerate(kinds)]
    tests += [f"{low} <= f{at} <= {high}" for at, low, high in bounded]
    tests += [f"(not f{at} or _only_strings(f{at}))" for at in maps]
    fields = ", ".join(f"f{i}" for i in range(len(names))) + ("," if len(names) == 1 else "")
    source = (
        "def plain(value):\n"
        f"    if type(value) is not dict or len(value) != {len(names)}:\n"
        "        return False\n"
        "    try:\n"
        f"        {fields} = {', '.join(f'value[{name!r}]' for name in names)}{',' if len(names) == 1 else ''}\n"
        "    except KeyError:\n"
        "        return False\n"
        f"    return {' and '.join(tests) or 'True'}\n"
    )
    scope: dict[str, Any] = {"_only_strings": _only_strings, **kinds_by_name}
    exec(source, scope)  # noqa: S102 - built from a schema's field names and types, quoted by repr
    return scope["plain"]
