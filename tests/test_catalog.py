"""A given catalog: the SCHEMA the tap emits always describes the records it emits.

Meltano caches the catalog of its last discovery, so a sync may get one discovered with
other settings (detect_deletions off) or by an older tap. Whatever the tap adds to records
itself (the partition's keys, `_sdc_deleted_at`) must then be in the SCHEMA as well, or a
target that builds its columns from the schema loses it; what cannot be reconciled stops
the run with one line.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from cube_simulator import demo_assignments
from tap_cube.records.deletions import DELETED_AT
from tests.conftest import config_for, plain_assignment, run_tap
from tests.test_coercion import validator_of
from tests.test_deletions import deletions, last_state, run_with_state

STREAMS = ("customers", "customer_custom_fields", "callflow_customers")


def root(stream: dict) -> dict:
    """The stream's own metadata (breadcrumb [])."""
    return next(m["metadata"] for m in stream["metadata"] if m["breadcrumb"] == [])


def discovered_catalog(config: dict, tmp_path, edit=None) -> str:
    """The catalog `--discover` gives for `config`, every stream selected, saved to a file."""
    run = run_tap(config, tmp_path, "--discover")
    assert run.returncode == 0, run.stderr
    catalog = json.loads(run.stdout)
    for stream in catalog["streams"]:
        root(stream)["selected"] = True
        if edit is not None:
            edit(stream)
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    return str(path)


def assert_records_match_schemas(run) -> None:
    """Every record validates against the latest SCHEMA of its stream, formats included."""
    schemas: dict[str, dict] = {}
    for message in run.messages:
        if message["type"] == "SCHEMA":
            schemas[message["stream"]] = message["schema"]
        elif message["type"] == "RECORD":
            schema = schemas[message["stream"]]
            record = message["record"]
            assert set(record) <= set(schema["properties"]), (message["stream"], record)
            errors = [e.message for e in validator_of(json.dumps(schema)).iter_errors(record)]
            assert not errors, (message["stream"], record, errors)


def test_deletions_turned_on_after_discovery_are_in_the_schema(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 700), plain_assignment(8, 200)])
    catalog = discovered_catalog(config_for(sim, [7, 8]), tmp_path)  # detect_deletions off
    with open(catalog) as f:
        assert DELETED_AT not in json.load(f)["streams"][0]["schema"]["properties"]

    config = config_for(sim, [7, 8], detect_deletions=True)
    first = run_tap(config, tmp_path, "--catalog", catalog)
    assert first.returncode == 0, first.stderr
    sim.set_count(7, 600, at="start")
    second = run_with_state(config, tmp_path, last_state(first), "--catalog", catalog)
    assert second.returncode == 0, second.stderr

    assert len(deletions(second)) == 100
    for stream in STREAMS:
        schema = second.schema(stream)
        assert schema["properties"][DELETED_AT] == {
            "type": ["string", "null"],
            "format": "date-time",
        }
    assert_records_match_schemas(first)
    assert_records_match_schemas(second)


def test_partition_keys_missing_from_a_catalog_are_in_the_schema(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 300)])
    config = config_for(sim, [7])

    def drop_assignment_id(stream: dict) -> None:
        stream["schema"]["properties"].pop("assignment_id", None)
        stream["metadata"] = [
            m for m in stream["metadata"] if "assignment_id" not in m["breadcrumb"]
        ]

    catalog = discovered_catalog(config, tmp_path, drop_assignment_id)
    run = run_tap(config, tmp_path, "--catalog", catalog)
    assert run.returncode == 0, run.stderr
    assert run.schema()["properties"]["assignment_id"]["type"] == "integer"
    assert {r["assignment_id"] for r in run.records()} == {7}
    assert_records_match_schemas(run)


@pytest.mark.parametrize(
    ("field", "declared", "problem"),
    [
        (DELETED_AT, {"type": "integer"}, "declares _sdc_deleted_at as integer"),
        ("assignment_id", {"type": ["string", "null"]}, "declares assignment_id as string"),
        # A deletion record carries only its key: every other column must allow null.
        (
            "crm__standard_info__name",
            {"type": "string"},
            "crm__standard_info__name may not be null",
        ),
    ],
)
def test_a_catalog_that_cannot_match_the_records_stops_the_run(
    simulator, tmp_path, field, declared, problem
):
    sim = simulator([plain_assignment(7, 300)])
    config = config_for(sim, [7], detect_deletions=True)

    def redeclare(stream: dict) -> None:
        if stream["tap_stream_id"] == "customers":
            stream["schema"]["properties"][field] = declared

    catalog = discovered_catalog(config, tmp_path, redeclare)
    run = run_tap(config, tmp_path, "--catalog", catalog)
    assert run.returncode == 1
    assert run.last_stderr_line.startswith("tap-cube: error: customers: the catalog ")
    assert problem in run.last_stderr_line
    assert "run discovery again" in run.last_stderr_line
    assert "Traceback" not in run.stderr
    assert run.records() == []


