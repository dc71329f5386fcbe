"""Custom-field labels, campaigns, call-flow status, call outcomes and the data-owner era."""

from __future__ import annotations

import collections
import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cube_simulator import Crm, CustomField, demo_assignments
from tests.conftest import CUBE_ZONE, config_for, cube_today, run_tap, wait_before_starting
from tests.test_catalog import discovered_catalog


def crm(data_owner_id=3, crm_type="B2C", count=700):
    fields = [CustomField(64, "Adresse", "text"), CustomField(90, "Poeng", "integer")]
    return Crm(data_owner_id=data_owner_id, crm_type=crm_type, count=count, custom_fields=fields)


def catalog_properties(run, stream):
    catalog = json.loads(run.stdout)
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == stream)
    return entry


def test_custom_field_labels(simulator, tmp_path):
    sim = simulator(demo_assignments())
    run = run_tap(config_for(sim, [101, 202]), tmp_path)
    rows = run.records("customer_custom_fields")
    assert {(r["assignment_id"], r["id"]) for r in rows} == {
        (101, 64),
        (101, 70),
        (101, 71),
        (101, 72),
        (101, 73),
        (202, 70),
        (202, 81),
    }
    label = next(r for r in rows if r["assignment_id"] == 101 and r["id"] == 71)
    assert label["key"] == "Fødselsdato"
    assert label["lookup__id"] == "crm__custom_info__71"


def test_campaigns_typed(simulator, tmp_path):
    sim = simulator(demo_assignments())
    run = run_tap(config_for(sim, [101]), tmp_path)
    rows = run.records("campaigns")
    assert len(rows) == len(sim.campaigns())
    props = run.schema("campaigns")["properties"]
    assert props["campaign__start_date"]["format"] == "date"
    assert "boolean" in props["campaign__is_active"]["type"]
    served = {c["campaign__id"]: c for c in sim.campaigns()}
    for row in rows:
        original = served[row["campaign__id"]]
        for name in ("campaign__end_date", "campaign__archived_date", "campaign__is_active"):
            expected = None if original[name] == "" else original[name]
            assert row[name] == expected
    message = next(m for m in run.messages if m["type"] == "SCHEMA" and m["stream"] == "campaigns")
    assert message["key_properties"] == ["campaign__id"]


def test_callflow_customers(simulator, tmp_path):
    sim = simulator(demo_assignments())
    run = run_tap(config_for(sim, [101, 202]), tmp_path)
    rows = run.records("callflow_customers")
    assert collections.Counter(r["assignment_id"] for r in rows) == {101: 2137, 202: 1000}
    props = run.schema("callflow_customers")["properties"]
    assert props["callflow__attempts_status__attempts"]["type"] == ["integer", "null"]
    assert props["product__BB100"]["type"] == ["integer", "null"]  # sampled: numbers and ""
    assert props["crm__custom_info__71"]["format"] == "date"  # the customer fields' types
    assert all(r["product__BB100"] != "" for r in rows)
    message = next(
        m for m in run.messages if m["type"] == "SCHEMA" and m["stream"] == "callflow_customers"
    )
    assert message["key_properties"] == ["assignment_id", "crm__customer_id"]


def test_callflow_call_state_filter(simulator, tmp_path):
    sim = simulator(demo_assignments())
    run = run_tap(config_for(sim, [101], callflow_call_state="Ny"), tmp_path)
    rows = run.records("callflow_customers")
    assert rows
    assert {r["callflow__callstate__name"] for r in rows} == {"Ny"}
    assert len(rows) == len(sim.callflow_customers(101, call_state="Ny"))
    queries = [r.query for r in sim.requests if r.path.endswith("/callflow_customers/")]
    assert all("call_state=Ny" in q for q in queries)
    assert all(q.count("call_state") == 1 for q in queries)


def test_call_outcomes_not_offered_without_start_date(simulator, tmp_path):
    sim = simulator(demo_assignments())
    run = run_tap(config_for(sim, [101]), tmp_path, "--discover")
    streams = {s["tap_stream_id"] for s in json.loads(run.stdout)["streams"]}
    assert "call_outcomes" not in streams
    assert {"customers", "customer_custom_fields", "callflow_customers", "campaigns"} <= streams
    assert not {"crm_customers", "crm_custom_fields", "crm_callflow_customers"} & streams


def outcome_requests(sim, since=0):
    return [
        (r.path.split("/")[4], r.query)
        for r in sim.requests[since:]
        if r.path.endswith("/call_outcomes/")
    ]


