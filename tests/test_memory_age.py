"""Memory that heals: a partition's memory has a birth time, and memory older than
resend_before or max_memory_age_days is not trusted (the partition is sent whole, its
delivered ids kept); a partition that deletions track and that arrives without memory
is named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tap_cube.records import changes, deletions, memory_age
from tests.conftest import config_for, plain_assignment, run_tap
from tests.test_changes import partition_state, sent, summary
from tests.test_deletions import last_state, run_with_state, state_a_target_may_keep
from tests.test_errors import assert_fails_with

BORN = memory_age.STATE_KEY


def set_born(state: dict, born: datetime | None, index: int | None = None) -> dict:
    """The state with the partitions' (or one partition's) memory born at `born`."""
    for at, partition in enumerate(state["bookmarks"]["customers"]["partitions"]):
        if index is None or at == index:
            if born is None:
                partition.pop(BORN, None)
            else:
                partition[BORN] = born.isoformat()
    return state


def removed_ids(run) -> set[str]:
    return {str(r["crm__customer_id"]) for r in run.records() if r.get("_sdc_deleted_at")}


def customers_of(run, assignment: int) -> tuple[int, int, int]:
    """emitted, unchanged and deleted of an assignment's customers (not call-flow rows)."""
    return summary(run, f"| customers: assignment {assignment}")


def two_assignments(simulator, tmp_path, **overrides):
    sim = simulator([plain_assignment(7, 400), plain_assignment(8, 1200)])
    config = config_for(sim, [7, 8], detect_deletions=True, skip_unchanged=True, **overrides)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    return sim, config, first


def test_a_complete_read_gives_the_memory_its_birth_time(simulator, tmp_path):
    before = datetime.now(UTC)
    _sim, config, first = two_assignments(simulator, tmp_path)
    born = datetime.fromisoformat(partition_state(first)[BORN])
    assert before <= born <= datetime.now(UTC)
    # A run that skips unchanged records does not renew it: its memory is as old as before.
    second = run_with_state(config, tmp_path, last_state(first))
    assert customers_of(second, 7) == (0, 400, 0)
    assert partition_state(second)[BORN] == partition_state(first)[BORN]


def test_memory_older_than_its_age_is_sent_whole_and_still_finds_deletions(simulator, tmp_path):
    sim, config, first = two_assignments(simulator, tmp_path, max_memory_age_days=7)
    gone = {str(c["crm__customer_id"]) for c in sim.customers(7)[:3]}
    sim.set_count(7, 397, at="start")
    state = set_born(last_state(first), datetime.now(UTC) - timedelta(days=7, minutes=1))
    second = run_with_state(config, tmp_path, state)
    assert second.returncode == 0, second.stderr
    assert len(sent(second)) == 397 + 1200
    assert removed_ids(second) == gone
    assert "customers: assignment 7: sent whole this once: its memory is 7.0 days old" in (
        second.stderr
    )
    renewed = datetime.fromisoformat(partition_state(second)[BORN])
    assert renewed > datetime.now(UTC) - timedelta(minutes=5)
    third = run_with_state(config, tmp_path, last_state(second))
    assert sent(third) == {}


def test_memory_younger_than_half_its_age_is_trusted(simulator, tmp_path):
    _sim, config, first = two_assignments(simulator, tmp_path, max_memory_age_days=7)
    state = set_born(last_state(first), datetime.now(UTC) - timedelta(days=3))
    second = run_with_state(config, tmp_path, state)
    assert sent(second) == {}
    assert "sent whole this once" not in second.stderr


def test_refreshes_are_spread_over_the_partitions():
    limits = [
        memory_age.age_limit(7, "customers", {"assignment_id": n}).total_seconds() / 86400
        for n in range(1000)
    ]
    assert all(3.5 <= days <= 7 for days in limits)
    # Daily runs refresh a partition every 4 days (a seventh of them), 5, 6 or 7 days
    # (two sevenths each), so partitions born on one day soon refresh on different days.
    periods = [int(days) + 1 for days in limits]
    assert 100 < periods.count(4) < 190, periods.count(4)
    for period in (5, 6, 7):
        assert 230 < periods.count(period) < 340, periods.count(period)
    assert memory_age.age_limit(7, "customers", {"assignment_id": 1}) == memory_age.age_limit(
        7, "customers", {"assignment_id": 1}
    )


