"""A small strict validator for JSON data (family records, findings files).

A schema is a JSON type (``str``, ``int``, ``float``, ``bool``) or one of ``Obj`` (known keys, some
required), ``ListOf``, ``MapOf``, ``Choice`` (one of a set, lazily computed), ``Either`` and ``Tagged``
(a discriminated union). ``validate`` raises ``ValueError("<source>: <key path>: ... (did you mean 'x'?)")``
on the first problem, so a typo in a record can never silently become an ignored key.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Obj:
    """A JSON object with exactly these keys (``fields``: key -> schema); ``required`` must be present."""

    fields: dict[str, Any]
    required: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class MapOf:
    """An object with free keys (validated by ``key``); ``sized``: each list value is as long as its key says."""

    value: Any
    key: Choice | None = None
    sized: bool = False


@dataclass(frozen=True)
class Choice:
    """A string out of ``names`` (a tuple, or a function returning one: data known only at load time)."""

    names: tuple[str, ...] | Callable[[], tuple[str, ...]]
    what: str

    def options(self) -> tuple[str, ...]:
        return self.names() if callable(self.names) else self.names


@dataclass(frozen=True)
class Either:
    """The first option whose JSON type matches the value (e.g. a list, or a mapping of lists)."""

    first: Any
    second: Any


@dataclass(frozen=True)
class Tagged:
    """An object whose ``tag`` key picks the schema of the other keys (``kinds``: tag value -> :class:`Obj`)."""

    tag: str
    kinds: dict[str, Obj]


def closest(name: str, options: Sequence[str]) -> str | None:
    hits = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return hits[0] if hits else None


def _hint(name: str, options: Sequence[str]) -> str:
    near = closest(name, options)
    shown = ", ".join(list(options)[:16]) + (", ..." if len(options) > 16 else "")
    return f" (did you mean {near!r}?)" if near else f" (valid: {shown})"


def _json_type(schema: Any) -> tuple[type, ...]:
    if isinstance(schema, (Obj, MapOf, Tagged)):
        return (dict,)
    if isinstance(schema, ListOf):
        return (list,)
    if isinstance(schema, Choice):
        return (str,)
    if isinstance(schema, Either):
        return _json_type(schema.first) + _json_type(schema.second)
    return (schema,)


def validate(value: Any, schema: Any, source: str, path: str = "") -> None:
    """Raise ``ValueError("<source>: <key path>: <problem> (did you mean ...)")`` unless ``value`` fits."""
    where = path or "top level"
    if not isinstance(value, _json_type(schema)) or (isinstance(value, bool) and schema is int):
        names = "/".join(t.__name__ for t in _json_type(schema))
        raise ValueError(f"{source}: {where}: expected {names}, got {type(value).__name__} {json.dumps(value)[:60]}")
    if isinstance(schema, Choice):
        if value not in schema.options():
            raise ValueError(f"{source}: {where}: unknown {schema.what} {value!r}{_hint(value, schema.options())}")
    elif isinstance(schema, ListOf):
        for i, item in enumerate(value):
            validate(item, schema.item, source, f"{path}[{i}]")
    elif isinstance(schema, MapOf):
        for key, item in value.items():
            if schema.key is not None:
                validate(key, schema.key, source, f"{path} key")
            validate(item, schema.value, source, f"{path}.{key}")
            if schema.sized and len(item) != int(key):
                raise ValueError(f"{source}: {path}.{key}: {len(item)} entries, but the key says {key}")
    elif isinstance(schema, Either):
        option = schema.first if isinstance(value, _json_type(schema.first)) else schema.second
        validate(value, option, source, path)
    elif isinstance(schema, Tagged):
        kind = value.get(schema.tag)
        if kind is None:
            raise ValueError(
                f"{source}: {where}: missing required key {schema.tag!r} (one of {', '.join(schema.kinds)})"
            )
        validate(
            kind,
            Choice(tuple(schema.kinds), f"{path.rpartition('.')[2] or schema.tag} {schema.tag}"),
            source,
            f"{path}.{schema.tag}",
        )
        validate({k: v for k, v in value.items() if k != schema.tag}, schema.kinds[kind], source, path)
    elif isinstance(schema, Obj):
        for key in value:
            if key not in schema.fields:
                raise ValueError(
                    f"{source}: unknown key {(path + '.' if path else '') + key!r}{_hint(key, tuple(schema.fields))}"
                )
        missing = sorted(schema.required - set(value))
        if missing:
            raise ValueError(f"{source}: {where}: missing required key(s) {missing}")
        for key, item in value.items():
            validate(item, schema.fields[key], source, f"{path}.{key}" if path else key)
