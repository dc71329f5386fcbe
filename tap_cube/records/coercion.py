"""Fitting records to their schema without losing a value.

Cube's values do not always obey their field's type: an integer field may carry `"12"`,
`5.5` or `"abc"`, a date field `"12.05.2020"` or `"2020-02-30"`. Each declared property
gets a kind from its JSON schema, and each kind one converter (`CONVERTERS`) that turns a
value into the kind's form when that loses nothing, or says it cannot. A value that
cannot be converted becomes null in its column and is kept, as the server sent it, in
the catch-all object column `_cube_unparsed` (field -> original value); so are fields
the schema does not declare. The README's coercion table describes the same rules.
"""

from __future__ import annotations

import functools
import json
import typing as t

from tap_cube.api.json_text import JsonText
from tap_cube.errors import ApiError
from tap_cube.records.converters import (
    CONVERTERS,
    INT64_MAX,
    INT64_MIN,
    UNFIT,
    any_of,
    kind_of,
    to_date_time,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import tzinfo

#: The catch-all column: values that fit no declared column, keyed by field.
CATCH_ALL = "_cube_unparsed"
CATCH_ALL_PROPERTY: dict[str, t.Any] = {
    CATCH_ALL: {
        "type": ["object", "null"],
        "additionalProperties": True,
        "description": (
            "Values that fit no column, as the server sent them, keyed by field: values "
            "not of their field's type, and fields the schema does not declare"
        ),
    }
}

#: The catch-all's member for what it cannot hold as a JSON value: a JSON object, as
#: text, of each such field and its value as the server wrote it (NUL, lone surrogates,
#: NaN, Infinity, numbers beyond a float, deep nesting; see tap_cube/api/json_text.py).
#: `json.loads` in Python reads it back whole; a server field of this name goes there too.
JSON_TEXT = "_cube_json"

_UNSET = object()

#: ISO dates remembered as valid, at most.
_VALID_DATES_KEPT = 1 << 16


class Unfit(t.NamedTuple):
    """What a partition sent that fit no column of one field."""

    values: int
    example: object


class RecordCoercion:
    """Fits records to one schema's properties, in place; built once per stream.

    The common case costs a type check per field: values already of their kind are
    recognised inline, and only the rest go through their kind's converter.
    """

    def __init__(self, properties: dict[str, t.Any], zone: tzinfo | None = None) -> None:
        """`zone`: where date-times without an offset are local times (None: unfit)."""
        self.keeps_unfit = CATCH_ALL in properties
        fields = {name: prop for name, prop in properties.items() if name != CATCH_ALL}
        self.declared = frozenset(fields)
        self.converters: dict[str, Callable[[object], object]] = {}
        self.kinds: dict[str, str] = {}
        self.not_null: set[str] = set()
        by_kind: dict[str, list[str]] = {}
        others: list[tuple[str, Callable[[object], object]]] = []
        for name, prop in fields.items():
            kind, nullable = kind_of(prop)
            self.kinds[name] = kind
            if not nullable:
                self.not_null.add(name)
            if kind == "any":
                others.append((name, _any_storable))
                self.converters[name] = _any_storable
                continue
            convert = CONVERTERS.get(kind) or any_of(frozenset(kind.split(" or ")))
            if kind == "date-time" and zone is not None:
                convert = functools.partial(to_date_time, zone=zone)
            self.converters[name] = convert
            if kind == "text" or (kind in ("integer", "boolean", "date") and nullable):
                by_kind.setdefault(kind, []).append(name)
            else:
                others.append((name, convert))
        self._text = tuple(by_kind.get("text", ()))
        self._integer = tuple(by_kind.get("integer", ()))
        self._boolean = tuple(by_kind.get("boolean", ()))
        self._date = tuple(by_kind.get("date", ()))
        self._others = tuple(others)
        # ISO dates already found valid; real data repeats them a lot.
        self._valid_dates: set[str] = set()
        #: Per field, what did not fit since the last report().
        self.unfit: dict[str, Unfit] = {}
        #: Fields of `unfit` the tap writes itself, whose server values were set aside.
        self._owned_kept: set[str] = set()
        #: Fields of `unfit` kept as JSON text (see JSON_TEXT).
        self._as_text: set[str] = set()
        #: Fields of `unfit` whose column holds something else than null, and what.
        self._columns: dict[str, str] = {}

    def __call__(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """The record, fitted: every value of its column's kind, or null and kept aside."""
        if not self.declared.issuperset(record):
            self._set_aside_undeclared(record)
        get = record.get
        for name in self._text:
            value = get(name)
            if type(value) is not str and value is not None:
                self._fit(record, name, value)
        # Nullable typed fields: values of the type pass, "" (common) becomes null inline.
        for name in self._integer:
            value = get(name)
            if value is None or (type(value) is int and INT64_MIN <= value <= INT64_MAX):
                continue
            if value == "":
                record[name] = None
            else:
                self._fit(record, name, value)
        for name in self._boolean:
            value = get(name)
            if value is None or type(value) is bool:
                continue
            if value == "":
                record[name] = None
            else:
                self._fit(record, name, value)
        valid_dates = self._valid_dates
        for name in self._date:
            value = get(name)
            if value is None or (type(value) is str and value in valid_dates):
                continue
            if value == "":
                record[name] = None
            else:
                self._fit(record, name, value)
        for name, convert in self._others:
            value = get(name)
            if value is not None and convert(value) is not value:
                self._fit(record, name, value)
        return record

    def _fit(self, record: dict[str, t.Any], name: str, value: object) -> None:
        """The slow path: convert, or null the column and keep the value aside."""
        kind = self.kinds[name]
        converted = self.converters[name](value)
        if converted is UNFIT:
            if kind != "text" and type(value) is str and not value.strip():
                converted = None  # "" (or only blanks) says no more than null
            else:
                self.keep_aside(record, name, value)
                converted = None
        elif kind == "date" and converted == value:
            if len(self._valid_dates) >= _VALID_DATES_KEPT:
                self._valid_dates.clear()
            self._valid_dates.add(t.cast("str", value))
        if converted is None and name in self.not_null:
            msg = (
                f"the server sent {name} = {shorten(value)}, which is not {kind}; the "
                "record cannot be keyed, so the run stops. Report it to Headshed."
            )
            raise ApiError(msg)
        record[name] = converted

    def _set_aside_undeclared(self, record: dict[str, t.Any]) -> None:
        """Move fields the schema does not declare into the catch-all.

        The catch-all in the record is the tap's own: a field the server itself names
        like it was set aside before (`set_aside_owned`), as a field of it.
        """
        undeclared = [
            (name, record.pop(name))
            for name in list(record)
            if name not in self.declared and name != CATCH_ALL
        ]
        for name, value in undeclared:
            if value is not None:
                self.keep_aside(record, name, value)

    def set_aside_owned(
        self, record: dict[str, t.Any], owned: t.Iterable[str], partition: t.Mapping[str, t.Any]
    ) -> None:
        """Keep the server's values of fields the tap writes itself in the catch-all.

        The first step for a record from the server, before the tap adds its own fields
        (`owned`): the partition's keys, the catch-all, and what a stream derives. A
        partition key the server sends with the partition's own value says nothing new.
        """
        # The names the server sent, before the catch-all this adds is among them.
        for name in [name for name in owned if name in record]:
            value = record.pop(name)
            same = partition.get(name, _UNSET)
            if value is None or (type(value) is type(same) and value == same):
                continue
            self._owned_kept.add(name)
            self.keep_aside(record, name, value)

    def keep_aside(
        self, record: dict[str, t.Any], name: str, value: object, column: str = "null"
    ) -> None:
        """Keep a field's value as sent in the catch-all, and count it for report().

        `column` says what its column holds instead, for report().
        """
        if column != "null":
            self._columns[name] = column
        if self.keeps_unfit:
            kept = record.get(CATCH_ALL)
            if kept is None:
                kept = record[CATCH_ALL] = {}
            if type(value) is JsonText or type(name) is JsonText or name == JSON_TEXT:
                self._as_text.add(name)
                add_json_text(kept, name, value)
            else:
                kept[name] = value
        seen = self.unfit.get(name)
        self.unfit[name] = Unfit(seen.values + 1, seen.example) if seen else Unfit(1, value)

    def report(self, discovery_declares: Callable[[str], bool]) -> list[str]:
        """A line per field that needed the catch-all since the last report; counts anew.

        `discovery_declares(field)` says whether discovery would give a field that is not
        in the schema a column: only then is running it again worth advising.
        """
        unfit, self.unfit = self.unfit, {}
        owned, self._owned_kept = self._owned_kept, set()
        as_text, self._as_text = self._as_text, set()
        columns, self._columns = self._columns, {}
        lines = []
        for name, seen in unfit.items():
            values = f"{seen.values} value{'' if seen.values == 1 else 's'}"
            if name in as_text:
                what = (
                    f"{values} of {name} no column or database takes as sent (NUL, a lone "
                    "surrogate, NaN, Infinity, a number beyond a float, deep nesting): kept "
                    f"as JSON text in {CATCH_ALL}.{JSON_TEXT}"
                )
                advice = ""
            elif name in owned:
                kept = f"kept as sent in {CATCH_ALL}" if self.keeps_unfit else "left out"
                what = f"{values} of {name}, a field the tap writes itself: the tap's in the "
                what += f"column, the server's {kept}"
                advice = ""
            elif name in self.declared:
                verb = "is" if seen.values == 1 else "are"
                column = columns.get(name, "null")
                what = f"{values} of {name} {verb} not {self.kinds[name]}: {column} in the column"
                if self.keeps_unfit:
                    what += f", kept as sent in {CATCH_ALL}"
                    advice = ""
                else:
                    advice = f"; run discovery again to keep such values in {CATCH_ALL}"
            else:
                what = f"{values} of {name}, a field not in the schema"
                if self.keeps_unfit:
                    what += f", kept as sent in {CATCH_ALL}"
                    advice = (
                        "; run discovery again to give it a column"
                        if discovery_declares(name)
                        else ""
                    )
                else:
                    what += ", left out"
                    advice = f"; run discovery again to keep them in {CATCH_ALL}"
            lines.append(f"{what} (e.g. {shorten(seen.example)}){advice}")
        return lines


def _any_storable(value: object) -> object:
    """A property of no type takes any value a column can hold."""
    return UNFIT if type(value) is JsonText else value


def add_json_text(kept: dict[str, t.Any], name: str, value: object) -> None:
    """Add a field to the JSON text of the catch-all's JSON_TEXT member (see there)."""
    member = (
        f"{name if type(name) is JsonText else json.dumps(name)}: "
        f"{value if type(value) is JsonText else json.dumps(value)}"
    )
    text = kept.get(JSON_TEXT)
    kept[JSON_TEXT] = f"{{{member}}}" if text is None else f"{text[:-1]}, {member}}}"


def shorten(value: object, limit: int = 60) -> str:
    """A value for a log line: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