def test_resend_before_sends_every_older_partition_whole_once(simulator, tmp_path):
    sim, config, first = two_assignments(simulator, tmp_path)
    gone = {str(c["crm__customer_id"]) for c in sim.customers(8)[:2]}
    sim.set_count(8, 1198, at="start")
    config["resend_before"] = datetime.now(UTC).isoformat()
    second = run_with_state(config, tmp_path, last_state(first))
    assert second.returncode == 0, second.stderr
    assert len(sent(second)) == 400 + 1198
    assert removed_ids(second) == gone
    assert "assignment 8: sent whole this once: its memory is from " in second.stderr
    assert "before resend_before" in second.stderr
    # The setting may stay: what was sent after it is trusted.
    third = run_with_state(config, tmp_path, last_state(second))
    assert third.returncode == 0, third.stderr
    assert sent(third) == {}


def test_resend_before_carries_on_after_a_run_that_fails_part_way(simulator, tmp_path):
    sim, config, first = two_assignments(simulator, tmp_path)
    config["resend_before"] = datetime.now(UTC).isoformat()
    sim.fail_next("/assignments/8/customers/?page=2", 400, json.dumps({"detail": "Bad request"}))
    failed = run_with_state(config, tmp_path, last_state(first))
    assert failed.returncode != 0
    kept = state_a_target_may_keep(failed, last_state(first))
    assert kept is not None
    again = run_with_state(config, tmp_path, kept)
    assert again.returncode == 0, again.stderr
    # Assignment 7 was sent whole after resend_before; assignment 8 not yet.
    assert customers_of(again, 7) == (0, 400, 0)
    assert customers_of(again, 8) == (1200, 0, 0)
    done = run_with_state(config, tmp_path, last_state(again))
    assert sent(done) == {}


def test_memory_without_a_birth_time_is_sent_whole_once(simulator, tmp_path):
    _sim, config, first = two_assignments(simulator, tmp_path)
    second = run_with_state(config, tmp_path, set_born(last_state(first), None, index=1))
    assert customers_of(second, 7) == (0, 400, 0)
    assert customers_of(second, 8) == (1200, 0, 0)
    assert "assignment 8: sent whole this once: its memory has no birth time" in second.stderr


def test_memory_born_in_the_future_is_not_trusted(simulator, tmp_path):
    _sim, config, first = two_assignments(simulator, tmp_path)
    state = set_born(last_state(first), datetime.now(UTC) + timedelta(days=30), index=0)
    second = run_with_state(config, tmp_path, state)
    assert customers_of(second, 7) == (400, 0, 0)
    assert "assignment 7: sent whole this once: its memory's birth time" in second.stderr


def test_without_skip_unchanged_nothing_is_distrusted_but_the_birth_is_kept(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 200)])
    config = config_for(sim, [7], detect_deletions=True, resend_before="2020-01-01T00:00:00Z")
    first = run_tap(config, tmp_path)
    assert BORN in partition_state(first)
    second = run_with_state(config, tmp_path, set_born(last_state(first), datetime(2019, 1, 1)))
    assert "sent whole this once" not in second.stderr
    assert partition_state(second)[BORN] > "2020"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"max_memory_age_days": 0}, "max_memory_age_days must be greater than 0"),
        ({"max_memory_age_days": 40_000}, "max_memory_age_days must be at most 36500"),
        ({"resend_before": "yesterday"}, "resend_before 'yesterday' is not an ISO 8601"),
        ({"resend_before": "2999-01-01T00:00:00Z"}, "resend_before 2999-01-01T00:00:00Z is in"),
    ],
)
def test_settings_of_the_memory_age_are_checked(tmp_path, overrides, fragment):
    config = {
        "api_url": "https://acme.headshed.com/api/v1",
        "auth_token": "sim-token-7f3a9c",
        "assignment_ids": [1],
        **overrides,
    }
    assert_fails_with(run_tap(config, tmp_path), "invalid configuration", fragment)


@pytest.mark.parametrize("value", ["last week", 5, "2026-13-01T00:00:00Z"])
def test_a_damaged_birth_time_fails_with_one_line(simulator, tmp_path, value):
    _sim, config, first = two_assignments(simulator, tmp_path)
    state = last_state(first)
    state["bookmarks"]["customers"]["partitions"][1][BORN] = value
    second = run_with_state(config, tmp_path, state)
    assert_fails_with(second, "the state of customers", '"assignment_id": 8', BORN)


# --- what cannot be healed ------------------------------------------------------------


