"""The tap against Cube's integration notes: every example response of every version.

The fixtures (tests/fixtures/notes/) are the notes' example bodies, typos repaired; the
simulator serves each verbatim, and the installed tap must read it: exit 0, and every
documented field in its column, with the same or a losslessly converted value, or kept
in `_cube_unparsed`. Two runs per fixture:

- for an example that shows part of a longer list, its rows as a whole list (`count` =
  the rows shown, no `next`): the rows, whatever the example's links say;
- the example verbatim as page 1 of its list: the rows it elides are served on the pages
  after it, so the run must follow the example's own `next` link (or, where that link
  is unusable, go on by page number) and deliver all `count` rows.

Shapes older than the `crm__` names (2016-2018, and the 2019 drafts) have no field the
stream can key a row by: reading them must end with one line saying so, never with rows
lost silently.
"""

from __future__ import annotations

import json
import typing as t

import pytest

from tap_cube.records.converters import CONVERTERS, UNFIT, kind_of, to_date_time
from tests.conftest import TOKEN, run_tap
from tests.notes import (
    EXTRA_COLUMNS,
    KEY_FIELD,
    OSLO,
    REPORTS_DIR,
    SERIES,
    NotesFixture,
    load_fixtures,
    same_instant,
    world,
)

FIXTURES = load_fixtures()
READ = [f for f in FIXTURES if f.stream is not None]


def _params(fixtures: list[NotesFixture]) -> list[t.Any]:
    return [pytest.param(fixture, id=fixture.id) for fixture in fixtures]


def _run(simulator, tmp_path, fixture: NotesFixture, body: t.Any, **settings: t.Any):
    found = world(fixture)
    sim = simulator(found.assignments, crms=found.crms)
    empty: dict[str, t.Any] = {"count": 0, "next": None, "previous": None, "results": []}
    for path in found.empty:
        sim.serve(path, json.dumps(empty))
    sim.serve(fixture.path, json.dumps(body, ensure_ascii=False), window=fixture.window)
    config = {"api_url": sim.url, "auth_token": TOKEN, "max_retry_wait": 0.01}
    config.update({**found.settings, **settings})
    return run_tap(config, tmp_path)


def assert_kept(row: dict[str, t.Any], record: dict[str, t.Any], schema: dict[str, t.Any]):
    """Every field of `row` is in `record`: in its column, as sent or converted without
    loss, or as sent in _cube_unparsed; and every field has a column of its own, so
    that only a value its column cannot hold is in _cube_unparsed."""
    unparsed = record.get("_cube_unparsed") or {}
    for field, sent in row.items():
        assert_has_column(field, sent, schema)
        if field in unparsed:
            assert unparsed[field] == sent, field
            assert record.get(field) is None, field
            continue
        column = next((c for c in EXTRA_COLUMNS if field.startswith(c + "__")), None)
        if column is not None:
            assert (record[column] or {}).get(field[len(column) + 2 :]) == sent, field
            continue
        assert field in record, f"{field} = {sent!r} was lost"
        emitted = record[field]
        if emitted == sent:
            continue
        kind, _ = kind_of(schema["properties"][field])
        if kind == "date-time":
            assert isinstance(sent, str), field
            assert same_instant(sent, emitted), (field, sent, emitted)
            assert emitted == to_date_time(sent, OSLO), field
        elif isinstance(sent, str) and not sent.strip() and kind != "text":
            assert emitted is None, field  # "" says no more than null
        else:
            assert emitted == CONVERTERS[kind](sent), (field, sent, emitted)


def assert_has_column(field: str, sent: t.Any, schema: dict[str, t.Any]) -> None:
    """A documented field has its own column (or, for a free-form label, its object
    column), and only a value that column cannot hold is kept in _cube_unparsed."""
    properties = schema["properties"]
    column = next((c for c in EXTRA_COLUMNS if field.startswith(c + "__")), field)
    assert column in properties, f"{field} has no column: its values go to _cube_unparsed"
    if column != field or sent is None:
        return
    kind, _ = kind_of(properties[field])
    fits = CONVERTERS[kind](sent) is not UNFIT if kind in CONVERTERS else True
    blank = isinstance(sent, str) and not sent.strip()
    if kind == "date-time":
        fits = to_date_time(sent, OSLO) is not UNFIT
    # Every documented value fits its column (a blank is null there): none of them is
    # kept in _cube_unparsed for want of a column of the right type.
    assert fits or blank, (field, sent, kind)


#: Examples that show part of a longer list: their rows alone are a run of their own.
PARTIAL = [f for f in READ if f.keyed and f.is_page and f.count > len(f.rows)]


@pytest.mark.parametrize("fixture", _params(PARTIAL))
def test_every_documented_row_is_read(simulator, tmp_path, fixture: NotesFixture):
    rows = fixture.rows
    run = _run(simulator, tmp_path, fixture, _rows_alone(fixture))
    assert run.returncode == 0, run.stderr
    records = run.records(t.cast("str", fixture.stream))
    assert len(records) == len(rows)
    schema = run.schema(t.cast("str", fixture.stream))
    for row, record in zip(rows, records, strict=True):
        assert_kept(row, record, schema)


