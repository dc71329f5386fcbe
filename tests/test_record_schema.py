"""Every stream's records fit the SCHEMA the tap emitted, and no value the server sent is lost.

The tap runs as Meltano runs it, against a simulator whose assignment carries odd values
in its typed custom fields (numbers as text, Norwegian dates, "Ja", impossible dates).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

from cube_simulator import Assignment, Crm, CustomField
from tap_cube.records.coercion import CATCH_ALL
from tests.conftest import config_for, cube_today, run_tap
from tests.test_coercion import assert_fits_and_keeps

FIELDS = [
    CustomField(64, "Adresse", "text"),
    CustomField(70, "Antall i husstanden", "integer"),
    CustomField(71, "Fødselsdato", "date"),
    CustomField(72, "Reservert mot telefonsalg", "boolean"),
    CustomField(73, "Kundetype", "choice"),
]
STREAMS = (
    "customers",
    "customer_custom_fields",
    "callflow_customers",
    "crm_customers",
    "crm_custom_fields",
    "crm_callflow_customers",
    "campaigns",
    "call_outcomes",
)


def messy_simulator(simulator):
    return simulator(
        [Assignment(9, 1500, custom_fields=FIELDS, messy=True), Assignment(10, 600, FIELDS)],
        crms=[Crm(3, "B2C", 300, custom_fields=FIELDS)],
        outcomes_start=cube_today() - timedelta(days=3),
    )


def warnings_about(stderr: str, stream: str, field: str) -> list[str]:
    pattern = re.compile(rf"(?<!\w){stream}: .* of {field}\b")
    return [line for line in stderr.splitlines() if pattern.search(line)]


def test_every_stream_fits_its_schema_and_keeps_odd_values(simulator, tmp_path):
    sim = messy_simulator(simulator)
    config = config_for(
        sim,
        [9, 10],
        crms=[{"data_owner_id": 3, "crm_type": "B2C"}],
        start_date=str(cube_today() - timedelta(days=3)),
    )
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    emitted = {m["stream"] for m in run.messages if m["type"] == "SCHEMA"}
    assert emitted >= set(STREAMS)
    for stream in emitted:  # streams added later are held to the same rule
        schema = run.schema(stream)
        assert CATCH_ALL in schema["properties"], stream
        records = run.records(stream)
        assert records, stream
        for record in records:
            assert_fits_and_keeps(schema, {}, record)

    # The campaigns' documented attributes (both eras) all have columns of their own.
    campaigns = run.records("campaigns")
    assert {r.get("campaign__crm_type") for r in campaigns} == {None, "B2C"}
    assert all(r.get(CATCH_ALL) is None for r in campaigns)

    served = {c["crm__customer_id"]: c for c in sim.customers(9)}
    customers = [r for r in run.records() if r["assignment_id"] == 9]
    assert len(customers) == len(served)
    schema = run.schema()
    for record in customers:
        assert_fits_and_keeps(schema, served[record["crm__customer_id"]], record)
    kept = [r[CATCH_ALL] for r in customers if r.get(CATCH_ALL)]
    # Text fields take numbers and booleans as text; only typed fields keep values aside.
    assert {name for row in kept for name in row} == {
        "crm__custom_info__70",
        "crm__custom_info__71",
        "crm__custom_info__72",
    }
    # Convertible odd values went to their columns, not to the catch-all.
    assert any(served[r["crm__customer_id"]]["crm__custom_info__70"] == "12" for r in customers)
    assert all(row.get("crm__custom_info__70") != "12" for row in kept)
    assert not any(r.get(CATCH_ALL) for r in run.records() if r["assignment_id"] == 10)

    # One warning per field and partition, with the count of values kept aside.
    for field in ("crm__custom_info__70", "crm__custom_info__71", "crm__custom_info__72"):
        lines = warnings_about(run.stderr, "customers", field)
        assert len(lines) == 1, lines
        count = int(re.search(r"(\d+) values? of", lines[0])[1])  # type: ignore[index]
        assert count == sum(1 for row in kept if field in row)
        assert "assignment 9" in lines[0]
        assert "run discovery again" not in lines[0]


def test_fields_added_after_discovery_are_kept(simulator, tmp_path):
    sim = simulator([Assignment(9, 700, custom_fields=FIELDS)])
    config = config_for(sim, [9])
    discovered = run_tap(config, tmp_path, "--discover")
    assert discovered.returncode == 0, discovered.stderr
    catalog = json.loads(discovered.stdout)
    for stream in catalog["streams"]:
        stream["metadata"][0]["metadata"]["selected"] = True  # breadcrumb [] comes first
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))

    sim.update_customer(9, "100650", {"crm__custom_info__99": "ny verdi"})
    sim.update_campaign(91, {"campaign__budget": 125000})
    run = run_tap(config, tmp_path, "--catalog", str(tmp_path / "catalog.json"))
    assert run.returncode == 0, run.stderr

    customer = next(r for r in run.records() if r["crm__customer_id"] == "100650")
    assert customer[CATCH_ALL] == {"crm__custom_info__99": "ny verdi"}
    (line,) = warnings_about(run.stderr, "customers", "crm__custom_info__99")
    assert "1 value of crm__custom_info__99, a field not in the schema, kept as sent" in line
    assert "run discovery again to give it a column" in line  # discovery would find it

    campaign = next(r for r in run.records("campaigns") if r["campaign__id"] == 91)
    assert campaign[CATCH_ALL] == {"campaign__budget": 125000}
    (line,) = warnings_about(run.stderr, "campaigns", "campaign__budget")
    assert "run discovery again" not in line  # campaigns have a fixed schema


def test_a_catalog_without_the_catch_all_still_fits(simulator, tmp_path):
    """A catalog saved before the catch-all existed: values are left out, with advice."""
    sim = simulator([Assignment(9, 300, custom_fields=FIELDS, messy=True)])
    config = config_for(sim, [9])
    discovered = run_tap(config, tmp_path, "--discover")
    catalog = json.loads(discovered.stdout)
    for stream in catalog["streams"]:
        del stream["schema"]["properties"][CATCH_ALL]
        stream["metadata"] = [m for m in stream["metadata"] if CATCH_ALL not in m["breadcrumb"]]
        stream["metadata"][0]["metadata"]["selected"] = True
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    run = run_tap(config, tmp_path, "--catalog", str(tmp_path / "catalog.json"))
    assert run.returncode == 0, run.stderr
    schema = run.schema()
    assert CATCH_ALL not in schema["properties"]
    for record in run.records():
        assert CATCH_ALL not in record
        assert_fits_and_keeps({**schema, "properties": schema["properties"]}, {}, record)
    (line,) = warnings_about(run.stderr, "customers", "crm__custom_info__70")
    assert "run discovery again to keep such values in _cube_unparsed" in line


def test_every_integer_declares_the_bigint_range(simulator, tmp_path):
    """Without bounds, pipelinewise-target-postgres makes integers `numeric` and target-duckdb
    `HUGEINT`; the range of int64 (which coerce() keeps to) makes them `bigint` in every
    target tested (see the README's Targets)."""
    sim = messy_simulator(simulator)
    config = config_for(
        sim,
        [9, 10],
        crms=[{"data_owner_id": 3, "crm_type": "B2C"}],
        start_date=str(cube_today() - timedelta(days=3)),
        detect_deletions=True,
    )
    run = run_tap(config, tmp_path, "--discover")
    assert run.returncode == 0, run.stderr
    integers = [
        (stream["stream"], name, prop)
        for stream in json.loads(run.stdout)["streams"]
        for name, prop in stream["schema"]["properties"].items()
        if "integer" in prop.get("type", ())
    ]
    assert {stream for stream, _, _ in integers} >= set(STREAMS)
    for stream, name, prop in integers:
        assert (prop.get("minimum"), prop.get("maximum")) == (-(2**63), 2**63 - 1), (stream, name)


def test_flattening_turns_the_catch_all_into_json_text(simulator, tmp_path):
    """The CSV workaround: with the SDK's flattening on, `_cube_unparsed` leaves the tap as
    JSON text, which target-csv writes as is (it writes an object as a Python repr).

    It relies on the catch-all declaring no `properties`: an object with `properties: {}`
    would be flattened into no column at all, and its values lost.
    """
    sim = simulator([Assignment(9, 600, custom_fields=FIELDS, messy=True)])
    config = config_for(sim, [9], flattening_enabled=True, flattening_max_depth=1)
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.schema()["properties"][CATCH_ALL] == {"type": ["string", "null"]}
    served = {c["crm__customer_id"]: c for c in sim.customers(9)}
    kept = [r for r in run.records() if r.get(CATCH_ALL)]
    assert kept
    for record in kept:
        values = json.loads(record[CATCH_ALL])
        original = served[record["crm__customer_id"]]
        assert values == {name: original[name] for name in values}