def test_a_partition_without_deletion_memory_is_named_with_its_recovery(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 100)])
    config = config_for(sim, [7], detect_deletions=True)
    first = run_tap(config, tmp_path)
    lines = [line for line in first.stderr.splitlines() if "| customers: assignment 7: no" in line]
    assert len(lines) == 1, first.stderr
    assert "INFO" in lines[0]
    assert "customers: assignment 7: no delivered ids in the state" in lines[0]
    assert "resend_before" in lines[0]
    second = run_with_state(config, tmp_path, last_state(first))
    assert "no delivered ids" not in second.stderr


def test_a_partition_whose_memory_was_dropped_beside_others_is_a_warning(simulator, tmp_path):
    """`meltano state merge` of a state naming one partition replaces the list."""
    _sim, config, first = two_assignments(simulator, tmp_path)
    state = last_state(first)
    partitions = state["bookmarks"]["customers"]["partitions"]
    state["bookmarks"]["customers"]["partitions"] = [
        p for p in partitions if p["context"] == {"assignment_id": 7}
    ]
    second = run_with_state(config, tmp_path, state)
    lines = [line for line in second.stderr.splitlines() if "no delivered ids" in line]
    assert len(lines) == 1, second.stderr
    assert "WARNING" in lines[0]
    assert "customers: assignment 8" in lines[0]
    assert "other partitions of customers have theirs" in lines[0]
    assert deletions.STATE_KEY in partition_state(second, index=1)
    assert changes.STATE_KEY in partition_state(second, index=1)


# --- ids before the data they vouch for -----------------------------------------------


def test_states_while_a_partition_is_read_hold_every_id_sent_before_them(
    simulator, tmp_path, capsys, monkeypatch
):
    from tap_cube.records.deletions import decode_ids
    from tap_cube.streams.cube_stream import CubeStream
    from tap_cube.tap import TapCube

    sim = simulator([plain_assignment(7, 2000)])
    config = config_for(
        sim, [7], detect_deletions=True, skip_unchanged=True, max_concurrent_requests=1
    )
    first = run_tap(config, tmp_path)
    remembered = {str(c["crm__customer_id"]) for c in sim.customers(7)}
    sim.set_count(7, 2001, at="start")  # Y, new on page 1
    added = str(sim.customers(7)[0]["crm__customer_id"])
    assert added not in remembered
    monkeypatch.setattr(CubeStream, "checkpoint_interval", 0.0)  # before every page
    TapCube(config=config, state=last_state(first)).sync_all()
    messages = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    sent: set[str] = set()
    during: list[dict] = []
    for message in messages:
        if message["type"] == "RECORD" and message["stream"] == "customers":
            sent.add(str(message["record"]["crm__customer_id"]))
        elif message["type"] == "STATE" and sent:
            partition = message["value"]["bookmarks"]["customers"]["partitions"][0]
            numbers, others = decode_ids(partition[deletions.STATE_KEY])
            held = {str(n) for n in numbers} | {str(o) for o in others}
            assert held >= remembered | sent
            # Once Y went out the stored hashes vouch no more; a complete read puts new ones.
            if changes.STATE_KEY not in partition:
                during.append(partition)
    assert added in sent
    # Before page 2 (a STATE equal to the last one is not written again).
    assert during, "no STATE while the partition was read"

    # Meltano keeps a STATE from the middle of the partition (the target drained, then
    # the run was stopped); Y is removed before the next run: it is marked deleted.
    kept = last_state(first)
    kept["bookmarks"]["customers"]["partitions"][0] = during[0]
    sim.set_count(7, 2000, at="start")
    again = run_with_state(config, tmp_path, kept)
    assert again.returncode == 0, again.stderr
    assert removed_ids(again) == {added}


def test_a_checkpoint_waits_longer_when_writing_it_took_long():
    from tap_cube.records.completeness import CHECKPOINT_COST_FACTOR, Checkpoint

    now = [0.0]
    checkpoint = Checkpoint(60.0, clock=lambda: now[0])
    now[0] = 59.0
    assert not checkpoint.due()
    now[0] = 60.0
    assert checkpoint.due()
    with checkpoint.timed():
        now[0] = 70.0  # a STATE that took 10 s
    now[0] = 70.0 + CHECKPOINT_COST_FACTOR * 10 - 1
    assert not checkpoint.due()
    now[0] += 1
    assert checkpoint.due()
