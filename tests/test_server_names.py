"""Fields the server names like the tap's own: the tap's value in the column, the server's
kept in `_cube_unparsed`, none lost."""

from __future__ import annotations

import json

from cube_simulator import Crm, CustomField
from tests.conftest import config_for, plain_assignment, run_tap


def page(*rows: dict) -> str:
    return json.dumps({"count": len(rows), "next": None, "previous": None, "results": list(rows)})


def test_product_row_own_fields_are_kept(simulator, tmp_path, today):
    fields = [CustomField(64, "Adresse", "text")]
    sim = simulator([], crms=[Crm(data_owner_id=3, crm_type="B2C", count=5, custom_fields=fields)])
    when = f"{today.isoformat()}T10:27:06+01:00"
    row = {
        "crm__customer_id": "5",
        "call_outcome__report_as__submitted_when_timestamp": when,
        "call_outcome__extra": "the server's own",
        "call_outcome__extra__Note": "x",
        "product__extra": {"a": 1},
        "product__extra__Colour": "red",
        "submission_seq": 99,
        "data_owner_id": 42,
        "crm_type": "B2B",
        "_sdc_deleted_at": "2020-01-01T00:00:00+00:00",
    }
    config = config_for(
        sim,
        [],
        crms=[{"data_owner_id": 3, "crm_type": "B2C"}],
        start_date=today.isoformat(),
    )
    catalog = tmp_path / "catalog.json"
    discovered = run_tap(config, tmp_path, "--discover")
    assert discovered.returncode == 0, discovered.stderr
    streams = json.loads(discovered.stdout)
    for entry in streams["streams"]:
        for item in entry["metadata"]:
            if not item["breadcrumb"]:
                item["metadata"]["selected"] = entry["tap_stream_id"] == "crm_product_registrations"
    catalog.write_text(json.dumps(streams))
    sim.fail_next("/data_owners/3/crm/B2C/product_registrations/", 200, page(row), times=1)
    run = run_tap(config, tmp_path, "--catalog", str(catalog))
    assert run.returncode == 0, run.stderr
    [record] = run.records("crm_product_registrations")
    assert record["data_owner_id"] == 3
    assert record["crm_type"] == "B2C"
    assert record["submission_seq"] == 1
    assert record["call_outcome__extra"] == {"Note": "x"}
    assert record["product__extra"] == {"Colour": "red"}
    assert record["_cube_unparsed"] == {
        "call_outcome__extra": "the server's own",
        "product__extra": {"a": 1},
        "submission_seq": 99,
        "data_owner_id": 42,
        "crm_type": "B2B",
        "_sdc_deleted_at": "2020-01-01T00:00:00+00:00",
    }
    assert "_sdc_deleted_at" not in record
    assert "submission_seq" in run.stderr  # the warning names what was kept aside


def test_customer_naming_its_assignment_keeps_the_partition(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 2)])
    rows = [
        {"crm__customer_id": "1", "assignment_id": 8},
        {"crm__customer_id": "2", "assignment_id": 7},  # agrees: nothing to keep
        {"crm__customer_id": "3", "assignment_id": "7"},
    ]
    body = json.dumps({"count": 3, "next": None, "previous": None, "results": rows})
    sim.fail_next("/assignments/7/customers/", 200, body, times=2)  # discovery, then sync
    run = run_tap(config_for(sim, [7], detect_deletions=True), tmp_path)
    assert run.returncode == 0, run.stderr
    records = {r["crm__customer_id"]: r for r in run.records()}
    assert {r["assignment_id"] for r in records.values()} == {7}
    assert records["1"]["_cube_unparsed"] == {"assignment_id": 8}
    assert records["2"].get("_cube_unparsed") is None
    assert records["3"]["_cube_unparsed"] == {"assignment_id": "7"}


def test_server_field_named_like_the_catch_all_is_kept_inside_it(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1)])
    rows = [{"crm__customer_id": "1", "_cube_unparsed": {"x": 1}}]
    body = json.dumps({"count": 1, "next": None, "previous": None, "results": rows})
    sim.fail_next("/assignments/7/customers/", 200, body, times=2)
    run = run_tap(config_for(sim, [7]), tmp_path)
    assert run.returncode == 0, run.stderr
    [record] = run.records()
    assert record["_cube_unparsed"] == {"_cube_unparsed": {"x": 1}}