def test_call_outcomes_incremental_with_windows_and_lookback(simulator, tmp_path, today):
    start = today - timedelta(days=70)
    sim = simulator(demo_assignments(), outcomes_start=start)
    config = config_for(sim, [101, 303], start_date=start.isoformat(), call_outcomes_window_days=30)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    campaigns = sorted(
        c["campaign__id"] for c in sim.campaigns() if c["assignment__id"] in (101, 303)
    )
    # 71 days in windows of 30: three windows per campaign, none overlapping
    asked = outcome_requests(sim)
    assert sorted({c for c, _ in asked}) == sorted(str(c) for c in campaigns)
    windows = sorted({q for _, q in asked})

    def day(d):
        return d.strftime("%Y%m%d")

    assert windows == sorted(
        [
            f"from_date={day(start)}&to_date={day(start + timedelta(days=29))}",
            f"from_date={day(start + timedelta(days=30))}"
            f"&to_date={day(start + timedelta(days=59))}",
            f"from_date={day(start + timedelta(days=60))}&to_date={day(today)}",
        ]
    )
    rows = first.records("call_outcomes")
    expected = sum(len(sim.call_outcomes(c, start, today)) for c in campaigns)
    assert len(rows) == expected > 0
    assert all(r["campaign_id"] in campaigns for r in rows)
    keys = [
        (
            r["campaign_id"],
            r["crm__customer_id"],
            r["call_outcome__report_as__submitted_when_timestamp"],
        )
        for r in rows
    ]
    assert len(keys) == len(set(keys))
    extra = next(r["call_outcome__extra"] for r in rows if r["call_outcome__extra"])
    assert "Ønsket oppstart" in extra or "Produkt" in extra
    assert not any(name.startswith("call_outcome__extra__") for r in rows for name in r)

    state = next(m["value"] for m in reversed(first.messages) if m["type"] == "STATE")
    bookmarks = state["bookmarks"]["call_outcomes"]["partitions"]
    assert {b["context"]["campaign_id"] for b in bookmarks} == set(campaigns)
    assert all(set(b) <= {"context", "replication_key", "replication_key_value"} for b in bookmarks)
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))

    # a late edit inside the lookback window, and a new outcome today
    sim.update_call_outcome(
        campaigns[0], today - timedelta(days=1), 0, {"call_outcome__comment": "Endret i ettertid"}
    )
    # Given a catalog, the run discovers nothing: the windows it asks for are its own.
    catalog = discovered_catalog(config, tmp_path)
    before = len(sim.requests)
    second = run_tap(config, tmp_path, "--state", str(state_file), "--catalog", catalog)
    assert second.returncode == 0, second.stderr
    lookback = f"from_date={day(today - timedelta(days=1))}&to_date={day(today)}"
    assert {q for _, q in outcome_requests(sim, before)} == {lookback}
    assert len(outcome_requests(sim, before)) == len(campaigns)
    assert any(
        r["call_outcome__comment"] == "Endret i ettertid" for r in second.records("call_outcomes")
    )
    # every other stream is complete again
    assert len(second.records("customers")) == 2137
    assert len(second.records("callflow_customers")) == 2137


def test_call_outcomes_of_configured_campaigns_only(simulator, tmp_path, today):
    sim = simulator(demo_assignments(), outcomes_start=today - timedelta(days=3))
    config = config_for(
        sim, [101], start_date=(today - timedelta(days=3)).isoformat(), campaign_ids=[2021]
    )
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    assert {c for c, _ in outcome_requests(sim)} == {"2021"}
    assert {r["campaign_id"] for r in run.records("call_outcomes")} == {2021}


def zone_on_another_day() -> str:
    """A zone whose date is not the machine's date now: one of the two always is."""
    zones = ("Pacific/Kiritimati", "Pacific/Niue")  # UTC+14 and UTC-11
    return next(zone for zone in zones if cube_today(zone) != date.today())


