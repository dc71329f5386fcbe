"""The customers stream against the simulator: paging, typing, discovery, auth."""

from __future__ import annotations

import collections
import json
import math

import pytest
import trustme

from cube_simulator import Assignment, CustomField, demo_assignments
from tap_cube.tap import TapCube
from tests.conftest import PASSWORD, TOKEN, USERNAME, config_for, plain_assignment, run_tap


def customer_pages(sim, assignment_id: int) -> list[str]:
    """The queries of the customer-list requests the simulator answered for an assignment."""
    path = f"/api/v1/assignments/{assignment_id}/customers/"
    return [r.query for r in sim.requests if r.path == path and r.status == 200]


def test_demo_data_every_customer_once_with_declared_fields(simulator, tmp_path):
    """The acceptance run: an empty list, an exact multiple of the page size, ~2,000 rows."""
    sim = simulator(demo_assignments())
    run = run_tap(config_for(sim, [101, 202, 303]), tmp_path)
    assert run.returncode == 0, run.stderr
    records = run.records()
    per_assignment = collections.Counter(r["assignment_id"] for r in records)
    assert per_assignment == {101: 2137, 202: 1000}
    keys = [(r["assignment_id"], r["crm__customer_id"]) for r in records]
    assert len(keys) == len(set(keys))
    for assignment_id in (101, 202):
        served = {c["crm__customer_id"] for c in sim.customers(assignment_id)}
        assert {k[1] for k in keys if k[0] == assignment_id} == served
    declared = set(run.schema()["properties"])
    seen = {name for r in records for name in r}
    assert seen <= declared
    assert "crm__custom_info__75" in declared  # listed by no metadata, found by sampling


@pytest.mark.parametrize("count", [1, 499, 500, 501, 1000, 3001])
def test_pages_requested_once_each(simulator, tmp_path, count):
    sim = simulator([plain_assignment(7, count)])
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(run.records()) == count
    # discovery samples page 1 once; the sync reads every page once
    queries = customer_pages(sim, 7)
    pages = math.ceil(count / 500)
    assert queries.count("") == 2
    assert sorted(q for q in queries if q) == sorted(f"page={n}" for n in range(2, pages + 1))


def test_empty_assignment(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 0)])
    run = run_tap(config_for(sim, [7]), tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.records() == []


@pytest.mark.parametrize("next_style", ["foreign", "http", "same"])
def test_next_links_resolved_against_api_url(simulator, tmp_path, next_style):
    """Links naming http:// or another host are reduced to their query."""
    sim = simulator([plain_assignment(7, 1200)], next_style=next_style)
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(run.records()) == 1200
    assert all(r.has_authorization for r in sim.requests)
    # no parameter sent twice
    assert all(q.count("page=") <= 1 for q in customer_pages(sim, 7))


def test_token_and_basic_auth(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 3)])
    by_token = run_tap(config_for(sim, [7]), tmp_path)
    by_basic = run_tap(
        config_for(sim, [7], auth_token=None, username=USERNAME, password=PASSWORD), tmp_path
    )
    assert by_token.returncode == 0, by_token.stderr
    assert by_basic.returncode == 0, by_basic.stderr
    assert by_token.records() == by_basic.records()


def offline_tap(**config):
    """A tap given a catalog, so that it makes no discovery requests."""
    from tap_cube.streams.specs import spec_named

    catalog = {
        "streams": [
            {
                "tap_stream_id": "customers",
                "stream": "customers",
                "schema": spec_named("customers").base_schema(),
                "metadata": [],
            }
        ]
    }
    return TapCube(config=config, catalog=catalog)


def test_auth_headers_are_exactly_drf_style():
    import base64

    tap = offline_tap(
        api_url="https://acme.headshed.com/api/v1/", auth_token=TOKEN, assignment_ids=[1]
    )
    stream = tap.streams["customers"]
    assert stream.authenticator.auth_headers == {"Authorization": f"Token {TOKEN}"}
    assert stream.url_base == "https://acme.headshed.com/api/v1"
    basic = offline_tap(
        api_url="https://acme.headshed.com/api/v1",
        username=USERNAME,
        password=PASSWORD,
        assignment_ids=[1],
    )
    expected = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    assert basic.streams["customers"].authenticator.auth_headers == {
        "Authorization": f"Basic {expected}"
    }


