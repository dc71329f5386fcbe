"""What a value looks like, never what it is: format classes and same-format stand-ins.

`tap-cube --probe` (tap_cube/probe.py) describes a real server's answers by the JSON type
and format class of each field ("date-time, offset without colon", "integer as string")
and writes fixtures whose every value is replaced by a stand-in of the same JSON type,
format class and length, so that a user can share what their server sends without
sharing their data.
"""

from __future__ import annotations

import re
import secrets
import string
import typing as t
from datetime import date, datetime, timedelta

if t.TYPE_CHECKING:
    import random

_DATE = r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
_TIME = r"(?P<time>[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)"
_DATE_TIME = re.compile(_DATE + r"(?P<sep>[Tt ])" + _TIME + r"(?P<offset>.*)", re.ASCII)
_OFFSETS = (
    ("date-time, offset with colon", re.compile(r"[-+][0-9]{2}:[0-9]{2}", re.ASCII)),
    ("date-time, offset without colon", re.compile(r"[-+][0-9]{4}", re.ASCII)),
    ("date-time, hour offset", re.compile(r"[-+][0-9]{2}", re.ASCII)),
    ("date-time, UTC (Z)", re.compile(r"[Zz]", re.ASCII)),
)
_ISO_DATE = re.compile(_DATE, re.ASCII)
_NORWEGIAN_DATE = re.compile(r"([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})", re.ASCII)
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)", re.ASCII)
_LEADING_ZERO = re.compile(r"0[0-9]+", re.ASCII)
_PLUS_DIGITS = re.compile(r"\+[0-9]+", re.ASCII)  # a phone number with its country code
_DECIMAL = re.compile(r"-?[0-9]+\.[0-9]+", re.ASCII)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_BOOLEAN_WORDS = (("true", "false"), ("ja", "nei"), ("yes", "no"))
_CRM_TYPES = ("B2C", "B2B")
#: Where dates' stand-ins are drawn from.
_FIRST_DAY = date(1900, 1, 1)
_DAYS = (date(2099, 12, 31) - _FIRST_DAY).days + 1

#: Every format class a value may have, by JSON type.
STRING_CLASSES = (
    "empty string",
    "blank",
    *(name for name, _ in _OFFSETS),
    "date-time naive",
    "local minute",
    "date",
    "date dd.mm.yyyy",
    "integer as string",
    "digits with leading zero",
    "digits with plus sign",
    "decimal as string",
    "boolean as string",
    "crm type",
    "e-mail",
    "url",
    "text",
)


def json_type(value: object) -> str:
    """The JSON type of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def format_class(value: object) -> str:
    """How a value is written: a string's format class, or its JSON type for the rest."""
    if not isinstance(value, str):
        return json_type(value)
    if value == "":
        return "empty string"
    if not value.strip():
        return "blank"
    if (stamp := _DATE_TIME.fullmatch(value)) is not None:
        if _valid_date_time(stamp):
            offset = stamp["offset"]
            if not offset:
                return "date-time naive" if stamp["time"].count(":") == 2 else "local minute"
            for name, pattern in _OFFSETS:
                if pattern.fullmatch(offset) and stamp["time"].count(":") == 2:
                    return name
        return "text"
    if _ISO_DATE.fullmatch(value):
        return "date" if _valid_date(value) else "text"
    if (dotted := _NORWEGIAN_DATE.fullmatch(value)) is not None:
        day, month, year = (int(part) for part in dotted.groups())
        return "date dd.mm.yyyy" if _real_date(year, month, day) else "text"
    if _INTEGER.fullmatch(value):
        return "integer as string"
    if _LEADING_ZERO.fullmatch(value):
        return "digits with leading zero"
    if _PLUS_DIGITS.fullmatch(value):
        return "digits with plus sign"
    if _DECIMAL.fullmatch(value):
        return "decimal as string"
    if any(value.lower() in pair for pair in _BOOLEAN_WORDS):
        return "boolean as string"
    if value in _CRM_TYPES:
        return "crm type"
    if _EMAIL.fullmatch(value):
        return "e-mail"
    if _URL.fullmatch(value):
        return "url"
    return "text"


#: The ways of writing a number as plain digits, which one field mixes (a phone number
#: with or without its country code or a leading zero).
DIGIT_CLASSES = ("integer as string", "digits with leading zero", "digits with plus sign")


def format_kind(value: object) -> str:
    """A value's format class, with the classes of `DIGIT_CLASSES` as one kind, "digits":
    how a server writes a field, where the class also tells which digits a value has."""
    cls = format_class(value)
    return "digits" if cls in DIGIT_CLASSES else cls


def length_class(value: object) -> str:
    """A string's length, in the few sizes that matter to a column: 0, 1-10, 11-50, ..."""
    if not isinstance(value, str):
        return "-"
    size = len(value)
    for limit in (0, 10, 50, 255):
        if size <= limit:
            return "0" if limit == 0 else f"<={limit}"
    return ">255"


def _valid_date(text: str) -> bool:
    year, month, day = (int(part) for part in text.split("-"))
    return _real_date(year, month, day)


def _real_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _valid_date_time(stamp: re.Match[str]) -> bool:
    if not _valid_date(stamp["date"]):
        return False
    hour, minute, *rest = stamp["time"].split(":")
    second = int(rest[0].split(".")[0]) if rest else 0
    return int(hour) < 24 and int(minute) < 60 and second < 60