def test_an_unselected_stream_is_not_held_to_its_records(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 300)])
    config = config_for(sim, [7], detect_deletions=True)

    def unselect_and_break_callflow(stream: dict) -> None:
        if stream["tap_stream_id"] == "callflow_customers":
            root(stream)["selected"] = False
            stream["schema"]["properties"][DELETED_AT] = {"type": "integer"}

    catalog = discovered_catalog(config, tmp_path, unselect_and_break_callflow)
    run = run_tap(config, tmp_path, "--catalog", catalog)
    assert run.returncode == 0, run.stderr
    assert run.records("callflow_customers") == []
    assert len(run.records()) == 300


def drop_customer_id(stream: dict) -> None:
    """The catalog without the record id: neither in the schema nor in the metadata."""
    if stream["tap_stream_id"] == "customers":
        stream["schema"]["properties"].pop("crm__customer_id")
        stream["schema"]["required"] = [
            f for f in stream["schema"].get("required", []) if f != "crm__customer_id"
        ]
        stream["metadata"] = [
            m for m in stream["metadata"] if m["breadcrumb"] != ["properties", "crm__customer_id"]
        ]


def deselect_customer_id(stream: dict) -> None:
    """The catalog with the record id deselected, as an editor of the catalog may do."""
    if stream["tap_stream_id"] == "customers":
        for m in stream["metadata"]:
            if m["breadcrumb"] == ["properties", "crm__customer_id"]:
                m["metadata"].update(inclusion="available", selected=False)


def runs_without_the_record_id(simulator, tmp_path, edit, *, removed: int, **settings):
    """Two runs of 300 customers from a catalog `edit` made: the first, and one from its
    state after Cube removed the first `removed` customers."""
    sim = simulator([plain_assignment(7, 300)])
    config = config_for(sim, [7], **settings)
    catalog = discovered_catalog(config, tmp_path, edit)
    first = run_tap(config, tmp_path, "--catalog", catalog)
    assert first.returncode == 0, first.stderr
    if removed:
        sim.set_count(7, 300 - removed, at="start")
    second = run_with_state(config, tmp_path, last_state(first), "--catalog", catalog)
    assert second.returncode == 0, second.stderr
    return first, second


@pytest.mark.parametrize("edit", [drop_customer_id, deselect_customer_id])
def test_a_catalog_without_the_record_id_still_marks_deletions(simulator, tmp_path, edit):
    first, second = runs_without_the_record_id(
        simulator, tmp_path, edit, removed=50, detect_deletions=True
    )

    # Deletion records carry the key, so the target can match them to its rows.
    gone = deletions(second)
    assert len(gone) == 50
    assert all(r["crm__customer_id"] and r["assignment_id"] == 7 for r in gone)
    assert {r["crm__customer_id"] for r in gone} <= {r["crm__customer_id"] for r in first.records()}
    assert len({r["crm__customer_id"] for r in first.records()}) == 300
    assert second.schema()["properties"]["crm__customer_id"] == {"type": "string"}
    assert_records_match_schemas(first)
    assert_records_match_schemas(second)


@pytest.mark.parametrize("edit", [drop_customer_id, deselect_customer_id])
def test_a_catalog_without_the_record_id_still_skips_only_unchanged_rows(simulator, tmp_path, edit):
    first, second = runs_without_the_record_id(
        simulator, tmp_path, edit, removed=0, skip_unchanged=True
    )
    assert len({r["crm__customer_id"] for r in first.records()}) == 300
    assert second.records() == []
    assert_records_match_schemas(first)


def set_key(stream_id: str, key: list[str]):
    """A catalog edit giving `stream_id` another key, where a catalog states it."""

    def edit(stream: dict) -> None:
        if stream["tap_stream_id"] == stream_id:
            stream["key_properties"] = key
            root(stream)["table-key-properties"] = key

    return edit