@pytest.mark.parametrize("fixture", _params(READ + load_fixtures(REPORTS_DIR)))
def test_every_example_is_read_verbatim(simulator, tmp_path, fixture: NotesFixture):
    # Page 1 holds the rows the example shows, fewer than the pages after it: page numbers
    # cannot be predicted from it (as from a real server's), so its links are followed
    # one page at a time.
    run = _run(simulator, tmp_path, fixture, fixture.body, max_concurrent_requests=1)
    if not fixture.keyed:
        # Older shapes: no field to key a row by. One line says so; nothing is loaded.
        assert run.returncode == 1, run.stderr
        assert run.last_stderr_line.startswith("tap-cube: error: "), run.stderr
        assert KEY_FIELD[t.cast("str", fixture.stream)] in run.last_stderr_line
        assert run.records(t.cast("str", fixture.stream)) == []
        return
    if fixture.elides_without_link:
        # `count` announces rows no link leads to: the run must say so, not succeed.
        assert run.returncode == 1, run.stderr
        assert f"of the {fixture.count} records" in run.last_stderr_line
        return
    assert run.returncode == 0, run.stderr
    records = run.records(t.cast("str", fixture.stream))
    assert len(records) == fixture.count
    schema = run.schema(t.cast("str", fixture.stream))
    for row, record in zip(fixture.rows, records, strict=False):
        assert_kept(row, record, schema)


def test_the_fixtures_cover_every_stream_and_both_eras():
    """Each stream has examples to be held against, from before and after February 2020."""
    streams = {f.stream for f in READ}
    assert streams >= {
        "customers",
        "crm_customers",
        "customer_custom_fields",
        "crm_custom_fields",
        "callflow_customers",
        "crm_callflow_customers",
        "campaigns",
        *SERIES,
    }
    years = {f.source["date"][:4] for f in READ}
    assert {"2019", "2020", "2022", "2024"} <= years


def test_metadata_naming_its_type_data_type_types_the_field():
    """CustomerCustomFields.md of November 2021 names `type` `data__type`."""
    from tap_cube.streams.schema import type_of_metadata

    assert type_of_metadata({"id": 64, "data__type": "integer"}) == "integer"
    assert type_of_metadata({"id": 64, "type": "date", "data__type": "text"}) == "date"


def _newest_per_stream() -> dict[str, NotesFixture]:
    newest: dict[str, NotesFixture] = {}
    for fixture in sorted(READ, key=lambda f: f.source["date"]):
        if fixture.keyed and not fixture.draft and not fixture.elides_without_link:
            newest[t.cast("str", fixture.stream)] = fixture
    return newest


NEWEST = _newest_per_stream()


def _rows_alone(fixture: NotesFixture) -> t.Any:
    """The example's rows as the whole list."""
    if not fixture.is_page:
        return fixture.body
    return {"count": len(fixture.rows), "next": None, "previous": None, "results": fixture.rows}


@pytest.mark.parametrize(
    "verbatim",
    [
        pytest.param(False, id="rows"),
        pytest.param(True, id="verbatim"),
    ],
)
def test_one_run_reads_the_newest_example_of_every_stream(simulator, tmp_path, verbatim):
    """All streams at once, as a tenant would run them: every row of every example (its
    rows alone, and verbatim with the rows it elides)."""
    worlds = {stream: world(fixture) for stream, fixture in NEWEST.items()}
    assignments = {a.id: a for w in worlds.values() for a in w.assignments}
    crms = {(c.data_owner_id, c.crm_type): c for w in worlds.values() for c in w.crms}
    sim = simulator(list(assignments.values()), crms=list(crms.values()))
    empty: dict[str, t.Any] = {"count": 0, "next": None, "previous": None, "results": []}
    for path in {path for w in worlds.values() for path in w.empty}:
        sim.serve(path, json.dumps(empty))
    campaigns: set[int] = set()
    for w in worlds.values():
        campaigns.update(w.settings.get("campaign_ids", []))
    for campaign in campaigns:
        for series in ("call_outcomes", "product_registrations"):
            sim.serve(f"/campaigns/{campaign}/{series}/", json.dumps(empty))
    for fixture in NEWEST.values():
        body = fixture.body if verbatim else _rows_alone(fixture)
        sim.serve(fixture.path, json.dumps(body, ensure_ascii=False), fixture.window)
    starts = [w.settings["start_date"] for w in worlds.values() if "start_date" in w.settings]
    config = {
        "api_url": sim.url,
        "auth_token": TOKEN,
        "max_retry_wait": 0.01,
        "max_concurrent_requests": 1,
        "assignment_ids": sorted(assignments),
        "crms": [{"data_owner_id": o, "crm_type": c} for o, c in sorted(crms)],
        "campaign_ids": sorted(campaigns),
        "start_date": min(starts),
        "call_outcomes_window_days": max(
            w.settings["call_outcomes_window_days"]
            for w in worlds.values()
            if "start_date" in w.settings
        ),
    }
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    for stream, fixture in NEWEST.items():
        partition = _partition_of(fixture)
        records = [
            r for r in run.records(stream) if all(r.get(k) == v for k, v in partition.items())
        ]
        assert len(records) == (fixture.count if verbatim else len(fixture.rows)), stream
        schema = run.schema(stream)
        for row, record in zip(fixture.rows, records, strict=False):
            assert_kept(row, record, schema)


def _partition_of(fixture: NotesFixture) -> dict[str, t.Any]:
    """The partition fields a record read from the fixture's path carries."""
    from tests.notes import crm_type_of, numbers

    ids = numbers(fixture.path)
    if fixture.stream == "campaigns":
        return {}
    if fixture.path.startswith("/assignments/"):
        return {"assignment_id": ids[0]}
    if fixture.path.startswith("/campaigns/"):
        return {"campaign_id": ids[0]}
    return {"data_owner_id": ids[0], "crm_type": crm_type_of(fixture.path)}
