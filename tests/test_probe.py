"""`tap-cube --probe`: a server described by types and formats, never by its values.

The probe runs against the simulator, whose every value the test knows: none may show in
what the probe prints, and each redacted fixture it writes must keep every value's JSON
type and format class while replacing the value, and read back through the tap.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cube_simulator import Crm, CustomField
from tap_cube.records.formats import STRING_CLASSES, StandIns, format_class, json_type, length_class
from tests.conftest import (
    TOKEN,
    assert_no_secrets,
    config_for,
    cube_today,
    plain_assignment,
    run_tap,
)

START = cube_today() - timedelta(days=5)
DAY = "%Y%m%d"
#: Values a stand-in may share with the original: the class has (almost) no other.
CRMS = [{"data_owner_id": 3, "crm_type": "B2C"}]
TINY_CLASSES = {"empty string", "blank", "boolean", "boolean as string", "crm type", "null"}


@pytest.fixture
def server(simulator):
    fields = [CustomField(64, "Adresse", "text"), CustomField(90, "Poeng", "integer")]
    return simulator(
        [plain_assignment(7, 40)],
        crms=[Crm(3, "B2C", 30, custom_fields=fields)],
        outcomes_start=START,
        next_style="foreign",
        page_size=10,
        quirks=("crm_next_repeats",),
    )


def probe_config(sim):
    return config_for(sim, [7], start_date=START.isoformat(), discover_crms=True)


def served_rows(sim):
    """Every row the simulator serves to this configuration, per stream."""
    campaigns = sim.campaigns()
    today = sim.today()
    owned = [c["campaign__id"] for c in campaigns if c.get("data_owner__id")]
    return {
        "customers": sim.customers(7),
        "crm_customers": sim.crm_customers(3, "B2C"),
        "campaigns": campaigns,
        "call_outcomes": [
            r for c in campaigns for r in sim.call_outcomes(c["campaign__id"], START, today)
        ],
        "product_registrations": [
            r for c in owned for r in sim.product_registrations(c, START, today)
        ],
        "crm_product_registrations": sim.product_registrations((3, "B2C"), START, today),
    }


def scalars(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from scalars(item)
    elif isinstance(value, list):
        for item in value:
            yield from scalars(item)
    else:
        yield value


def without_log_prefix(stderr):
    return "\n".join(line.split(" | ", 3)[-1] for line in stderr.splitlines())


def test_probe_prints_types_and_formats_but_no_value(server, tmp_path):
    run = run_tap(probe_config(server), tmp_path, "--probe")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    for stream, era in (
        ("customers", "assignment"),
        ("crm_customers", "data owner"),
        ("crm_product_registrations", "data owner"),
        ("campaigns", "assignment and data owner"),
    ):
        section = out.split(f"\n{stream}: GET ", 1)[1].split("\n\n", 1)[0]
        assert f"era: {era}" in section, section
    customers = out.split("\ncrm_customers: GET ", 1)[1].split("\n\n", 1)[0]
    assert "next link: absolute, other host/scheme; repeats the request" in customers
    assert "crm__customer_id" in customers
    assert "integer as string" in customers
    outcomes = out.split("\ncrm_call_outcomes: GET ", 1)[1].split("\n\n", 1)[0]
    timestamp = next(line for line in outcomes.splitlines() if "submitted_when_timestamp" in line)
    assert "date-time, offset without colon" in timestamp  # as the notes write it
    assert timestamp.endswith("-> column")
    assert "local minute" in next(
        line for line in outcomes.splitlines() if "report_as__submitted_when " in line
    )
    extra = next(line for line in outcomes.splitlines() if "call_outcome__extra__" in line)
    assert extra.endswith("-> in call_outcome__extra")
    assert not run.stdout.lstrip().startswith("{")  # no Singer messages: nothing synced

    shown = out + "\n" + without_log_prefix(run.stderr)
    values = {
        value
        for rows in served_rows(server).values()
        for value in scalars(rows)
        if value not in (None, True, False, "")
    }
    assert values
    leaked = [
        value
        for value in values
        # Numbers below 100 are too short to tell from counts and widths.
        if (isinstance(value, str) and len(value) >= 4 and value in shown)
        or (isinstance(value, int) and value >= 100 and str(value) in shown)
    ]
    # Field labels are names, not values: they are shown where they key custom fields.
    assert [v for v in leaked if f"__{v}" not in shown] == []
    assert_no_secrets(run.stdout, run.stderr)
    assert TOKEN not in shown


def test_probe_says_which_fields_the_tap_cannot_read(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 5)])
    rows = [
        {"campaign__id": 12, "campaign__name": "Vinterkampanje", "campaign__new": "Hemmelig"},
        {"campaign__id": "tolv", "campaign__name": "Sommerkampanje", "campaign__is_active": 2},
    ]
    sim.fail_next("/campaigns", 200, json.dumps(rows), times=5)
    run = run_tap(config_for(sim, [7]), tmp_path, "--probe")
    assert run.returncode == 0, run.stderr
    section = run.stdout.split("\ncampaigns: GET ", 1)[1].split("\n\n", 1)[0]
    lines = {line.split()[0]: line for line in section.splitlines()[1:]}
    assert "rows that stop the run: 1" in section
    assert lines["campaign__id"].endswith("-> column (1), stops the run (1)")
    assert "integer / integer (1), string / text (1)" in lines["campaign__id"]
    assert lines["campaign__name"].endswith("-> column")
    assert lines["campaign__new"].endswith("-> kept in _cube_unparsed")
    assert lines["campaign__is_active"].endswith(
        "-> kept in _cube_unparsed (not its column's type)"
    )
    for value in ("tolv", "Vinterkampanje", "Sommerkampanje", "Hemmelig"):
        assert value not in run.stdout


def test_redacted_fixtures_keep_every_format_and_replace_every_value(server, tmp_path):
    fixtures = tmp_path / "fixtures"
    run = run_tap(probe_config(server), tmp_path, f"--probe={fixtures}")
    assert run.returncode == 0, run.stderr
    assert f"redacted fixture: {fixtures / 'crm_customers.json'}" in run.stdout
    served = served_rows(server)
    for stream in ("customers", "crm_customers", "crm_product_registrations", "campaigns"):
        meta = json.loads((fixtures / f"{stream}.json").read_text(encoding="utf-8"))
        body = meta.pop("body")
        assert meta["source"]["file"] == "tap-cube --probe"
        assert meta["stream"] == stream
        assert meta["endpoint"].startswith("/")
        rows = body if isinstance(body, list) else body["results"]
        if isinstance(body, dict):
            assert body["count"] == len(rows)
            assert body["next"] is None
        originals = served[stream][: len(rows)]
        assert len(rows) == len(originals) > 0
        for original, stand_in in zip(originals, rows, strict=True):
            assert list(stand_in) == list(original)  # the same fields, in the same order
            for name, value in original.items():
                new = stand_in[name]
                assert json_type(new) == json_type(value), (stream, name)
                assert format_class(new) == format_class(value), (stream, name)
                assert length_class(new) == length_class(value), (stream, name)
                if format_class(value) not in TINY_CLASSES and not (
                    isinstance(value, int) and abs(value) < 10
                ):
                    assert new != value, (stream, name)
        ids = [r.get("crm__customer_id", r.get("campaign__id")) for r in rows]
        assert len(set(ids)) == len(set(r.get("crm__customer_id", r.get("campaign__id"))
                                        for r in originals))  # fmt: skip
        assert_no_secrets(json.dumps(body), json.dumps(meta))


@pytest.mark.parametrize(
    ("stream", "served_at", "config"),
    [
        ("customers", "/assignments/7/customers/", {}),
        ("crm_customers", "/data_owners/3/B2C/customers/", {"crms": CRMS}),
        (
            "crm_product_registrations",
            "/data_owners/3/crm/B2C/product_registrations/",
            {"crms": CRMS, "start_date": START.isoformat()},
        ),
    ],
)
def test_a_redacted_fixture_reads_back_through_the_tap(
    server, simulator, tmp_path, stream, served_at, config
):
    fixtures = tmp_path / "fixtures"
    assert run_tap(probe_config(server), tmp_path, f"--probe={fixtures}").returncode == 0
    fixture = json.loads((fixtures / f"{stream}.json").read_text(encoding="utf-8"))
    assert fixture["request"].split("?")[0] == served_at
    body = json.dumps(fixture["body"])
    rows = fixture["body"]["results"]

    replay = simulator([plain_assignment(7, 3)], crms=[Crm(3, "B2C", 3)], outcomes_start=START)
    replay.fail_next(served_at, 200, body, times=20)
    settings = config_for(replay, [] if config else [7], **config)
    run = run_tap(settings, tmp_path)
    assert run.returncode == 0, run.stderr
    records = run.records(stream)
    assert len(records) == len(rows)
    assert sorted(r["crm__customer_id"] for r in records) == sorted(
        r["crm__customer_id"] for r in rows
    )


# --- format classes --------------------------------------------------------------------

DATE_TIMES = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 12, 31))
OFFSETS = {
    "date-time, offset with colon": st.sampled_from(["+01:00", "+02:00", "-05:30", "+00:00"]),
    "date-time, offset without colon": st.sampled_from(["+0100", "+0200", "-0530"]),
    "date-time, hour offset": st.sampled_from(["+01", "+02", "-05"]),
    "date-time, UTC (Z)": st.just("Z"),
    "date-time naive": st.just(""),
}


@st.composite
def date_time_values(draw):
    cls = draw(st.sampled_from(sorted(OFFSETS)))
    when = draw(DATE_TIMES)
    fraction = draw(st.sampled_from(["", ".477", ".123456"]))
    sep = draw(st.sampled_from(["T", " "]))
    text = when.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + fraction + draw(OFFSETS[cls])
    return cls, text


DAYS = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))
NUMBERS = st.integers(min_value=1, max_value=10**12)
OTHER_STRINGS = {
    "local minute": st.builds(
        lambda day, clock: day.strftime("%Y-%m-%d ") + clock,
        DAYS,
        st.sampled_from(["09:24", "23:59", "00:00"]),
    ),
    "date": DAYS.map(date.isoformat),
    "date dd.mm.yyyy": st.builds(
        lambda day, padded: (
            day.strftime("%d.%m.%Y") if padded else f"{day.day}.{day.month}.{day.year}"
        ),
        DAYS,
        st.booleans(),
    ),
    "integer as string": st.builds(
        lambda n, sign: str(n * sign), NUMBERS, st.sampled_from([1, -1])
    ),
    "digits with leading zero": NUMBERS.map(lambda n: f"0{n}"),
    "digits with plus sign": NUMBERS.map(lambda n: f"+47{n}"),
    "decimal as string": st.builds(lambda n, f: f"{n}.{f}", NUMBERS, st.integers(0, 999)),
    "e-mail": st.sampled_from(["ola.nordmann@firma.no", "kari@example.com", "a.b@c.de"]),
    "text": st.sampled_from(["storfamilie", "Åse Ødegård", "Manual update", "Ja takk, 3 stk"]),
    "boolean as string": st.sampled_from(["ja", "nei", "true", "False", "YES"]),
    "crm type": st.sampled_from(["B2C", "B2B"]),
}


def tagged(cls, values):
    return values.map(lambda value: (cls, value))


other_string_values = st.one_of([tagged(cls, values) for cls, values in OTHER_STRINGS.items()])


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(date_time_values(), other_string_values))
def test_format_classes_and_stand_ins(case):
    cls, value = case
    assert cls in STRING_CLASSES
    assert format_class(value) == cls, value
    stand_in = StandIns().stand_in(value)
    assert format_class(stand_in) == cls, (value, stand_in)
    assert length_class(stand_in) == length_class(value)
    if cls not in TINY_CLASSES:
        assert stand_in != value


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=100_000, max_value=999_999), unique=True, max_size=200))
def test_stand_ins_keep_ids_distinct_and_consistent(ids):
    stand_ins = StandIns()
    texts = [str(i) for i in ids]
    first = [stand_ins.stand_in(text) for text in texts]
    again = [stand_ins.stand_in(text) for text in reversed(texts)]
    assert first == list(reversed(again))  # the same value, the same stand-in
    assert len(set(first)) == len(first)  # different values, different stand-ins
    assert all(format_class(s) == "integer as string" and len(str(s)) == 6 for s in first)


def test_format_classes_of_the_notes_examples():
    assert format_class("2020-02-12T10:27:06.477+0100") == "date-time, offset without colon"
    assert format_class("2018-11-27 09:24") == "local minute"
    assert format_class("2020-02-12") == "date"
    assert format_class("481846") == "integer as string"
    assert format_class("233.0") == "decimal as string"
    assert format_class("+4795499097") == "digits with plus sign"
    assert format_class("") == "empty string"
    assert format_class("storfamilie") == "text"
    assert format_class("2020-02-30") == "text"  # not a date the tap can read
    assert format_class(233) == "integer"
    assert format_class(None) == "null"


# --- nothing recoverable ----------------------------------------------------------------


def probe_fixtures(server, tmp_path, name, config=None):
    fixtures = tmp_path / name
    run = run_tap(config or probe_config(server), tmp_path, f"--probe={fixtures}")
    assert run.returncode == 0, run.stderr[-2000:]
    return fixtures


def fixture_rows(fixtures, stream):
    body = json.loads((fixtures / f"{stream}.json").read_text(encoding="utf-8"))["body"]
    return body if isinstance(body, list) else body["results"]


def dates_of(rows, originals):
    """(original, stand-in) of every value of the date class, both as dates."""
    pairs = set()
    for original, stand_in in zip(originals, rows, strict=True):
        for name, value in original.items():
            if format_class(value) == "date":
                pairs.add((date.fromisoformat(value), date.fromisoformat(stand_in[name])))
    return pairs


@pytest.fixture
def birth_dates(simulator):
    fields = [CustomField(64, "Fødselsdato", "date"), CustomField(90, "Poeng", "integer")]
    return simulator([plain_assignment(7, 40, custom_fields=fields)], page_size=40)


def test_no_constant_shift_gives_the_dates_back(birth_dates, tmp_path):
    """Knowing one birth date (or the code) must not give the others back: neither one
    shift for every date of a fixture, nor the same stand-ins on every run."""
    originals = birth_dates.customers(7)
    config = config_for(birth_dates, [7])
    first = fixture_rows(probe_fixtures(birth_dates, tmp_path, "first", config), "customers")
    second = fixture_rows(probe_fixtures(birth_dates, tmp_path, "second", config), "customers")
    pairs = dates_of(first, originals)
    assert len({original for original, _ in pairs}) >= 10
    shifts = {stand_in - original for original, stand_in in pairs}
    assert len(shifts) > len(pairs) // 2, shifts
    assert dates_of(second, originals) != pairs
    assert first != second


def test_every_stand_in_comes_from_a_secret_of_the_run():
    texts = ["2020-02-12", "12.05.1970", "481846", "Åse Ødegård", "2020-02-12T10:27:06+0100"]
    runs = [[StandIns().stand_in(text) for text in texts] for _ in range(3)]
    assert runs[0] != runs[1] != runs[2]
    for i, text in enumerate(texts):
        assert len({run[i] for run in runs}) > 1, text


def test_the_apis_own_vocabulary_stays_as_sent(server, tmp_path):
    """What tells the tap how to read the rest is no one's data: metadata types, the
    fields they describe, CRM types. With them scrambled, a fixture reads otherwise."""
    fixtures = probe_fixtures(server, tmp_path, "fixtures")
    metadata = fixture_rows(fixtures, "crm_custom_fields")
    originals = [
        {"id": 64, "type": "text", "lookup__id": "crm__custom_info__64"},
        {"id": 90, "type": "integer", "lookup__id": "crm__custom_info__90"},
    ]
    assert [
        {name: row[name] for name in ("id", "type", "lookup__id")} for row in metadata
    ] == originals
    assert all(row["key"] not in ("Adresse", "Poeng") for row in metadata)
    products = fixture_rows(fixtures, "crm_product_registrations")
    assert {row["campaign__crm_type"] for row in products} == {"B2C"}


def test_a_probe_dir_that_cannot_be_made_fails_with_one_line(server, tmp_path):
    run = run_tap(probe_config(server), tmp_path, "--probe=/dev/null/sub")
    assert run.returncode == 1, run.stderr[-2000:]
    line = run.last_stderr_line
    assert line.startswith("tap-cube: error: --probe=/dev/null/sub"), line
    assert [x for x in run.stderr.splitlines() if "error" in x.lower()] == [line]
    assert "unexpected" not in line
    assert "directory" in line
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+0100", "9999-12-31 23:59", "0001-01-01", "31.12.9999"]
)
def test_values_at_the_edges_get_stand_ins_of_their_class(value):
    stand_in = StandIns().stand_in(value)
    assert format_class(stand_in) == format_class(value), stand_in
    assert stand_in != value