@pytest.mark.parametrize(
    ("stream", "key", "needed"),
    [
        # ids are unique within one assignment only: two assignments' customers on one row
        ("customers", ["crm__customer_id"], '["assignment_id", "crm__customer_id"]'),
        ("callflow_customers", ["crm__customer_id"], '["assignment_id", "crm__customer_id"]'),
        ("customer_custom_fields", ["id"], '["assignment_id", "id"]'),
        # a target with no key appends: deletion records match no row
        ("customers", [], '["assignment_id", "crm__customer_id"]'),
        # a changed name would be another row, and the old one would stay live
        (
            "customers",
            ["assignment_id", "crm__customer_id", "crm__standard_info__name"],
            '["assignment_id", "crm__customer_id"]',
        ),
    ],
)
def test_a_catalog_key_that_is_not_the_records_key_stops_the_run(
    simulator, tmp_path, stream, key, needed
):
    sim = simulator([plain_assignment(7, 300), plain_assignment(8, 300)])
    config = config_for(sim, [7, 8], detect_deletions=True)
    catalog = discovered_catalog(config, tmp_path, set_key(stream, key))
    run = run_tap(config, tmp_path, "--catalog", catalog)
    assert run.returncode == 1
    line = run.last_stderr_line
    assert line.startswith(f"tap-cube: error: {stream}: the catalog's key_properties ")
    assert json.dumps(key) in line
    assert needed in line
    assert "run discovery again" in line
    assert "Traceback" not in run.stderr
    assert [m for m in run.messages if m["type"] in ("RECORD", "STATE")] == []


def test_the_records_key_in_another_order_is_accepted(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 30)])
    config = config_for(sim, [7])
    catalog = discovered_catalog(
        config, tmp_path, set_key("customers", ["crm__customer_id", "assignment_id"])
    )
    run = run_tap(config, tmp_path, "--catalog", catalog)
    assert run.returncode == 0, run.stderr
    assert len(run.records()) == 30


@pytest.mark.parametrize(
    ("stream", "key", "needed"),
    [
        ("customers", ["crm__customer_id"], '["assignment_id", "crm__customer_id"]'),
        # call outcomes have no id: several rows of one customer share campaign and customer
        (
            "call_outcomes",
            ["campaign_id", "crm__customer_id"],
            '["campaign_id", "crm__customer_id", '
            '"call_outcome__report_as__submitted_when_timestamp", "submission_seq"]',
        ),
    ],
)
def test_a_stream_map_key_that_is_not_the_records_key_stops_the_run(
    simulator, tmp_path, today, stream, key, needed
):
    sim = simulator(demo_assignments(), outcomes_start=today - timedelta(days=3))
    config = config_for(
        sim,
        [101],
        start_date=(today - timedelta(days=3)).isoformat(),
        campaign_ids=[2021],
        stream_maps={stream: {"__alias__": "renamed", "__key_properties__": key}},
    )
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    line = run.last_stderr_line
    assert line.startswith(
        f"tap-cube: error: {stream}: the stream map's __key_properties__ {json.dumps(key)} "
    )
    assert "renamed" in line
    assert needed in line
    assert "Traceback" not in run.stderr
    assert [m for m in run.messages if m["type"] in ("RECORD", "STATE")] == []


@pytest.mark.parametrize("field", ["crm__customer_id", "submission_seq"])
@pytest.mark.parametrize("how", ["dropped", "deselected"])
def test_call_outcomes_keep_their_key_whatever_the_catalog_says(
    simulator, tmp_path, today, field, how
):
    """Call outcomes have no id: every field of their key is kept like a record id."""
    sim = simulator(demo_assignments(), outcomes_start=today - timedelta(days=3))
    config = config_for(
        sim, [101], start_date=(today - timedelta(days=3)).isoformat(), campaign_ids=[2021]
    )

    def edit(stream: dict) -> None:
        if stream["tap_stream_id"] != "call_outcomes":
            return
        breadcrumb = ["properties", field]
        if how == "dropped":
            stream["schema"]["properties"].pop(field)
            stream["metadata"] = [m for m in stream["metadata"] if m["breadcrumb"] != breadcrumb]
        else:
            for m in stream["metadata"]:
                if m["breadcrumb"] == breadcrumb:
                    m["metadata"].update(inclusion="available", selected=False)

    run = run_tap(config, tmp_path, "--catalog", discovered_catalog(config, tmp_path, edit))
    assert run.returncode == 0, run.stderr
    outcomes = run.records("call_outcomes")
    assert outcomes
    assert all(field in record for record in outcomes)
    key = run.schema("call_outcomes")["properties"]
    assert field in key
    assert_records_match_schemas(run)
