"""Current servers: data owners found in /campaigns, call outcomes and product registrations.

Every test runs the installed `tap-cube` against the simulator, as Meltano would.
"""

from __future__ import annotations

import collections
import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from cube_simulator import Crm, CustomField, demo_assignments
from tests.conftest import CUBE_ZONE, assert_no_secrets, config_for, run_tap
from tests.test_catalog import discovered_catalog

TIMESTAMP = "call_outcome__report_as__submitted_when_timestamp"
WINDOWED = ("product_registrations", "crm_call_outcomes", "crm_product_registrations")


def crm(data_owner_id, crm_type="B2C", count=120, **kwargs):
    fields = [CustomField(64, "Adresse", "text"), CustomField(90, "Poeng", "integer")]
    return Crm(data_owner_id, crm_type, count, custom_fields=fields, **kwargs)


def discovering(sim, **overrides):
    """A config naming neither assignments nor data owners: a URL and a token."""
    config = config_for(sim, [], **overrides)
    del config["assignment_ids"]
    return config


def day(d: date) -> str:
    return d.strftime("%Y%m%d")


def window_queries(sim, suffix, since=0):
    return [(r.path, r.query) for r in sim.requests[since:] if r.path.endswith(suffix)]


def key(row, partition):
    return (*(row[k] for k in partition), row["crm__customer_id"], row[TIMESTAMP])


def test_data_owners_discovered_from_campaigns(simulator, tmp_path):
    # Assignment campaigns are listed too; they name no data owner and are left alone.
    sim = simulator(demo_assignments()[:1], crms=[crm(3), crm(3, "B2B", 40), crm(4, count=0)])
    run = run_tap(discovering(sim), tmp_path)
    assert run.returncode == 0, run.stderr
    found = [
        {"data_owner_id": 3, "crm_type": "B2B"},
        {"data_owner_id": 3, "crm_type": "B2C"},
        {"data_owner_id": 4, "crm_type": "B2C"},
    ]
    assert f"/campaigns names 3 data-owner CRMs; crms: {json.dumps(found)}" in run.stderr
    streams = {m["stream"] for m in run.messages if m["type"] == "SCHEMA"}
    assert streams == {"crm_customers", "crm_custom_fields", "crm_callflow_customers", "campaigns"}
    counts = collections.Counter(
        (r["data_owner_id"], r["crm_type"]) for r in run.records("crm_customers")
    )
    assert counts == {(3, "B2C"): 120, (3, "B2B"): 40}
    assert {
        r["crm__customer_id"] for r in run.records("crm_customers") if r["crm_type"] == "B2B"
    } == {c["crm__customer_id"] for c in sim.crm_customers(3, "B2B")}
    assert not any("/assignments/" in r.path for r in sim.requests)
    # /campaigns is read once for the discovery (each process), once as a stream.
    assert sum(r.path == "/api/v1/campaigns" for r in sim.requests) <= 4


def test_discovered_data_owner_that_answers_403_is_skipped(simulator, tmp_path, today):
    start = today - timedelta(days=3)
    sim = simulator([], crms=[crm(3), crm(5, access="forbidden")], outcomes_start=start)
    run = run_tap(discovering(sim, start_date=start.isoformat()), tmp_path)
    assert run.returncode == 0, run.stderr
    assert '{"data_owner_id": 5, "crm_type": "B2C"}' in run.stderr  # it was found
    for stream in ("crm_customers", "crm_callflow_customers", "crm_call_outcomes"):
        assert {r["data_owner_id"] for r in run.records(stream)} == {3}, stream
        assert f"{stream}: skipped because not accessible: data owner 5 (B2C)" in run.stderr
    assert "data owner 5 (B2C) is not accessible to this user (403" in run.stderr
    assert len(run.records("crm_customers")) == 120
    forbidden = {c["campaign__id"] for c in sim.campaigns() if c["data_owner__id"] == 5}
    for stream in ("call_outcomes", "product_registrations"):
        assert not {r["campaign_id"] for r in run.records(stream)} & forbidden
        assert run.records(stream), stream
    assert_no_secrets(run.stdout, run.stderr)