class StandIns:
    """Stand-ins for the values of one body: same type, format class and length.

    Every stand-in comes from a secret of the run (the system's randomness): no constant
    of this code relates a stand-in to its value, and two runs give different ones. The
    same value always gets the same stand-in, and different values different ones (as
    far as the class has room), so ids that repeat across rows still match and keys stay
    unique. Dates (a birth date) each get a stand-in of their own: knowing one says
    nothing of the others. Date-times and local minutes all move by the run's one secret
    shift (whole days, and whole minutes), so that their order, and a row's local minute
    beside its timestamp, agree as they did: the order of calls is what a fixture of
    call outcomes needs to reproduce. Values of the API's own vocabulary (CRM types, and
    the fields a caller names as such) stay as they are.
    """

    #: Tries to find a stand-in not given to another value.
    _TRIES = 200

    def __init__(self, rng: random.Random | None = None) -> None:
        """`rng`: where stand-ins come from; the system's randomness unless a test's."""
        self._rng = rng or secrets.SystemRandom()
        self._days = timedelta(days=self._rng.choice([-1, 1]) * self._rng.randrange(400, 4000))
        self._minutes = timedelta(minutes=self._rng.randrange(1, 24 * 60))
        self._given: dict[tuple[str, object], object] = {}
        self._taken: set[tuple[str, object]] = set()

    def redact(self, value: object, vocabulary: t.Collection[str] = ()) -> object:
        """`value` with every scalar replaced by its stand-in; keys, nulls and the values
        of the fields named in `vocabulary` (at any depth) are kept."""
        if isinstance(value, dict):
            return {
                key: item if key in vocabulary else self.redact(item, vocabulary)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.redact(item, vocabulary) for item in value]
        return self.stand_in(value)

    def stand_in(self, value: object) -> object:
        kind = json_type(value)
        if kind == "null":
            return None
        if kind == "string" and value in _CRM_TYPES:
            return value  # the API's own words, in every CRM's data alike
        known = self._given.get((kind, value))
        if known is not None:
            return known
        cls = format_class(value)
        candidate: object = value
        for _ in range(self._TRIES):
            candidate = self._make(value, cls)
            # The value itself only where its class holds nothing else ("", "0").
            fresh = candidate != value and (kind, candidate) not in self._taken
            if fresh and format_class(candidate) == cls:
                break
        self._given[(kind, value)] = candidate
        self._taken.add((kind, candidate))
        return candidate

    def _make(self, value: object, cls: str) -> object:
        rng = self._rng
        if isinstance(value, bool):
            return rng.random() < 0.5
        if isinstance(value, int):
            text = self._digits(str(value))
            return int(text)
        if isinstance(value, float):
            return float(self._digits(repr(value)))
        if not isinstance(value, str) or cls in ("empty string", "blank"):
            return value
        if cls.startswith("date-time") or cls == "local minute":
            return self._date_time(value)
        if cls == "date":
            return self._day().isoformat()
        if cls == "date dd.mm.yyyy":
            return self._dotted_date(value)
        if cls == "boolean as string":
            words = next(pair for pair in _BOOLEAN_WORDS if value.lower() in pair)
            word = rng.choice(words)
            return word.upper() if value.isupper() else word.title() if value.istitle() else word
        if cls == "url":
            scheme, _, rest = value.partition("://")
            return f"{scheme}://{self._scramble(rest)}"
        if cls in (*DIGIT_CLASSES, "decimal as string"):
            return self._digits(value)
        return self._scramble(value)

    def _digits(self, text: str) -> str:
        """Other digits in the same places; a leading digit stays zero or non-zero."""
        rng = self._rng
        out = []
        leading = True
        for char in text:
            if char.isdigit() and char.isascii():
                if leading and char != "0":
                    out.append(rng.choice("123456789"))
                else:
                    out.append(char if leading else rng.choice(string.digits))
                leading = False
            else:
                out.append(char)
                leading = leading and char in "+-"
        return "".join(out)

    def _scramble(self, text: str) -> str:
        """Other letters and digits in the same places; spaces and punctuation kept."""
        rng = self._rng
        out = []
        for char in text:
            if char.isdigit():
                out.append(rng.choice(string.digits))
            elif char.isalpha():
                if char.isascii():
                    letters = string.ascii_uppercase if char.isupper() else string.ascii_lowercase
                else:
                    letters = "ÆØÅÉ" if char.isupper() else "æøåé"
                out.append(rng.choice(letters))
            else:
                out.append(char)
        return "".join(out)

    def _date_time(self, value: str) -> str:
        stamp = _DATE_TIME.fullmatch(value)
        assert stamp is not None
        minute, seconds = stamp["time"][:5], stamp["time"][5:]
        wall = datetime.fromisoformat(f"{stamp['date']}T{minute}")
        shift = self._days + self._minutes
        try:
            when = wall + shift
        except OverflowError:  # year 1 or 9999: the other way
            when = wall - shift
        # Seconds and the offset say how the server writes time, not when: they are kept.
        clock = when.strftime("%H:%M") + seconds
        return f"{when.date().isoformat()}{stamp['sep']}{clock}{stamp['offset']}"

    def _day(self) -> date:
        """A day of its own, between 1900 and 2099."""
        return _FIRST_DAY + timedelta(days=self._rng.randrange(_DAYS))

    def _dotted_date(self, value: str) -> str:
        dotted = _NORWEGIAN_DATE.fullmatch(value)
        assert dotted is not None
        day_text, month_text, _ = dotted.groups()
        day = self._day()
        # A leading zero in the original is kept in the stand-in.
        day_part = f"{day.day:0{len(day_text)}d}"
        month_part = f"{day.month:0{len(month_text)}d}"
        return f"{day_part}.{month_part}.{day.year}"


def describe(values: t.Iterable[object]) -> tuple[list[str], list[str]]:
    """The JSON types and format classes of `values`, each sorted, none of the values."""
    types: set[str] = set()
    classes: set[str] = set()
    for value in values:
        types.add(json_type(value))
        classes.add(format_class(value))
    return sorted(types), sorted(classes)
