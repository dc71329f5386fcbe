"""Property-based: whatever JSON the server sends, records fit their schema and lose nothing.

Each test throws arbitrary JSON values (and the odd forms Cube really sends: numbers as
text, Norwegian dates, "Ja"/"nei") at fields of every type and checks two things with
an oracle written independently of tap_cube/records/coercion.py:

(a) the record validates against the schema, formats included, with every integer
    within 64 bits (PostgreSQL bigint);
(b) every value that is not null or blank can be found again: in its typed column
    (as the same number, date, truth value or text) or, as sent, in the catch-all.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import typing as t
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import FormatChecker  # type: ignore[import-untyped]
from jsonschema.validators import validator_for  # type: ignore[import-untyped]

from tap_cube.errors import ApiError
from tap_cube.records.coercion import CATCH_ALL, CATCH_ALL_PROPERTY, RecordCoercion
from tap_cube.streams.schema import FIELD_TYPES

# Every mixed record carries a value of every type: together with the examples of the
# single-field test that is 3,000 values per type, in well under a minute.
MIXED_RECORDS = 2500
EXAMPLES_PER_TYPE = 500
INT64 = (-(2**63), 2**63 - 1)
TRUE_WORDS = {"true", "ja", "yes", "1"}
FALSE_WORDS = {"false", "nei", "no", "0"}


# --------------------------------------------------------------------------- values


def mixed_case(word: str) -> st.SearchStrategy[str]:
    return st.tuples(*(st.sampled_from([c.lower(), c.upper()]) for c in word)).map("".join)


blanks = st.sampled_from(["", " ", "  ", "\t", "\n"])
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
numbers_as_text = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    finite_floats.map(repr),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.from_regex(r"[-+]?[0-9]{1,25}(\.[0-9]{0,20})?([eE][-+]?[0-9]{1,3})?", fullmatch=True),
)
dates_as_text = st.one_of(
    st.dates().map(dt.date.isoformat),
    st.dates().map(lambda d: f"{d.day:02d}.{d.month:02d}.{d.year:04d}"),
    st.dates().map(lambda d: f"{d.day}.{d.month}.{d.year}"),
    st.from_regex(r"[0-9]{1,5}[-.][0-9]{1,2}[-.][0-9]{1,5}", fullmatch=True),
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)
date_times_as_text = st.one_of(
    # As Cube writes them: offsets without a colon, a space for the T, no offset at all.
    st.builds(
        lambda moment, minutes, style: written(moment, minutes, style),
        st.datetimes(min_value=dt.datetime(1900, 1, 1)),
        offsets,
        st.sampled_from(["colon", "no colon", "hours", "Z", "naive", "minute"]),
    ),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
        r"(Z|[-+][0-9]{2}(:?[0-9]{2})?)?",
        fullmatch=True,
    ),
)
booleans_as_text = st.sampled_from(
    sorted(TRUE_WORDS | FALSE_WORDS | {"kanskje", "y", "n"})
).flatmap(mixed_case)
odd_text = st.one_of(numbers_as_text, dates_as_text, date_times_as_text, booleans_as_text).flatmap(
    lambda text: st.tuples(blanks, st.just(text), blanks).map("".join)
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, 1, -1, *INT64, INT64[0] - 1, INT64[1] + 1]),
    finite_floats,
    st.sampled_from([0.0, -0.0, 1.0, 7.0, 5.5, 9.223372036854776e18, -9.223372036854776e18]),
    st.text(),
    blanks,
    odd_text,
)
json_values = st.one_of(
    json_scalars,
    st.lists(st.integers() | st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3), max_size=2),
)


def written(moment: dt.datetime, minutes: int, style: str) -> str:
    """`moment` at a UTC offset of `minutes`, written in one of Cube's styles."""
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    offset = {
        "colon": f"{sign}{hours:02d}:{rest:02d}",
        "no colon": f"{sign}{hours:02d}{rest:02d}",
        "hours": f"{sign}{hours:02d}",
        "Z": "Z",
    }.get(style, "")
    if style == "minute":
        return moment.isoformat(sep=" ", timespec="minutes")  # strftime drops year 1's zeros
    return moment.isoformat() + offset


# --------------------------------------------------------------------------- the oracle


def kind_of(prop: dict[str, t.Any]) -> str:
    if "type" not in prop:
        return "any"
    types = {prop["type"]} if isinstance(prop["type"], str) else set(prop["type"])
    types -= {"null"}
    if types == {"string"}:
        return str(prop.get("format", "text"))
    return " or ".join(sorted(types)) or "null"