def test_a_discovered_partition_that_answers_403_is_named_as_found(simulator, tmp_path, today):
    start = today - timedelta(days=3)
    sim = simulator([], crms=[crm(3), crm(5, access="forbidden")], outcomes_start=start)
    run = run_tap(discovering(sim, start_date=start.isoformat()), tmp_path)
    assert run.returncode == 0, run.stderr
    assert "remove it from crms (found in /campaigns; set crms to choose)" in run.stderr
    assert "remove it from campaign_ids (found in /campaigns; set it to choose)" in run.stderr


def test_explicit_data_owner_that_answers_403_still_fails(simulator, tmp_path):
    sim = simulator([], crms=[crm(3), crm(5, access="forbidden")])
    config = discovering(sim, crms=[{"data_owner_id": 5, "crm_type": "B2C"}])
    run = run_tap(config, tmp_path)
    assert run.returncode != 0
    assert "data owner 5 (B2C) is not accessible" in run.last_stderr_line
    assert "remove it from crms." in run.last_stderr_line


def test_no_data_owner_visible(simulator, tmp_path):
    sim = simulator(demo_assignments())  # an assignment-era server: no data owners
    run = run_tap(discovering(sim), tmp_path)
    assert run.returncode != 0
    assert run.last_stderr_line == (
        "tap-cube: error: discover_crms: none of the 6 campaigns this user can see names a "
        "data owner and CRM type; on a server of the assignment era set assignment_ids, else "
        "ask Headshed for access to a data owner"
    )
    assert "Traceback" not in run.stderr

    empty = simulator([])
    run = run_tap(discovering(empty), tmp_path)
    assert run.returncode != 0
    assert "none of the 0 campaigns" in run.last_stderr_line


def test_campaigns_forbidden_for_discovery(simulator, tmp_path):
    sim = simulator([], crms=[crm(3)])
    forbidden = json.dumps({"detail": "You do not have permission to perform this action."})
    sim.fail_next("/api/v1/campaigns", 403, forbidden, times=10)
    run = run_tap(discovering(sim), tmp_path)
    assert run.returncode != 0
    assert "cannot discover data owners: /campaigns answered 403" in run.last_stderr_line
    assert "list them in crms instead" in run.last_stderr_line


