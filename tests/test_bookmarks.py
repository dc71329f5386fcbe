"""Bookmarks of call outcomes never pass the run's own clock, and start_date bounds every run."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cube_simulator import demo_assignments
from tap_cube.records.converters import parse_bookmark
from tap_cube.validation import warn_future_start_date
from tests.conftest import config_for, run_tap
from tests.test_catalog import discovered_catalog

CAMPAIGN = 2021  # a campaign of assignment 101 in the demo data
STAMP = "call_outcome__report_as__submitted_when_timestamp"


def outcome_windows(sim, since: int = 0) -> list[str]:
    return [r.query for r in sim.requests[since:] if r.path.endswith("/call_outcomes/")]


def bookmark(run) -> str:
    state = [m["value"] for m in run.messages if m["type"] == "STATE"][-1]
    (partition,) = state["bookmarks"]["call_outcomes"]["partitions"]
    return str(partition["replication_key_value"])


def state_with(value: object, campaign: object = CAMPAIGN) -> dict:
    partition = {
        "context": {"campaign_id": campaign},
        "replication_key": STAMP,
        "replication_key_value": value,
    }
    return {"bookmarks": {"call_outcomes": {"partitions": [partition]}}}


def sync(sim, config, tmp_path, *args):
    """A run given the catalog of every stream, discovered once: the requests discovery
    makes (a page of each campaign's latest window) are dropped, so that the windows in
    sim.requests are the runs' own."""
    catalog = tmp_path / "catalog.json"
    if not catalog.exists():
        discovered_catalog(config, tmp_path)
        sim.requests.clear()
    return run_tap(config, tmp_path, "--catalog", str(catalog), *args)


def run_with_state(sim, config, tmp_path, state):
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    return sync(sim, config, tmp_path, "--state", str(state_file))


def day(d: date) -> str:
    return d.strftime("%Y%m%d")


def outcomes_config(sim, start: date, **overrides):
    return config_for(
        sim, [101], start_date=start.isoformat(), campaign_ids=[CAMPAIGN], **overrides
    )


def test_a_row_stamped_2099_does_not_become_the_bookmark(simulator, tmp_path, today):
    start = today - timedelta(days=3)
    sim = simulator(demo_assignments(), outcomes_start=start)
    sim.add_call_outcome(CAMPAIGN, today - timedelta(days=1), {STAMP: "2099-01-01T12:00:00+01:00"})
    config = outcomes_config(sim, start)
    started = datetime.now(UTC)
    first = sync(sim, config, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "2099-01-01T12:00:00+01:00" in {r[STAMP] for r in first.records("call_outcomes")}
    assert datetime.fromisoformat(bookmark(first)) <= datetime.now(UTC)
    assert datetime.fromisoformat(bookmark(first)) >= started - timedelta(minutes=1)
    warnings = [line for line in first.stderr.splitlines() if "WARNING" in line]
    clamped = [line for line in warnings if "2099-01-01" in line]
    assert clamped, first.stderr[-2000:]
    assert "campaign 2021" in clamped[0]

    # The next run reads the lookback window again instead of nothing, for good.
    since = len(sim.requests)
    second = run_with_state(
        sim, config, tmp_path, [m for m in first.messages if m["type"] == "STATE"][-1]["value"]
    )
    assert second.returncode == 0, second.stderr
    assert outcome_windows(sim, since) == [
        f"from_date={day(today - timedelta(days=1))}&to_date={day(today)}"
    ]


def test_a_future_bookmark_in_the_state_is_clamped_with_a_warning(simulator, tmp_path, today):
    start = today - timedelta(days=3)
    sim = simulator(demo_assignments(), outcomes_start=start)
    config = outcomes_config(sim, start)
    run = run_with_state(sim, config, tmp_path, state_with("2099-05-01T00:00:00+00:00"))
    assert run.returncode == 0, run.stderr
    assert outcome_windows(sim) == [
        f"from_date={day(today - timedelta(days=1))}&to_date={day(today)}"
    ]
    warnings = [line for line in run.stderr.splitlines() if "WARNING" in line]
    assert [line for line in warnings if "2099-05-01" in line], run.stderr[-2000:]
    assert datetime.fromisoformat(bookmark(run)) <= datetime.now(UTC)


def test_a_future_start_date_is_honoured_on_every_run(simulator, tmp_path, today):
    sim = simulator(demo_assignments(), outcomes_start=today - timedelta(days=3))
    config = outcomes_config(sim, today + timedelta(days=10))
    first = sync(sim, config, tmp_path)
    assert first.returncode == 0, first.stderr
    assert outcome_windows(sim) == []
    since = len(sim.requests)
    state = [m["value"] for m in first.messages if m["type"] == "STATE"][-1]
    second = run_with_state(sim, config, tmp_path, state)
    assert second.returncode == 0, second.stderr
    assert outcome_windows(sim, since) == []
    assert second.records("call_outcomes") == []
    assert "start_date" in second.stderr
    assert "is in the future" in second.stderr


@pytest.mark.parametrize(
    ("start_date", "timezone", "warned"),
    [
        ("2026-12-07", "Europe/Oslo", False),  # already Oslo's today at 23:30 UTC
        ("2026-12-08", "Europe/Oslo", True),
        ("2026-12-07", "UTC", True),
        ("2026-12-07", "Not/AZone", False),  # the zone's own error is check_settings'
    ],
)
def test_a_future_start_date_is_one_after_cubes_today(start_date, timezone, warned, caplog):
    now = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)
    logger = logging.getLogger("tap-cube-test")
    with caplog.at_level(logging.WARNING, logger="tap-cube-test"):
        warn_future_start_date({"start_date": start_date, "timezone": timezone}, logger, now)
    assert ("is in the future" in caplog.text) is warned


def test_start_date_bounds_a_run_with_an_older_bookmark(simulator, tmp_path, today):
    sim = simulator(demo_assignments(), outcomes_start=today - timedelta(days=30))
    start = today - timedelta(days=2)
    old = (datetime.now(UTC) - timedelta(days=20)).isoformat(timespec="seconds")
    run = run_with_state(sim, outcomes_config(sim, start), tmp_path, state_with(old))
    assert run.returncode == 0, run.stderr
    assert outcome_windows(sim) == [f"from_date={day(start)}&to_date={day(today)}"]
    assert all(r[STAMP][:10] >= start.isoformat() for r in run.records("call_outcomes"))


@pytest.mark.parametrize(
    ("value", "campaign"),
    [
        ("yesterday", CAMPAIGN),
        (20240101, CAMPAIGN),
        (20240101.5, CAMPAIGN),
        (["2024-01-01"], CAMPAIGN),
        ("2024-01-01T10:00:00+01:00", str(CAMPAIGN)),
    ],
    ids=["not a timestamp", "a number", "a fraction", "a list", "campaign as text"],
)
def test_a_damaged_bookmark_fails_with_one_line(simulator, tmp_path, value, campaign, today):
    start = today - timedelta(days=3)
    sim = simulator(demo_assignments(), outcomes_start=start)
    run = run_with_state(sim, outcomes_config(sim, start), tmp_path, state_with(value, campaign))
    assert run.returncode == 1, run.stderr[-2000:]
    line = run.last_stderr_line
    assert line.startswith("tap-cube: error: the state of call_outcomes"), line
    assert "campaign" in line
    assert "meltano state" in line
    assert outcome_windows(sim) == []


# --------------------------------------------------------------------------- the edges

MINUTE = "call_outcome__report_as__submitted_when"
CATCH_ALL = "_cube_unparsed"


def last_state(run) -> dict:
    states: list[dict] = [m["value"] for m in run.messages if m["type"] == "STATE"]
    return states[-1]


@pytest.mark.parametrize(
    ("stamp", "minute", "keyed"),
    [
        # The 30 minutes before the first instant, and after the last: no instant, so
        # the row is keyed by its local minute, and the stamp kept as sent.
        ("0001-01-01T00:30:00.000+0100", "2024-03-05 18:00", "2024-03-05T18:00:00+01:00"),
        ("9999-12-31T23:30:00.000-0100", "2024-03-05 18:00", "2024-03-05T18:00:00+01:00"),
        # Nothing but the edge: keyed at the nearest instant there is.
        ("0001-01-01T00:30:00.000+0100", "", "0001-01-01T00:00:00+00:00"),
        ("", "0001-01-01 00:00", "0001-01-01T00:00:00+00:00"),
        ("9999-12-31T23:30:00.000-0100", "", "9999-12-31T23:59:59.999999+00:00"),
    ],
)
def test_a_row_stamped_at_no_instant_is_loaded_and_its_stamp_kept(
    simulator, tmp_path, stamp, minute, keyed, today
):
    start = today - timedelta(days=3)
    sim = simulator(demo_assignments(), outcomes_start=start)
    row = sim.add_call_outcome(CAMPAIGN, today - timedelta(days=1), {STAMP: stamp, MINUTE: minute})
    config = outcomes_config(sim, start)
    first = sync(sim, config, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (loaded,) = [
        r
        for r in first.records("call_outcomes")
        if r["crm__customer_id"] == row["crm__customer_id"]
        and (r.get(CATCH_ALL) or {}).get(STAMP, r[STAMP]) == (stamp or r[STAMP])
        and r[MINUTE] == minute
    ]
    assert loaded[STAMP] == keyed
    if stamp:
        assert loaded[CATCH_ALL][STAMP] == stamp
    assert loaded[MINUTE] == minute
    # Every later run reads on.
    second = run_with_state(sim, config, tmp_path, last_state(first))
    assert second.returncode == 0, second.stderr[-2000:]
    third = run_with_state(sim, config, tmp_path, last_state(second))
    assert third.returncode == 0, third.stderr[-2000:]


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00.000000+00:00",  # what the tap kept of a row stamped in year 1
        "0001-01-01T00:00:00+05:00",
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59.999999+00:00",
        "9999-12-31T23:00:00-05:00",
    ],
)
def test_a_bookmark_at_the_edge_never_fails_a_run(simulator, tmp_path, value, today):
    start = today - timedelta(days=3)
    sim = simulator(demo_assignments(), outcomes_start=start)
    config = outcomes_config(sim, start)
    run = run_with_state(sim, config, tmp_path, state_with(value))
    assert run.returncode == 0, run.stderr[-2000:]
    first_window = outcome_windows(sim)[0]
    assert first_window.startswith(f"from_date={day(start)}") or first_window.startswith(
        f"from_date={day(today - timedelta(days=1))}"
    )
    assert datetime.fromisoformat(bookmark(run)) <= datetime.now(UTC)
    again = run_with_state(sim, config, tmp_path, last_state(run))
    assert again.returncode == 0, again.stderr[-2000:]


