"""The converters: one per kind of property, each turning a value into its kind's form.

A converter returns the value converted when that loses nothing, or UNFIT when it
cannot (tap_cube/records/coercion.py then keeps the value in the catch-all column). The README's
coercion table describes the same rules.
"""

from __future__ import annotations

import re
import typing as t
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation

if t.TYPE_CHECKING:
    from collections.abc import Callable

#: Floats hold every integer up to this exactly.
_EXACT_FLOAT_INT = 2**53

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
# A date-time as Cube writes it: RFC 3339, or with a space for the T, without seconds,
# with an offset without a colon ("+0100", "+01"), or without an offset (local time).
_DATE_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2})(:[0-9]{2}(?:\.[0-9]+)?)?"
    r"(?:([Zz])|([-+][0-9]{2})(?::?([0-9]{2}))?)?",
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


def to_date_time(value: object, zone: tzinfo | None = None) -> object:
    """An RFC 3339 date-time, its digits as sent: "2020-02-12T10:27:06.477+0100" becomes
    "2020-02-12T10:27:06.477+01:00", "2018-11-27 09:24" (no offset: a local time of
    `zone`) "2018-11-27T09:24:00+01:00".

    A local time the clock skips (spring) gets the offset before the change, one it
    passes twice (autumn) the first of its instants: zoneinfo's fold=0, the same answer
    on every run. Without `zone` a time without an offset is UNFIT: its instant unknown.
    So is a date-time whose offset moves it past year 1 or 9999 ("0001-01-01T00:30+0100"
    is 0000-12-31T23:30Z): no instant a datetime holds, nor one a bookmark can be.
    """
    if type(value) is not str:
        return UNFIT
    match = _DATE_TIME.fullmatch(value.strip())
    if match is None:
        return UNFIT
    day, minute, seconds, utc, hours, minutes = match.groups()
    wall = f"{day}T{minute}{seconds or ':00'}"
    try:
        # fromisoformat takes at most 6 fractional digits; the text keeps them all.
        local = datetime.fromisoformat(wall[:26])
    except ValueError:  # 25:00, 2020-02-30
        return UNFIT
    if utc:
        offset = "Z"
    elif hours:
        offset = f"{hours}:{minutes or '00'}"
        if int(hours[1:]) > 23 or int(minutes or 0) > 59:
            return UNFIT
    elif zone is not None:
        offset = _offset_text(local.replace(tzinfo=zone).utcoffset())
    else:
        return UNFIT
    text = wall + offset
    if day[:4] in _EDGE_YEARS and not _is_instant(text):
        return UNFIT
    return value if text == value else text  # the same object when it already fits


#: Only in these years can an offset carry a date-time past the instants a datetime
#: holds (0001-01-01T00:00Z to 9999-12-31T23:59:59.999999Z).
_EDGE_YEARS = ("0001", "9999")


def _is_instant(text: str) -> bool:
    """Whether a date-time as to_date_time writes it names an instant a datetime holds:
    one that can be compared, kept as a bookmark and loaded by any target."""
    try:
        instant(text).astimezone(UTC)
    except OverflowError:
        return False
    return True


def nearest_instant(value: object) -> object:
    """For a date-time past the first or last instant a datetime holds (see
    to_date_time), that instant; UNFIT for anything else."""
    if type(value) is not str:
        return UNFIT
    match = _DATE_TIME.fullmatch(value.strip())
    if match is None or match[1][:4] not in _EDGE_YEARS:
        return UNFIT
    # Its digits must make a date-time, only its instant be out of reach.
    if to_date_time(f"{match[1]}T{match[2]}{match[3] or ''}Z") is UNFIT:
        return UNFIT
    return _FIRST_INSTANT if match[1][:4] == "0001" else _LAST_INSTANT


_FIRST_INSTANT = "0001-01-01T00:00:00+00:00"
_LAST_INSTANT = "9999-12-31T23:59:59.999999+00:00"


def _offset_text(offset: timedelta | None) -> str:
    """+HH:MM of a UTC offset (zoneinfo's are whole minutes)."""
    minutes = int((offset or timedelta()).total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def instant(value: str) -> datetime:
    """The aware datetime of an RFC 3339 date-time as to_date_time writes them."""
    wall, offset = value[:-6], value[-6:]
    if value.endswith(("Z", "z")):
        wall, offset = value[:-1], "+00:00"
    head, dot, fraction = wall.partition(".")
    return datetime.fromisoformat(head + dot + fraction[:6] + offset)


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


def any_of(types: frozenset[str]) -> Callable[[object], object]:
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


def parse_bookmark(value: object) -> datetime | None:
    """A bookmark's timestamp in UTC (taken as UTC when it names no offset); None for
    anything else.

    One that an offset moves past the first or last instant a datetime holds
    ("0001-01-01T00:00:00+05:00") is that instant: a bookmark is a point to read on
    from, and the edge is as far as any can go.
    """
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        edge = datetime.min if parsed.year == datetime.min.year else datetime.max
        return edge.replace(tzinfo=UTC)
