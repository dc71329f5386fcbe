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

import re
import typing as t
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from tap_cube.errors import ApiError

if t.TYPE_CHECKING:
    from collections.abc import Callable

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

#: Floats hold every integer up to this exactly.
_EXACT_FLOAT_INT = 2**53

#: ISO dates remembered as valid, at most.
_VALID_DATES_KEPT = 1 << 16

#: PostgreSQL `bigint`, the widest integer column targets create.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class _Unfit:
    """The converters' answer for a value their kind cannot hold without loss."""

    def __repr__(self) -> str:
        return "UNFIT"


UNFIT: t.Final = _Unfit()

_INTEGER_TEXT = re.compile(r"\s*([-+]?(?:0|[1-9][0-9]*))\s*", re.ASCII)
_NUMBER_TEXT = re.compile(
    r"\s*([-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\s*", re.ASCII
)
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", re.ASCII)
_NORWEGIAN_DATE = re.compile(r"([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})", re.ASCII)
# RFC 3339, as JSON Schema's "date-time" format requires; a space may stand for the T.
_DATE_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]"
    r"([0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[-+][0-9]{2}:[0-9]{2}))",
    re.ASCII,
)
_BOOLEAN_TEXT = {
    "true": True,
    "false": False,
    "ja": True,
    "nei": False,
    "yes": True,
    "no": False,
    "1": True,
    "0": False,
}


def to_integer(value: object) -> object:
    """An int within 64 bits: ints, integral floats (7.0) up to 2**53, integer text (" 7 ").

    Text with leading zeros ("0150", a postal code) is no integer: they would be lost.
    """
    kind = type(value)
    if kind is int:
        return value if INT64_MIN <= t.cast("int", value) <= INT64_MAX else UNFIT
    if kind is float:
        number = t.cast("float", value)
        # Beyond 2**53 a float's digits as written (2.172448433884137e+16) are not the
        # integer it holds (21724484338841368): converting would change the number.
        if number.is_integer() and -_EXACT_FLOAT_INT <= number <= _EXACT_FLOAT_INT:
            return int(number)
        return UNFIT
    if kind is str:
        match = _INTEGER_TEXT.fullmatch(t.cast("str", value))
        if match is not None and len(match[1]) <= 20:  # 64 bits and a sign
            return to_integer(int(match[1]))
    return UNFIT


def to_number(value: object) -> object:
    """A finite int or float: numbers, and numeric text a float holds exactly as written."""
    kind = type(value)
    if kind is int:
        return value
    if kind is float:
        number = t.cast("float", value)
        return number if number - number == 0 else UNFIT  # not inf, not nan
    if kind is str:
        match = _NUMBER_TEXT.fullmatch(t.cast("str", value))
        if match is None:
            return UNFIT
        text = match[1]
        if _INTEGER_TEXT.fullmatch(text):
            return int(text)
        number = float(text)
        try:
            exact = number - number == 0 and Decimal(repr(number)) == Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            exact = False
        return number if exact else UNFIT
    return UNFIT


def to_boolean(value: object) -> object:
    """true/false, 1/0, and "true"/"false", "ja"/"nei", "yes"/"no", "1"/"0" in any case."""
    kind = type(value)
    if kind is bool:
        return value
    if kind is int and value in (0, 1):
        return value == 1
    if kind is str:
        return _BOOLEAN_TEXT.get(t.cast("str", value).strip().lower(), UNFIT)
    return UNFIT


def to_date(value: object) -> object:
    """An ISO date (YYYY-MM-DD): a real ISO date, or a Norwegian one (dd.mm.yyyy)."""
    if type(value) is not str:
        return UNFIT
    text = value.strip()
    match = _ISO_DATE.fullmatch(text)
    if match is not None:
        year, month, day = match.groups()
    else:
        match = _NORWEGIAN_DATE.fullmatch(text)
        if match is None:
            return UNFIT
        day, month, year = match.groups()
    try:
        iso = date(int(year), int(month), int(day)).isoformat()
    except ValueError:  # 2020-02-30, year 0
        return UNFIT
    return value if iso == value else iso  # the same object when it already fits