def test_a_start_date_of_many_windows_gets_a_warning_with_their_number(simulator, tmp_path, today):
    start = today - timedelta(days=1000)
    sim = simulator(demo_assignments(), outcomes_start=today - timedelta(days=2))
    config = outcomes_config(sim, start, call_outcomes_window_days=1)
    run = sync(sim, config, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(outcome_windows(sim)) == 1001
    warnings = [line for line in run.stderr.splitlines() if "WARNING" in line and "1001" in line]
    assert warnings, run.stderr[-2000:]
    assert "start_date" in warnings[0]
    assert "campaign 2021" in warnings[0]


def test_a_start_date_of_few_windows_gets_no_warning(simulator, tmp_path, today):
    start = today - timedelta(days=5)
    sim = simulator(demo_assignments(), outcomes_start=start)
    run = sync(sim, outcomes_config(sim, start, call_outcomes_window_days=1), tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "windows" not in "\n".join(x for x in run.stderr.splitlines() if "WARNING" in x)


def test_start_date_in_year_1_plans_its_windows_without_overflow(simulator, today):
    from tap_cube.streams.call_outcomes import DayWindowStream
    from tap_cube.tap import TapCube

    sim = simulator(demo_assignments(), outcomes_start=today - timedelta(days=2))
    tap = TapCube(config=outcomes_config(sim, date(1, 1, 1)))
    stream = tap.streams["call_outcomes"]
    assert isinstance(stream, DayWindowStream)
    windows = list(stream.windows({"campaign_id": CAMPAIGN}, datetime.now(UTC)))
    assert windows[0][0] == date(1, 1, 1)
    assert windows[-1][1] == datetime.now(stream.facts.zone).date()
    assert len(windows) > 24_000


edge_bookmarks = st.builds(
    lambda moment, minutes, naive: (
        moment.isoformat()
        + (
            ""
            if naive
            else f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        )
    ),
    st.one_of(
        st.datetimes(max_value=datetime(1, 1, 3)),
        st.datetimes(min_value=datetime(9999, 12, 29)),
    ),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
    st.booleans(),
)


def test_no_bookmark_at_the_edges_fails_the_windows(simulator, today):
    """Any bookmark of year 1 or 9999, at any offset, in any zone: the windows are planned."""
    from tap_cube.streams.call_outcomes import DayWindowStream
    from tap_cube.tap import TapCube

    sim = simulator(demo_assignments(), outcomes_start=today - timedelta(days=2))
    streams = [
        TapCube(config=outcomes_config(sim, today - timedelta(days=2), timezone=zone)).streams[
            "call_outcomes"
        ]
        for zone in ("Europe/Oslo", "America/Sao_Paulo", "Pacific/Kiritimati")
    ]
    context = {"campaign_id": CAMPAIGN}

    @settings(max_examples=600, deadline=None)
    @given(value=edge_bookmarks, stream=st.sampled_from(streams))
    def plan(value, stream):
        assert isinstance(stream, DayWindowStream)
        state = stream.get_context_state(context)
        state["replication_key_value"] = value
        assert parse_bookmark(value) is not None, value
        now = datetime.now(UTC)
        stream.clamp_bookmark(state, now, "a test", "the bookmark")  # as a read does first
        windows = list(stream.windows(context, now))
        assert windows, value  # never later than today: start_date bounds it
        assert windows[-1][1] == now.astimezone(stream.facts.zone).date()

    plan()