def test_discover_crms_alongside_assignments(simulator, tmp_path):
    sim = simulator(demo_assignments()[:1], crms=[crm(3)])
    run = run_tap(config_for(sim, [101], discover_crms=True), tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(run.records("customers")) == 2137
    assert len(run.records("crm_customers")) == 120
    # explicit crms stay as they are: no discovery
    before = len(sim.requests)
    run = run_tap(config_for(sim, [101], crms=[{"data_owner_id": 3, "crm_type": "B2C"}]), tmp_path)
    assert run.returncode == 0, run.stderr
    assert "discover_crms" not in run.stderr
    assert len(run.records("crm_customers")) == 120
    assert sum(r.path == "/api/v1/campaigns" for r in sim.requests[before:]) == 1  # the stream


def test_windowed_streams_incremental_with_anonymized_sales(simulator, tmp_path, today):
    start = today - timedelta(days=40)
    sim = simulator([], crms=[crm(3), crm(3, "B2B", 60), crm(4)], outcomes_start=start, page_size=9)
    config = discovering(sim, start_date=start.isoformat(), call_outcomes_window_days=30)
    # Given a catalog, the runs discover nothing: the windows asked for are their own.
    catalog = discovered_catalog(config, tmp_path)
    sim.requests.clear()
    first = run_tap(config, tmp_path, "--catalog", catalog)
    assert first.returncode == 0, first.stderr
    campaigns = [c["campaign__id"] for c in sim.campaigns()]
    pairs = [(3, "B2B"), (3, "B2C"), (4, "B2C")]

    # Two windows of whole days per partition, both dates always sent, none overlapping.
    windows = {
        f"from_date={day(start)}&to_date={day(start + timedelta(days=29))}",
        f"from_date={day(start + timedelta(days=30))}&to_date={day(today)}",
    }
    for suffix in ("/call_outcomes/", "/product_registrations/"):
        asked = window_queries(sim, suffix)
        assert {q for _, q in asked if "page=" not in q} == windows
        firsts = [a for a in asked if "page=" not in a[1]]
        assert len(firsts) == len(set(firsts)) == 2 * (len(campaigns) + len(pairs))

    expected = {
        "product_registrations": [
            r for c in campaigns for r in sim.product_registrations(c, start, today)
        ],
        "crm_product_registrations": [
            r for p in pairs for r in sim.product_registrations(p, start, today)
        ],
        "crm_call_outcomes": [r for p in pairs for r in sim.call_outcomes(p, start, today)],
    }
    partitions = {
        "product_registrations": ("campaign_id",),
        "crm_product_registrations": ("data_owner_id", "crm_type"),
        "crm_call_outcomes": ("data_owner_id", "crm_type"),
    }
    for stream in WINDOWED:
        rows = first.records(stream)
        assert len(rows) == len(expected[stream]) > 0, stream
        keys = [(*key(r, partitions[stream]), r["submission_seq"]) for r in rows]
        assert len(keys) == len(set(keys)), stream
        message = next(m for m in first.messages if m["type"] == "SCHEMA" and m["stream"] == stream)
        assert message["key_properties"] == [
            *partitions[stream],
            "crm__customer_id",
            TIMESTAMP,
            "submission_seq",
        ]
        assert message["bookmark_properties"] == [TIMESTAMP]

    # Anonymized sales are real sales: every one is emitted, keyed apart by submission_seq.
    sales = first.records("crm_product_registrations")
    anonymized = [r for r in sales if r["crm__customer_id"] == ""]
    served = [r for r in expected["crm_product_registrations"] if r["crm__customer_id"] == ""]
    assert len(anonymized) == len(served) > 0
    assert {r["crm__standard_info__name"] for r in anonymized} == {"Anonymized"}
    assert max(r["submission_seq"] for r in sales) == 2  # two products in one sale
    first_sale = sales[0]
    assert {"product__code", "product__title", "product__price", "product__extra"} <= set(
        first_sale
    )
    assert first_sale["call_outcome__type"] == "Salg"
    assert not any(
        name.startswith(("product__extra__", "call_outcome__extra__")) for name in first_sale
    )
    schema = first.schema("crm_product_registrations")["properties"]
    assert schema["crm__custom_info__90"]["type"] == ["integer", "null"]
    assert schema["product__price"]["type"] == ["number", "null"]

    state = next(m["value"] for m in reversed(first.messages) if m["type"] == "STATE")
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    for stream in WINDOWED:
        bookmarks = state["bookmarks"][stream]["partitions"]
        assert len(bookmarks) == len(campaigns if stream == "product_registrations" else pairs)

    # Late: two anonymized customers each buy broadband in the same second, yesterday.
    yesterday = today - timedelta(days=1)
    b2c = next(
        c for c in sim.campaigns() if (c["data_owner__id"], c["campaign__crm_type"]) == (3, "B2C")
    )
    stamp = f"{yesterday}T21:15:07+01:00"
    for _ in range(2):
        sim.add_call_outcome(
            b2c["campaign__id"],
            yesterday,
            {"call_outcome__type": "Salg", TIMESTAMP: stamp},
            anonymized=True,
            products=[{"product__code": "BB100", "product__title": "Bredbånd 100"}],
        )
    before = len(sim.requests)
    second = run_tap(config, tmp_path, "--state", str(state_file), "--catalog", catalog)
    assert second.returncode == 0, second.stderr
    # Each partition asks only for its lookback window: from the day before its bookmark.
    paths = {
        "call_outcomes": "/api/v1/campaigns/{campaign_id}/call_outcomes/",
        "product_registrations": "/api/v1/campaigns/{campaign_id}/product_registrations/",
        "crm_call_outcomes": "/api/v1/data_owners/{data_owner_id}/crm/{crm_type}/call_outcomes/",
        "crm_product_registrations": (
            "/api/v1/data_owners/{data_owner_id}/crm/{crm_type}/product_registrations/"
        ),
    }
    lookbacks = set()
    for stream, path in paths.items():
        for bookmark in state["bookmarks"][stream]["partitions"]:
            # the bookmark's day in Cube's zone: a bookmark is UTC text
            bookmarked = datetime.fromisoformat(bookmark["replication_key_value"])
            since = bookmarked.astimezone(ZoneInfo(CUBE_ZONE)).date() - timedelta(days=1)
            assert since >= yesterday - timedelta(days=7)  # sales are not every day
            query = f"from_date={day(since)}&to_date={day(today)}"
            lookbacks.add((path.format(**bookmark["context"]), query))
    asked = window_queries(sim, "/call_outcomes/", before)
    asked += window_queries(sim, "/product_registrations/", before)
    assert {a for a in asked if "page=" not in a[1]} == lookbacks
    assert len([a for a in asked if "page=" not in a[1]]) == len(lookbacks)
    for stream, partition in (
        ("product_registrations", "campaign_id"),
        ("crm_product_registrations", "crm_type"),
    ):
        # Product rows carry only the local minute of their sale: its instant in Oslo.
        minute = datetime.fromisoformat(stamp[:16]).replace(tzinfo=ZoneInfo("Europe/Oslo"))
        twins = [r for r in second.records(stream) if r[TIMESTAMP] == minute.isoformat()]
        assert [(r["crm__customer_id"], r["submission_seq"]) for r in twins] == [("", 1), ("", 2)]
        assert {r[partition] for r in twins} == {
            b2c["campaign__id"] if partition == "campaign_id" else "B2C"
        }
    assert len(second.records("crm_customers")) == 120 + 60 + 120  # full tables stay full


def test_campaign_without_crm_type_is_left_out_with_a_warning(simulator, tmp_path):
    sim = simulator([], crms=[crm(3), crm(4)])
    rows = [
        {"campaign__id": 1, "data_owner__id": "3", "campaign__crm_type": "b2c"},
        {"campaign__id": 2, "data_owner__id": 4, "campaign__crm_type": ""},
        {"campaign__id": 3, "assignment__id": 101},
    ]
    sim.fail_next("/api/v1/campaigns", 200, json.dumps(rows), times=10)
    run = run_tap(discovering(sim), tmp_path)
    assert run.returncode == 0, run.stderr
    assert "campaign 2 names data owner 4 with CRM type ''; it is left out" in run.stderr
    assert {r["data_owner_id"] for r in run.records("crm_customers")} == {3}


def test_a_data_owner_gone_from_campaigns_is_named_with_what_to_do(simulator, tmp_path):
    before = simulator([], crms=[crm(3), crm(4, count=30)])
    first = run_tap(discovering(before, detect_deletions=True), tmp_path)
    assert first.returncode == 0, first.stderr
    state = [m["value"] for m in first.messages if m["type"] == "STATE"][-1]
    # Data owner 4 has no campaign any more: discovery no longer finds it.
    after = simulator([], crms=[crm(3)])
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    second = run_tap(
        discovering(after, detect_deletions=True), tmp_path, "--state", str(state_file)
    )
    assert second.returncode == 0, second.stderr
    warned = [line for line in second.stderr.splitlines() if "data owner 4 (B2C)" in line]
    assert len(warned) == 1, warned
    line = warned[0]
    assert "WARNING" in line
    assert "no longer" in line
    assert "crm_customers" in line
    assert "its rows stay live" in line
    assert "set crms to the CRMs to read, with it" in line  # to read it still
    assert "data_owner_id = 4 AND crm_type = 'B2C'" in line  # to delete its rows on purpose
    assert "data owner 3" not in " ".join(
        line for line in second.stderr.splitlines() if "no longer" in line
    )
    # Its partitions stay in the state: the warning comes again until they are removed.
    kept = [m["value"] for m in second.messages if m["type"] == "STATE"][-1]
    contexts = [p["context"] for p in kept["bookmarks"]["crm_customers"]["partitions"]]
    assert {"data_owner_id": 4, "crm_type": "B2C"} in contexts