def to_date_time(value: object) -> object:
    """An RFC 3339 timestamp with its offset; a space between date and time becomes T."""
    if type(value) is not str:
        return UNFIT
    match = _DATE_TIME.fullmatch(value.strip())
    if match is None:
        return UNFIT
    text = f"{match[1]}T{match[2]}"
    try:
        datetime.fromisoformat(text.upper())
    except ValueError:  # 25:00, 2020-02-30, +24:00
        return UNFIT
    return value if text == value else text  # the same object when it already fits


def to_text(value: object) -> object:
    """Text; numbers and booleans become their JSON text ("7", "5.5", "true")."""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        try:
            return str(value)
        except ValueError:  # an int too long for str()
            return UNFIT
    return UNFIT


def to_object(value: object) -> object:
    return value if type(value) is dict else UNFIT


def to_array(value: object) -> object:
    return value if type(value) is list else UNFIT


#: How each kind of property converts a value; see the README's coercion table.
CONVERTERS: dict[str, Callable[[object], object]] = {
    "integer": to_integer,
    "number": to_number,
    "boolean": to_boolean,
    "date": to_date,
    "date-time": to_date_time,
    "text": to_text,
    "object": to_object,
    "array": to_array,
}

_JSON_TYPES: dict[type, frozenset[str]] = {
    str: frozenset({"string"}),
    bool: frozenset({"boolean"}),
    int: frozenset({"integer", "number"}),
    float: frozenset({"number"}),
    dict: frozenset({"object"}),
    list: frozenset({"array"}),
}


def _any_of(types: frozenset[str]) -> Callable[[object], object]:
    """A property of several types (a user's catalog): values of one of them fit."""

    def convert(value: object) -> object:
        kinds = _JSON_TYPES.get(type(value), frozenset())
        if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
            kinds = kinds - {"integer"}
        return value if kinds & types else UNFIT

    return convert


def kind_of(prop: dict[str, t.Any]) -> tuple[str, bool]:
    """The kind of a property and whether it may be null.

    The kind is a key of CONVERTERS, "any" (no type given), or its types joined by
    " or " (a user's catalog may declare several).
    """
    types = prop.get("type")
    if types is None:
        return "any", True
    types = [types] if isinstance(types, str) else list(types)
    nullable = "null" in types
    kinds = {kind for kind in types if kind != "null"}
    if kinds == {"integer"}:
        return "integer", nullable
    if kinds in ({"number"}, {"integer", "number"}):
        return "number", nullable
    if kinds == {"boolean"}:
        return "boolean", nullable
    if kinds == {"string"}:
        fmt = prop.get("format")
        return (fmt if fmt in ("date", "date-time") else "text"), nullable
    if kinds in ({"object"}, {"array"}):
        return kinds.pop(), nullable
    return " or ".join(sorted(kinds)) or "null", nullable


class Unfit(t.NamedTuple):
    """What a partition sent that fit no column of one field."""

    values: int
    example: object


class RecordCoercion:
    """Fits records to one schema's properties, in place; built once per stream.

    The common case costs a type check per field: values already of their kind are
    recognised inline, and only the rest go through their kind's converter.
    """

    def __init__(self, properties: dict[str, t.Any]) -> None:
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
                continue
            convert = CONVERTERS.get(kind) or _any_of(frozenset(kind.split(" or ")))
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
                self._keep_aside(record, name, value)
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

        Runs first, so that a field the server itself names like the catch-all is kept
        as a field of it, not mistaken for it.
        """
        undeclared = [
            (name, record.pop(name)) for name in list(record) if name not in self.declared
        ]
        for name, value in undeclared:
            if value is not None:
                self._keep_aside(record, name, value)

    def _keep_aside(self, record: dict[str, t.Any], name: str, value: object) -> None:
        if self.keeps_unfit:
            kept = record.get(CATCH_ALL)
            if kept is None:
                record[CATCH_ALL] = {name: value}
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
        lines = []
        for name, seen in unfit.items():
            values = f"{seen.values} value{'' if seen.values == 1 else 's'}"
            if name in self.declared:
                verb = "is" if seen.values == 1 else "are"
                what = f"{values} of {name} {verb} not {self.kinds[name]}: null in the column"
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


def shorten(value: object, limit: int = 60) -> str:
    """A value for a log line: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