def test_schema_types_from_metadata_and_union(simulator, tmp_path):
    sim = simulator(demo_assignments())
    run = run_tap(config_for(sim, [101, 202, 303]), tmp_path, "--discover")
    assert run.returncode == 0, run.stderr
    catalog = json.loads(run.stdout)
    customers = next(s for s in catalog["streams"] if s["tap_stream_id"] == "customers")
    props = customers["schema"]["properties"]
    assert props["crm__custom_info__64"]["type"] == ["string", "null"]
    assert props["crm__custom_info__71"] == {
        "type": ["string", "null"],
        "format": "date",
        "description": "Fødselsdato",
    }
    assert props["crm__custom_info__72"]["type"] == ["boolean", "null"]
    assert props["crm__custom_info__73"]["type"] == ["string", "null"]  # "choice" is text
    assert props["crm__custom_info__81"]["type"] == ["integer", "null"]
    # integer in 101, text in 202: text
    assert props["crm__custom_info__70"]["type"] == ["string", "null"]
    assert props["crm__customer_id"]["type"] == "string"
    assert customers["key_properties"] == ["assignment_id", "crm__customer_id"]
    # at most two requests per assignment for customers (call-flow status samples one more)
    per_path = collections.Counter(r.path for r in sim.requests)
    for assignment_id in (101, 202, 303):
        prefix = f"/api/v1/assignments/{assignment_id}/"
        assert per_path[prefix + "crm_custom_fields/"] == 1
        assert per_path[prefix + "customers/"] == 1


def test_integer_field_of_one_assignment_stays_integer(simulator, tmp_path):
    sim = simulator([demo_assignments()[0]])
    run = run_tap(config_for(sim, [101]), tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.schema()["properties"]["crm__custom_info__70"]["type"] == ["integer", "null"]
    values = [r["crm__custom_info__70"] for r in run.records()]
    assert None in values  # "" became null
    assert "" not in values
    assert all(v is None or type(v) is int for v in values)
    served = {c["crm__customer_id"]: c for c in sim.customers(101)}
    for record in run.records():
        original = served[record["crm__customer_id"]]
        for name, value in original.items():
            if original[name] == "" and name in (
                "crm__custom_info__70",
                "crm__custom_info__71",
                "crm__custom_info__72",
            ):
                assert record[name] is None
            elif name.startswith("crm__custom_info__") and name != "crm__custom_info__70":
                assert record[name] == value  # "233.0" stays a string, æøå intact


def test_text_field_keeps_blank_and_numbers_become_text(simulator, tmp_path):
    sim = simulator(demo_assignments()[:2])
    run = run_tap(config_for(sim, [101, 202]), tmp_path)
    assert run.returncode == 0, run.stderr
    values = [r["crm__custom_info__70"] for r in run.records()]
    assert "" in values  # "" is a value in a text field, not a null
    assert all(v is None or type(v) is str for v in values)
    served = {c["crm__customer_id"]: c for c in sim.customers(101)}
    numeric = [
        r
        for r in run.records()
        if r["assignment_id"] == 101
        and isinstance(served[r["crm__customer_id"]]["crm__custom_info__70"], int)
    ]
    assert numeric
    for record in numeric:
        assert record["crm__custom_info__70"] == str(
            served[record["crm__customer_id"]]["crm__custom_info__70"]
        )


def test_norwegian_text_intact(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 600)])
    run = run_tap(config_for(sim, [7]), tmp_path)
    names = {r["crm__standard_info__name"] for r in run.records()}
    assert names == {c["crm__standard_info__name"] for c in sim.customers(7)}
    assert any(ch in "".join(names) for ch in "æøåÆØÅ")


@pytest.mark.parametrize("metadata", ["forbidden", "missing"])
def test_discovery_falls_back_to_sampling(simulator, tmp_path, metadata):
    fields = [CustomField(90, "Score", "integer"), CustomField(91, "Segment", "text")]
    sim = simulator([Assignment(id=5, count=700, custom_fields=fields, metadata=metadata)])
    run = run_tap(config_for(sim, [5]), tmp_path)
    assert run.returncode == 0, run.stderr
    props = run.schema()["properties"]
    assert props["crm__custom_info__90"]["type"] == ["integer", "null"]
    assert props["crm__custom_info__91"]["type"] == ["string", "null"]
    assert len(run.records()) == 700
    assert "custom-field metadata unavailable" in run.stderr