def test_days_are_the_timezone_settings_days_not_the_machines(simulator, tmp_path):
    # Cube's days are its zone's: near midnight the machine is on another day, and a
    # window or a "future" start_date by the machine's date would miss or misname a day.
    zone = zone_on_another_day()
    today = cube_today(zone)
    start = today - timedelta(days=2)
    sim = simulator(demo_assignments(), outcomes_start=start, zone=zone)
    config = config_for(
        sim, [101], start_date=start.isoformat(), timezone=zone, campaign_ids=[2021]
    )
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    window = f"from_date={start:%Y%m%d}&to_date={today:%Y%m%d}"
    assert {q for _, q in outcome_requests(sim)} == {window}
    days = {r["call_outcome__report_as__submitted_when"][:10] for r in run.records("call_outcomes")}
    assert days == {(start + timedelta(days=n)).isoformat() for n in range(3)}
    # start_date today, in Cube's zone, is no day to come
    config["start_date"] = today.isoformat()
    again = run_tap(config, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "in the future" not in again.stderr


@pytest.mark.parametrize(
    ("clock", "wait"),
    [("23:57:01", 180.0), ("23:59:59.5", 1.5), ("23:57:00", 0.0), ("00:00:00", 0.0)],
)
def test_a_test_near_cubes_midnight_starts_on_the_next_day(clock, wait):
    now = datetime.fromisoformat(f"2026-12-06T{clock}").replace(tzinfo=ZoneInfo(CUBE_ZONE))
    assert wait_before_starting(now) == wait


def test_data_owner_era(simulator, tmp_path):
    sim = simulator([], crms=[crm(3, "B2C", 700), crm(3, "B2B", 40), crm(4, "B2C", 0)])
    crms = [
        {"data_owner_id": 3, "crm_type": "B2C"},
        {"data_owner_id": 3, "crm_type": "B2B"},
        {"data_owner_id": 4, "crm_type": "B2C"},
    ]
    config = config_for(sim, [], crms=crms)
    del config["assignment_ids"]
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    streams = {m["stream"] for m in run.messages if m["type"] == "SCHEMA"}
    assert streams == {"crm_customers", "crm_custom_fields", "crm_callflow_customers", "campaigns"}
    customers = run.records("crm_customers")
    counts = collections.Counter((r["data_owner_id"], r["crm_type"]) for r in customers)
    assert counts == {(3, "B2C"): 700, (3, "B2B"): 40}
    assert {r["crm__customer_id"] for r in customers if r["crm_type"] == "B2C"} == {
        c["crm__customer_id"] for c in sim.crm_customers(3, "B2C")
    }
    schema = next(
        m for m in run.messages if m["type"] == "SCHEMA" and m["stream"] == "crm_customers"
    )
    assert schema["key_properties"] == ["data_owner_id", "crm_type", "crm__customer_id"]
    assert schema["schema"]["properties"]["crm__custom_info__90"]["type"] == ["integer", "null"]
    callflow = run.records("crm_callflow_customers")
    assert len(callflow) == 740
    fields = run.records("crm_custom_fields")
    assert {(r["data_owner_id"], r["crm_type"], r["id"]) for r in fields} >= {
        (3, "B2C", 64),
        (3, "B2C", 90),
    }
    assert any(r.path == "/api/v1/data_owners/3/crm/B2C/callflow_customers/" for r in sim.requests)


def test_both_eras_together(simulator, tmp_path):
    sim = simulator(demo_assignments()[:1], crms=[crm()])
    config = config_for(sim, [101], crms=[{"data_owner_id": 3, "crm_type": "B2C"}])
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(run.records("customers")) == 2137
    assert len(run.records("crm_customers")) == 700


@pytest.mark.parametrize("crm_type", ["B2X", "b2c"])
def test_invalid_crm_type(simulator, tmp_path, crm_type):
    sim = simulator([])
    config = config_for(sim, [], crms=[{"data_owner_id": 3, "crm_type": crm_type}])
    del config["assignment_ids"]
    run = run_tap(config, tmp_path)
    assert run.returncode != 0
    assert "crm_type" in run.last_stderr_line


def test_unknown_data_owner(simulator, tmp_path):
    sim = simulator([], crms=[crm()])
    config = config_for(sim, [], crms=[{"data_owner_id": 9, "crm_type": "B2C"}])
    del config["assignment_ids"]
    run = run_tap(config, tmp_path)
    assert run.returncode != 0
    assert "data owner 9 (B2C) not found" in run.last_stderr_line
    assert "crms" in run.last_stderr_line


@pytest.mark.parametrize("stream", ["call_outcomes", "product_registrations", "crm_call_outcomes"])
def test_rows_about_calls_type_the_custom_fields_they_carry(simulator, tmp_path, today, stream):
    """Custom fields that no metadata the tap reads lists (their container is not
    configured, or its metadata forbidden) get columns from the rows, as customers' do."""
    start = today - timedelta(days=3)
    sim = simulator(
        demo_assignments(),
        crms=[
            Crm(3, "B2C", 30, custom_fields=[CustomField(64, "Adresse", "text")]),
            Crm(4, "B2B", 5, custom_fields=[CustomField(99, "Poeng", "integer")]),
        ],
        outcomes_start=start,
    )
    owned = [c["campaign__id"] for c in sim.campaigns() if c.get("data_owner__id") == 3]
    settings = {
        "call_outcomes": {"campaign_ids": [2021]},
        "product_registrations": {
            "campaign_ids": owned[:1],
            "crms": [{"data_owner_id": 4, "crm_type": "B2B"}],
        },
        "crm_call_outcomes": {"crms": [{"data_owner_id": 3, "crm_type": "B2C"}]},
    }[stream]
    if stream == "crm_call_outcomes":
        sim.fail_next("/data_owners/3/B2C/crm_custom_fields/", 403, times=50)
    config = config_for(sim, [], start_date=start.isoformat(), **settings)
    del config["assignment_ids"]  # no customers stream reads the campaigns' containers
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    records = run.records(stream)
    carried = {name for r in records for name in r if name.startswith("crm__custom_info__")}
    carried |= {
        name
        for r in records
        for name in (r.get("_cube_unparsed") or {})
        if name.startswith("crm__custom_info__")
    }
    assert carried, stream
    properties = run.schema(stream)["properties"]
    assert carried <= set(properties), carried - set(properties)
    assert any(r.get(name) is not None for r in records for name in carried), stream
