"""Date-times as Cube writes them: the converter, local times, DST, and bookmarks.

Cube writes `…submitted_when_timestamp` with an offset without a colon
("2020-02-12T10:27:06.477+0100") and product rows with only the local minute
("2018-11-27 09:24"); both must become RFC 3339 date-times naming the same instant.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import FormatChecker  # type: ignore[import-untyped]
from rfc3339_validator import validate_rfc3339  # type: ignore[import-untyped]

from tap_cube.records.coercion import CATCH_ALL_PROPERTY, RecordCoercion
from tap_cube.records.converters import UNFIT, instant, to_date_time
from tap_cube.streams.call_outcomes import bookmark_of
from tests.test_coercion import instant_of, written

OSLO = ZoneInfo("Europe/Oslo")
UTC = dt.UTC
#: Zones with DST gaps and overlaps on both hemispheres, a half-hour one, and UTC.
ZONES = [ZoneInfo(name) for name in ("Europe/Oslo", "America/Sao_Paulo", "Asia/Kolkata", "UTC")]


def test_jsonschema_really_checks_date_time_formats():
    """Without rfc3339-validator jsonschema silently passes any date-time: it is installed."""
    checker = FormatChecker()
    assert checker.conforms("2020-02-12T10:27:06.477+01:00", "date-time")
    assert not checker.conforms("2020-02-12T10:27:06.477+0100", "date-time")
    assert not checker.conforms("2018-11-27 09:24", "date-time")


@pytest.mark.parametrize(
    ("sent", "emitted"),
    [
        ("2020-02-12T10:27:06.477+0100", "2020-02-12T10:27:06.477+01:00"),  # the notes
        ("2020-02-12T10:27:06.477+01:00", "2020-02-12T10:27:06.477+01:00"),
        ("2020-02-12T10:27:06+01", "2020-02-12T10:27:06+01:00"),
        ("2020-02-12T10:27:06-0330", "2020-02-12T10:27:06-03:30"),
        ("2020-02-12T10:27:06Z", "2020-02-12T10:27:06Z"),
        ("2020-02-12t10:27:06z", "2020-02-12T10:27:06Z"),
        ("2020-02-12 10:27:06+01:00", "2020-02-12T10:27:06+01:00"),
        (" 2020-02-12T10:27+0100 ", "2020-02-12T10:27:00+01:00"),
        ("2020-02-12T10:27:06.123456789+0100", "2020-02-12T10:27:06.123456789+01:00"),
    ],
)
def test_date_times_with_an_offset_need_no_time_zone(sent, emitted):
    assert to_date_time(sent) == emitted
    assert to_date_time(sent, OSLO) == emitted
    assert validate_rfc3339(emitted)


def test_a_date_time_that_fits_is_returned_as_is():
    sent = "2020-02-12T10:27:06+01:00"
    assert to_date_time(sent) is sent


@pytest.mark.parametrize(
    ("sent", "emitted"),
    [
        ("2018-11-27 09:24", "2018-11-27T09:24:00+01:00"),  # Products.md: the local minute
        ("2020-06-12T10:27:06.477", "2020-06-12T10:27:06.477+02:00"),  # summer time
        # The hour the clocks skip (last Sunday of March, 02:00 -> 03:00): the offset
        # before the change, so 02:30+01:00, which is 03:30+02:00.
        ("2026-03-29 02:30", "2026-03-29T02:30:00+01:00"),
        # The hour the clocks pass twice (last Sunday of October): the first of them.
        ("2026-10-25 02:30", "2026-10-25T02:30:00+02:00"),
    ],
)
def test_local_times_take_the_offset_of_the_time_zone(sent, emitted):
    assert to_date_time(sent, OSLO) == emitted
    assert to_date_time(sent) is UNFIT  # without a zone, its instant is unknown


@pytest.mark.parametrize(
    "sent",
    [
        "2020-02-30T10:00:00Z",
        "2020-02-12T24:00:00Z",
        "2020-02-12T10:60:00Z",
        "2020-02-12T10:27:06+2400",
        "2020-02-12T10:27:06+0160",
        "2020-02-12",
        "20200212T102706Z",
        "2020-02-12T10:27:06 +01:00",
        "yesterday",
        "",
    ],
)
def test_what_is_no_date_time_is_unfit(sent):
    assert to_date_time(sent, OSLO) is UNFIT


@pytest.mark.parametrize("sent", [20200212, 1.5, None, True, ["2020-02-12T10:27:06Z"]])
def test_only_text_can_be_a_date_time(sent):
    assert to_date_time(sent, OSLO) is UNFIT


@settings(max_examples=1500, deadline=None)
@given(
    moment=st.datetimes(min_value=dt.datetime(1900, 1, 1)),
    minutes=st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
    style=st.sampled_from(["colon", "no colon", "hours", "Z"]),
)
def test_any_offset_style_gives_the_same_instant_in_rfc_3339(moment, minutes, style):
    if style == "hours":
        minutes -= minutes % 60 if minutes >= 0 else -(-minutes % 60)
    if style == "Z":
        minutes = 0
    sent = written(moment, minutes, style)
    emitted = to_date_time(sent)
    assert isinstance(emitted, str), sent
    assert validate_rfc3339(emitted), (sent, emitted)
    named = moment.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes)))
    assert instant_of(emitted) == named
    assert instant(emitted) == named
    assert to_date_time(emitted) is emitted  # converting again changes nothing


@settings(max_examples=1500, deadline=None)
@given(
    local=st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 1, 1)),
    zone=st.sampled_from(ZONES),
    minute_only=st.booleans(),
)
def test_local_times_get_the_zones_offset_deterministically(local, zone, minute_only):
    """Any local time, DST gaps and overlaps included: the instant of fold=0, every time."""
    if minute_only:
        local = local.replace(second=0, microsecond=0)
        sent = local.strftime("%Y-%m-%d %H:%M")
    else:
        sent = local.isoformat()
    emitted = to_date_time(sent, zone)
    assert isinstance(emitted, str), sent
    assert validate_rfc3339(emitted), (sent, emitted)
    expected = local.replace(tzinfo=zone, fold=0)
    # Compared as UTC: Python never calls an aware time in a fold equal to one of another
    # zone (PEP 495), though both name the same instant.
    assert instant(emitted).astimezone(dt.UTC) == expected.astimezone(dt.UTC)
    assert instant(emitted).utcoffset() == expected.utcoffset()
    # The wall-clock digits are kept as sent.
    assert instant(emitted).replace(tzinfo=None) == local
    assert to_date_time(sent, zone) == emitted


def test_the_coercion_of_a_stream_reads_local_times_in_its_zone():
    properties = {
        "when": {"type": "string", "format": "date-time"},
        **CATCH_ALL_PROPERTY,
    }
    record = RecordCoercion(properties, ZoneInfo("America/New_York"))({"when": "2018-11-27 09:24"})
    assert record == {"when": "2018-11-27T09:24:00-05:00"}


@settings(max_examples=800, deadline=None)
@given(
    moments=st.lists(
        st.tuples(
            st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2040, 1, 1)),
            st.integers(min_value=-12 * 60, max_value=14 * 60),
            st.sampled_from(["colon", "no colon", "Z"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_bookmark_is_the_latest_instant_across_mixed_offsets(moments):
    """The SDK keeps the greatest bookmark by comparing text: bookmarks compare as instants."""
    sent = [written(moment, 0 if style == "Z" else m, style) for moment, m, style in moments]
    emitted = [t for t in (to_date_time(s) for s in sent) if isinstance(t, str)]
    assert len(emitted) == len(sent)
    latest = max(emitted, key=instant)
    assert max(bookmark_of(t) for t in emitted) == bookmark_of(latest)
    assert instant(bookmark_of(latest)) == instant(latest)
    assert all(bookmark_of(t).endswith("+00:00") for t in emitted)
    assert len({len(bookmark_of(t)) for t in emitted}) == 1  # one width: text order works


def test_a_bookmark_across_the_autumn_overlap_is_the_later_instant():
    """02:10+01:00 is after 02:50+02:00; as text they compare the other way round."""
    first, later = "2026-10-25T02:50:00+02:00", "2026-10-25T02:10:00+01:00"
    assert first > later
    assert bookmark_of(later) > bookmark_of(first)


# --------------------------------------------------------------------------- the edges

#: The instants a datetime holds: a date-time naming another cannot be ordered, kept
#: as a bookmark or loaded by a target written in Python.
FIRST_INSTANT = dt.datetime.min.replace(tzinfo=UTC)
LAST_INSTANT = dt.datetime.max.replace(tzinfo=UTC)


def names_an_instant(emitted: object) -> bool:
    """Whether a converter's answer is an instant in UTC a bookmark can be made of."""
    if emitted is UNFIT:
        return False
    assert isinstance(emitted, str)
    assert validate_rfc3339(emitted), emitted
    assert FIRST_INSTANT <= instant(emitted).astimezone(UTC) <= LAST_INSTANT
    assert instant(bookmark_of(emitted)) == instant(emitted)
    return True


