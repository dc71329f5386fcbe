"""Streams as data: adding a stream is one row of the stream table and its schema, as
docs/development.md's recipe "Add a stream" says; and a row that discovery cannot build
stops the import of the table, instead of a stream that is offered and never built."""

from __future__ import annotations

import json
import typing as t
from dataclasses import replace

import pytest

from cube_simulator import demo_assignments
from tap_cube.records.coercion import CATCH_ALL_PROPERTY
from tap_cube.records.converters import INT64_MAX
from tap_cube.streams.partitions import ASSIGNMENTS, WHOLE, Partitions
from tap_cube.streams.schema import CALLFLOW_PROPERTIES
from tap_cube.streams.specs import (
    STREAM_SPECS,
    Extends,
    SchemaSource,
    SpecError,
    StreamSpec,
    spec_named,
    stream_table,
)
from tap_cube.tap import TapCube
from tests.conftest import config_for, selecting

# The recipe's row: a list of labels at a path the simulator routes (its answer is
# served below), read whole, keyed by `id`, with a schema given in full.
TOY = StreamSpec(
    name="toy_labels",
    path="/call_outcomes/",
    partitions=WHOLE,
    key=("id",),
    properties={
        "id": {"type": "integer"},
        "label": {"type": ["string", "null"]},
        **CATCH_ALL_PROPERTY,
    },
)


class ToyTap(TapCube):
    """The tap with the recipe's row added to its table."""

    stream_specs = stream_table(*STREAM_SPECS, TOY)


LABELS: list[dict[str, t.Any]] = [
    {"id": 1, "label": "Ja takk"},
    {"id": 2, "label": "Nei"},
    {"id": 3, "label": None},
]


def test_a_stream_added_by_one_row_is_discovered_and_read(simulator, capsys):
    sim = simulator(demo_assignments())
    page = {"count": len(LABELS), "next": None, "previous": None, "results": LABELS}
    sim.serve(TOY.path, json.dumps(page))
    config = config_for(sim, [303])

    catalog = json.loads(ToyTap(config=config).catalog_json_text)
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == TOY.name)
    assert set(entry["schema"]["properties"]) >= {"id", "label"}
    assert entry["key_properties"] == ["id"]
    capsys.readouterr()

    ToyTap(config=config, catalog=selecting(catalog, TOY.name)).sync_all()
    messages = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert records == LABELS
    assert {m["stream"] for m in messages if m["type"] == "RECORD"} == {TOY.name}


def test_a_stream_added_by_one_row_reads_every_page_of_its_list(simulator, capsys):
    """Its list in three pages of 500 as DRF numbers them: the first served as given,
    linking to page 2, and the 750 rows it elides on pages 2 and 3, as the simulator
    serves a documented example's."""
    sim = simulator(demo_assignments())
    first = [{**LABELS[n % len(LABELS)], "id": n + 1} for n in range(500)]
    page = {"count": 1250, "next": f"{sim.url}{TOY.path}?page=2", "previous": None}
    sim.serve(TOY.path, json.dumps({**page, "results": first}))
    config = config_for(sim, [303])
    catalog = selecting(json.loads(ToyTap(config=config).catalog_json_text), TOY.name)
    capsys.readouterr()

    ToyTap(config=config, catalog=catalog).sync_all()
    messages = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert len(records) == 1250
    assert records[:500] == first
    assert len({r["id"] for r in records}) == 1250
    assert {r["label"] for r in records} == {r["label"] for r in LABELS}
    pages = {r.query for r in sim.requests if r.path.rstrip("/").endswith("/call_outcomes")}
    assert {"page=2", "page=3"} <= pages


CUSTOMERS = spec_named("customers")
UNBUILDABLE = {
    "a schema source discovery does not know": replace(
        TOY, schema_source=t.cast("SchemaSource", "static")
    ),
    "partitions of no known kind": replace(TOY, partitions=t.cast("Partitions", "whole")),
    "a path without its partition's fields": replace(TOY, partitions=ASSIGNMENTS),
    "a key not among its properties": replace(TOY, key=("label_id",)),
    "deletions tracked by a key of two fields": replace(
        TOY, key=("id", "label"), tracks_deletions=True
    ),
    "a schema built on a stream no row names": replace(
        CUSTOMERS, name="toy_flow", schema_source=Extends("toy_customers", CALLFLOW_PROPERTIES)
    ),
    "a schema built on a stream offered with other settings": replace(
        TOY, schema_source=Extends("customers", CALLFLOW_PROPERTIES)
    ),
    "a schema built on itself": replace(
        CUSTOMERS, name="toy_flow", schema_source=Extends("toy_flow", CALLFLOW_PROPERTIES)
    ),
    "a name another row has": replace(TOY, name="customers"),
}


@pytest.mark.parametrize("row", UNBUILDABLE.values(), ids=UNBUILDABLE.keys())
def test_a_row_discovery_cannot_build_is_refused_when_the_table_is_made(row):
    with pytest.raises(SpecError, match=rf"^stream '{row.name}' cannot be built: "):
        stream_table(*STREAM_SPECS, row)


def test_the_tables_rows_are_all_built_when_their_needs_are_met():
    config = {
        "api_url": "https://cube.example/api/v1",
        "auth_token": "t" * 40,
        "assignment_ids": [7],
        "discover_crms": True,
        "start_date": "2024-01-01",
    }
    every = {
        "streams": [
            {
                "tap_stream_id": spec.name,
                "stream": spec.name,
                "schema": {"type": "object", "properties": {}},
                "metadata": [],
            }
            for spec in ToyTap.stream_specs
        ]
    }
    # Given a catalog, the tap makes no request to find its streams.
    assert set(ToyTap(config=config, catalog=every).streams) == {
        spec.name for spec in ToyTap.stream_specs
    }


def test_each_stream_has_a_schema_of_its_own():
    """Making a stream bounds its integers and adds its key: in its own copy, never in
    the table's columns, which every stream of every run shares."""
    config = {"api_url": "https://cube.example/api/v1", "auth_token": "t" * 40}
    made = [TapCube(config=config, catalog={"streams": []}).streams["campaigns"] for _ in "ab"]
    assert made[0].schema is not made[1].schema
    assert made[0].schema["properties"]["campaign__id"]["maximum"] == INT64_MAX
    assert "maximum" not in spec_named("campaigns").properties["campaign__id"]