def test_legacy_metadata_without_lookup_id(simulator, tmp_path):
    fields = [CustomField(90, "Fødselsdato", "date")]
    sim = simulator([Assignment(id=5, count=10, custom_fields=fields, metadata="legacy")])
    run = run_tap(config_for(sim, [5]), tmp_path)
    assert run.schema()["properties"]["crm__custom_info__90"]["format"] == "date"


def test_no_discovery_requests_when_a_catalog_is_given(simulator, tmp_path):
    sim = simulator(demo_assignments())
    config = config_for(sim, [101, 202, 303])
    discovered = run_tap(config, tmp_path, "--discover")
    catalog = json.loads(discovered.stdout)
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = True
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(catalog))
    before = len(sim.requests)
    run = run_tap(config, tmp_path, "--catalog", str(catalog_file))
    assert run.returncode == 0, run.stderr
    customer_requests = [r for r in sim.requests[before:] if r.path.endswith("/customers/")]
    assert len(customer_requests) == 5 + 2 + 1  # the sync's pages only, no samples
    assert len(run.records()) == 3137


def test_assignment_ids_from_environment(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 5), plain_assignment(8, 6)])
    config = config_for(sim, [1])
    del config["assignment_ids"]
    run = run_tap(config, tmp_path, env={"TAP_CUBE_ASSIGNMENT_IDS": "[7, 8]"})
    # --config with a file does not read the environment; ENV does
    assert run.returncode != 0
    (tmp_path / "config.json").write_text(json.dumps(config))
    import os
    import subprocess
    import sys
    from pathlib import Path

    process = subprocess.run(
        [
            str(Path(sys.executable).with_name("tap-cube")),
            "--config",
            str(tmp_path / "config.json"),
            "--config",
            "ENV",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TAP_CUBE_ASSIGNMENT_IDS": "[7, 8]"},
    )
    assert process.returncode == 0, process.stderr
    ids = collections.Counter(
        json.loads(line)["record"]["assignment_id"]
        for line in process.stdout.splitlines()
        if '"RECORD"' in line and '"customers"' in line
    )
    assert ids == {7: 5, 8: 6}


def test_shared_customer_ids_across_assignments_are_separate_records(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 300), plain_assignment(8, 300)])
    run = run_tap(config_for(sim, [7, 8]), tmp_path)
    records = run.records()
    assert len(records) == 600
    assert {r["crm__customer_id"] for r in records if r["assignment_id"] == 7} == {
        r["crm__customer_id"] for r in records if r["assignment_id"] == 8
    }


def test_about_lists_settings_with_secrets_marked(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    process = subprocess.run(
        [str(Path(sys.executable).with_name("tap-cube")), "--about", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    about = json.loads(process.stdout)
    props = about["settings"]["properties"]
    for name in (
        "api_url",
        "auth_token",
        "username",
        "password",
        "assignment_ids",
        "request_timeout",
        "user_agent",
        "max_retries",
        "max_retry_wait",
        "skip_inaccessible_assignments",
        "ca_bundle",
        "max_concurrent_requests",
    ):
        assert name in props
    assert props["auth_token"].get("secret") is True
    assert props["password"].get("secret") is True
    assert not props["username"].get("secret")
    assert about["settings"]["required"] == ["api_url"]  # and assignment_ids or crms


def test_user_agent_default_names_the_tap():
    assert TapCube.config_jsonschema["properties"]["user_agent"]["default"].startswith("tap-cube/")


def test_token_never_in_output(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 10)])
    run = run_tap(config_for(sim, [7]), tmp_path, env={"TAP_CUBE_LOGLEVEL": "DEBUG"})
    assert run.returncode == 0, run.stderr
    assert "DEBUG" in run.stderr
    assert TOKEN not in run.stdout + run.stderr


def test_tls_verification_stays_on_and_ca_bundle_replaces_the_default(tmp_path):
    default = offline_tap(
        api_url="https://acme.headshed.com/api/v1", auth_token=TOKEN, assignment_ids=[1]
    )
    assert default.streams["customers"].requests_session.verify is True
    bundle = tmp_path / "corporate-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    custom = offline_tap(
        api_url="https://acme.headshed.com/api/v1",
        auth_token=TOKEN,
        assignment_ids=[1],
        ca_bundle=str(bundle),
    )
    assert custom.streams["customers"].requests_session.verify == str(bundle)