@pytest.mark.parametrize(
    ("sent", "zone"),
    [
        ("0001-01-01T00:30:00.000+0100", None),  # 0000-12-31T23:30Z
        ("0001-01-01T00:00:00.000+00:01", None),
        ("9999-12-31T23:30:00.000-0100", None),  # 10000-01-01T00:30Z
        ("9999-12-31T23:59:59.999999-00:01", None),
        ("0001-01-01 00:00", OSLO),  # local mean time there: +00:43
        ("9999-12-31 23:30", ZoneInfo("America/Sao_Paulo")),
    ],
)
def test_a_date_time_of_no_instant_is_unfit(sent, zone):
    assert to_date_time(sent, zone) is UNFIT


@pytest.mark.parametrize(
    "sent",
    [
        "0001-01-01T00:00:00.000+0000",
        "0001-01-01T01:00:00+01:00",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59.999-00:00",
    ],
)
def test_the_first_and_last_instants_are_date_times(sent):
    assert names_an_instant(to_date_time(sent))


edge_moments = st.one_of(
    st.datetimes(max_value=dt.datetime(1, 1, 3)),
    st.datetimes(min_value=dt.datetime(9999, 12, 29)),
)


@settings(max_examples=1500, deadline=None)
@given(
    moment=edge_moments,
    minutes=st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
    style=st.sampled_from(["colon", "no colon", "hours", "Z", "minute"]),
    zone=st.sampled_from([*ZONES, ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Pacific/Niue")]),
)
def test_at_the_edges_a_date_time_is_an_instant_or_unfit(moment, minutes, style, zone):
    """Years 1 and 9999, any offset, local times of zones far east and west: what the
    converter gives can always be made a bookmark; what it refuses names no instant."""
    if style == "hours":
        minutes -= minutes % 60 if minutes >= 0 else -(-minutes % 60)
    if style in ("Z", "minute"):
        minutes = 0
    if style == "minute":
        moment = moment.replace(second=0, microsecond=0)
    sent = written(moment, minutes, style)
    emitted = to_date_time(sent, zone)
    if names_an_instant(emitted):
        return
    named = moment.replace(
        tzinfo=zone if style == "minute" else dt.timezone(dt.timedelta(minutes=minutes))
    )
    with pytest.raises(OverflowError):  # refused: it names no instant a datetime holds
        named.astimezone(UTC)


def test_a_column_of_no_instant_is_null_and_the_value_kept():
    properties = {"when": {"type": ["string", "null"], "format": "date-time"}, **CATCH_ALL_PROPERTY}
    coercion = RecordCoercion(properties, OSLO)
    sent = {"when": "0001-01-01T00:30:00.000+0100"}
    assert coercion(dict(sent)) == {"when": None, "_cube_unparsed": sent}
    local = {"when": "0001-01-01 00:00"}
    assert coercion(dict(local)) == {"when": None, "_cube_unparsed": local}