def decimal_of(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))  # the number as JSON writes it
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except ArithmeticError:
            return None
    return None


def day_of(text: str) -> dt.date | None:
    text = text.strip()
    for pattern in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            found = dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
        if pattern == "%Y-%m-%d" and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            continue  # strptime also takes one-digit months
        return found
    return None


def instant_of(text: str) -> dt.datetime | None:
    """The instant a date-time with an offset names, by strptime (which takes +0100,
    +01:00 and Z alike); None without an offset or when it is no date-time."""
    text = text.strip().replace(" ", "T", 1)
    if re.search(r"[-+][0-9]{2}$", text):
        text += "00"
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z"):
        try:
            return dt.datetime.strptime(re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", text), pattern)
        except ValueError:
            continue
    return None


def represents(kind: str, typed: object, original: object) -> bool:
    """Whether the typed column's value is the original value, in the column's type."""
    if typed is None:
        return False
    if kind == "integer":
        return type(typed) is int and decimal_of(original) == typed
    if kind == "number":
        return type(typed) in (int, float) and decimal_of(original) == decimal_of(repr(typed))
    if kind == "boolean":
        if isinstance(original, bool) or type(original) is int:
            return type(typed) is bool and typed == original
        words = TRUE_WORDS if typed is True else FALSE_WORDS
        return isinstance(original, str) and original.strip().lower() in words
    if kind == "date":
        return (
            isinstance(typed, str)
            and isinstance(original, str)
            and day_of(original) == dt.date.fromisoformat(typed)
        )
    if kind == "date-time":
        if not isinstance(typed, str) or not isinstance(original, str):
            return False
        sent, emitted = instant_of(original), instant_of(typed)
        # The same instant at the same offset: the same wall-clock time, too.
        return sent is not None and sent == emitted and sent.utcoffset() == emitted.utcoffset()
    if " or " in kind or kind == "null":
        return same_json(typed, original)
    if kind == "text":
        if isinstance(original, bool):
            return typed == ("true" if original else "false")
        if isinstance(original, str):
            return typed == original
        return isinstance(typed, str) and decimal_of(typed) == decimal_of(original)
    raise AssertionError(kind)


def same_json(left: object, right: object) -> bool:
    """Equal as JSON values: True is not 1, 1 is not 1.0."""
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


@functools.cache
def validator_of(schema_text: str) -> t.Any:
    """A JSON Schema validator that checks formats ("date") too, per schema."""
    schema = json.loads(schema_text)
    return validator_for(schema)(schema, format_checker=FormatChecker())


def assert_fits_and_keeps(
    schema: dict[str, t.Any], original: dict[str, t.Any], record: dict[str, t.Any]
) -> None:
    validator = validator_of(json.dumps(schema))
    errors = [error.message for error in validator.iter_errors(record)]
    assert not errors, (original, record, errors)
    properties = schema["properties"]
    for name, value in record.items():
        kind = kind_of(properties[name]) if name in properties else None
        if kind == "integer" and value is not None:
            assert INT64[0] <= value <= INT64[1], (name, value)
    kept = record.get(CATCH_ALL) or {}
    for name, value in original.items():
        if value is None or value == "":
            continue
        prop = properties.get(name)
        if prop is not None and name != CATCH_ALL:
            kind = kind_of(prop)
            if represents(kind, record[name], value):
                continue
            if kind != "text" and isinstance(value, str) and not value.strip():
                assert record[name] is None  # blanks are no value of a typed field
                continue
            assert record[name] is None, (name, value, record)
        assert name in kept, (name, value, record)
        assert same_json(kept[name], value), (name, value, kept[name])


def schema_of(properties: dict[str, t.Any]) -> dict[str, t.Any]:
    return {"type": "object", "properties": {**properties, **CATCH_ALL_PROPERTY}}


# --------------------------------------------------------------------------- tests

#: The custom-field types, and the date-time of call outcomes and product registrations.
KINDS = {**FIELD_TYPES, "date-time": {"type": ["string", "null"], "format": "date-time"}}
TYPED_FIELDS = {f"field_{kind}": dict(prop) for kind, prop in KINDS.items()}


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(
    max_examples=EXAMPLES_PER_TYPE, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(value=json_values)
def test_every_value_fits_its_type_or_is_kept(kind, value):
    schema = schema_of({"value": KINDS[kind]})
    original = {"value": value}
    record = RecordCoercion(schema["properties"])(json.loads(json.dumps(original)))
    assert_fits_and_keeps(schema, original, record)


@settings(max_examples=MIXED_RECORDS, deadline=None)
@given(
    original=st.fixed_dictionaries(
        {name: json_values for name in TYPED_FIELDS},
        optional={
            CATCH_ALL: json_values,  # a server field that happens to share the name
            "crm__custom_info__999": json_values,  # added after discovery
            "new_attribute": json_values,
        },
    )
)
def test_records_with_all_types_and_unknown_fields(original):
    schema = schema_of(TYPED_FIELDS)
    coercion = RecordCoercion(schema["properties"])
    sent = json.loads(json.dumps(original))
    coercion.set_aside_owned(sent, [CATCH_ALL], {})  # every stream's first step
    record = coercion(sent)
    assert_fits_and_keeps(schema, original, record)
    assert set(record) <= set(schema["properties"])


@pytest.mark.parametrize(
    ("kind", "sent", "typed"),
    [
        ("integer", " 7 ", 7),
        ("integer", "12", 12),
        ("integer", 7.0, 7),
        ("integer", 5.5, None),
        ("integer", True, None),
        ("integer", 2**70, None),
        ("integer", "0150", None),  # leading zeros (a postal code) would be lost
        ("integer", "", None),
        ("number", "233.0", 233.0),
        ("number", "0.10000000000000000001", None),  # a float cannot hold it
        ("date", "12.05.2020", "2020-05-12"),
        ("date", "2020-02-30", None),
        ("date", "20200212", None),
        ("boolean", "Ja", True),
        ("boolean", "NEI", False),
        ("boolean", 0, False),
        ("boolean", 2, None),
        ("text", 233, "233"),
        ("text", False, "false"),
        ("text", "", ""),
        ("text", {"a": 1}, None),
        ("date-time", "2020-02-12T10:27:06.477+0100", "2020-02-12T10:27:06.477+01:00"),
        ("date-time", "2020-02-12T10:27:06+01", "2020-02-12T10:27:06+01:00"),
        ("date-time", "2020-02-12 10:27:06Z", "2020-02-12T10:27:06Z"),
        ("date-time", "2020-02-12T10:27:06", None),  # no offset, and no time zone given
        ("date-time", "2020-02-30T10:27:06Z", None),
    ],
)
def test_documented_coercions(kind, sent, typed):
    """The README's coercion table, row by row."""
    coercion = RecordCoercion(schema_of({"f": KINDS[kind]})["properties"])
    record = coercion({"f": sent})
    assert record["f"] == typed
    assert type(record["f"]) is type(typed)
    unparsed = record.get(CATCH_ALL)
    if typed is None and sent != "":
        assert unparsed == {"f": sent}
    else:
        assert unparsed is None


def test_unfit_key_stops_the_run_with_one_line():
    coercion = RecordCoercion({"campaign__id": {"type": ["integer"]}, **CATCH_ALL_PROPERTY})
    assert coercion({"campaign__id": "12"}) == {"campaign__id": 12}
    with pytest.raises(ApiError, match=r"campaign__id = 'tolv', which is not integer"):
        coercion({"campaign__id": "tolv"})


def test_without_a_declared_catch_all_values_are_left_out_and_reported():
    """A catalog from before the catch-all existed: the record still fits its schema."""
    coercion = RecordCoercion({"f": FIELD_TYPES["integer"]})
    record = coercion({"f": "abc", "g": 1})
    assert record == {"f": None}
    coercion({"f": "def"})
    lines = coercion.report(lambda field: True)
    assert sorted(lines) == [
        "1 value of g, a field not in the schema, left out (e.g. 1); run discovery again "
        "to keep them in _cube_unparsed",
        "2 values of f are not integer: null in the column (e.g. 'abc'); run discovery "
        "again to keep such values in _cube_unparsed",
    ]
    assert coercion.report(lambda field: True) == []  # counts start afresh


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_properties_of_several_types_from_a_users_catalog(value):
    """A catalog may declare a field with several types, or none: records still fit."""
    schema = schema_of(
        {
            "either": {"type": ["integer", "string", "null"]},
            "anything": {},
            "never": {"type": "null"},
        }
    )
    original = {"either": value, "anything": value, "never": value}
    record = RecordCoercion(schema["properties"])(json.loads(json.dumps(original)))
    assert_fits_and_keeps(schema, {"either": value, "never": value}, record)
    assert same_json(record["anything"], value)
    if isinstance(value, str) or (type(value) is int and INT64[0] <= value <= INT64[1]):
        assert same_json(record["either"], value)
