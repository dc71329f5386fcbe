"""A partition's memory (delivered ids, record hashes) vouches only for what it saw.

Its state notes what the memory vouches for (`memory_vouches_for`): the streams its
records go to, their schema as emitted, the stream maps and flattening, the timezone,
and whether detect_deletions and skip_unchanged were on. When any of it changed, the
partition is sent whole once and its memory rebuilt; delivered ids that name rows of
another table are let go.
"""

from __future__ import annotations

import json
import re

import pytest

from tap_cube.records import changes
from tap_cube.records.deletions import STATE_KEY as IDS
from tests.conftest import config_for, plain_assignment, run_tap
from tests.test_deletions import deletions, last_state, run_with_state

#: The key of a partition's state that notes what its memory vouches for.
VOUCHES_FOR = "memory_vouches_for"
ALIAS = {"customers": {"__alias__": "cube_customers"}}


def live(run, stream: str = "customers") -> set[str]:
    """The ids of the live records a run sent to `stream`."""
    return {str(r["crm__customer_id"]) for r in run.records(stream) if not r.get("_sdc_deleted_at")}


def deleted(run, stream: str = "customers") -> set[str]:
    return {str(r["crm__customer_id"]) for r in deletions(run, stream)}


def served(sim, assignment_id: int = 7) -> set[str]:
    return {str(c["crm__customer_id"]) for c in sim.customers(assignment_id)}


def partition(state: dict, stream: str = "customers", index: int = 0) -> dict:
    found: dict = state["bookmarks"][stream]["partitions"][index]
    return found


def sent_whole_lines(run) -> list[str]:
    return re.findall(r"(?<![a-z_])customers: assignment \d+: sent whole this once: .*", run.stderr)


@pytest.mark.parametrize("detect_deletions", [False, True])
def test_a_stream_renamed_by_a_map_gets_every_record(simulator, tmp_path, detect_deletions):
    """After a skip_unchanged run, an alias map sends the stream to a new table: that
    table must get every customer, and no deletion record for rows it never had."""
    sim = simulator([plain_assignment(7, 300), plain_assignment(8, 50)])
    config = config_for(sim, [7, 8], skip_unchanged=True, detect_deletions=detect_deletions)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    sim.set_count(7, 290, at="start")  # 10 removed: rows of the old table only
    renamed = run_with_state({**config, "stream_maps": ALIAS}, tmp_path, last_state(first))
    assert renamed.returncode == 0, renamed.stderr
    assert live(renamed, "cube_customers") == served(sim, 7) | served(sim, 8)
    assert deletions(renamed, "cube_customers") == []
    assert renamed.records("customers") == []
    lines = sent_whole_lines(renamed)
    assert len(lines) == 2, renamed.stderr
    assert "the streams its records go to (now cube_customers)" in lines[0]
    if detect_deletions:
        assert "the ids it delivered name rows of where its records went before" in lines[0]

    # From then on the new table is remembered: only what changes is sent, and what is
    # removed is marked deleted there.
    gone = str(sim.customers(7)[0]["crm__customer_id"])
    sim.set_count(7, 289, at="start")
    again = run_with_state({**config, "stream_maps": ALIAS}, tmp_path, last_state(renamed))
    assert again.returncode == 0, again.stderr
    assert live(again, "cube_customers") == set()
    assert deleted(again, "cube_customers") == ({gone} if detect_deletions else set())
    assert sent_whole_lines(again) == []


def test_a_change_of_selection_that_leaves_records_alike_sends_the_partition_whole(
    simulator, tmp_path
):
    """Deselecting a column no record carries changes no record's hash; the schema the
    target gets still changed, and the memory vouches only for the one it had."""
    sim = simulator([plain_assignment(7, 200)])
    config = config_for(sim, [7], skip_unchanged=True)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    assert not [r for r in first.records() if "_cube_unparsed" in r]
    catalog = json.loads(run_tap(config, tmp_path, "--discover").stdout)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == ["properties", "_cube_unparsed"]:
                item["metadata"]["selected"] = False
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    catalog_args = ("--catalog", str(tmp_path / "catalog.json"))
    second = run_with_state(config, tmp_path, last_state(first), *catalog_args)
    assert second.returncode == 0, second.stderr
    assert "_cube_unparsed" not in second.schema()["properties"]
    assert live(second) == served(sim)
    [line] = sent_whole_lines(second)
    assert "the schema, selection, stream maps or flattening changed" in line
    third = run_with_state(config, tmp_path, last_state(second), *catalog_args)
    assert live(third) == set()


def test_a_change_of_timezone_sends_the_partition_whole(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 200)])
    config = config_for(sim, [7], skip_unchanged=True)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    moved = {**config, "timezone": "America/New_York"}
    second = run_with_state(moved, tmp_path, last_state(first))
    assert second.returncode == 0, second.stderr
    assert live(second) == served(sim)
    [line] = sent_whole_lines(second)
    assert line.endswith("sent whole this once: the timezone changed since its memory was kept")
    third = run_with_state(moved, tmp_path, last_state(second))
    assert live(third) == set()


@pytest.mark.parametrize("skip_unchanged", [False, True])
def test_a_run_with_deletions_off_in_between_leaves_ids_a_later_run_can_trust(
    simulator, tmp_path, skip_unchanged
):
    """Customers a run with detect_deletions off loaded, and that are removed before the
    next run with it on, are marked deleted by that run; the run with it off marks
    nothing deleted itself."""
    sim = simulator([plain_assignment(7, 100)])
    on = config_for(sim, [7], detect_deletions=True, skip_unchanged=skip_unchanged)
    off = {**on, "detect_deletions": False}
    first = run_tap(on, tmp_path)
    assert first.returncode == 0, first.stderr
    sim.set_count(7, 105)  # 5 new customers
    new = served(sim) - live(first)
    sim.set_count(7, 104, at="start")  # and one of the first run's removed
    removed_early = live(first) - served(sim)
    between = run_with_state(off, tmp_path, last_state(first))
    assert between.returncode == 0, between.stderr
    assert new <= live(between)
    assert [r for r in between.records() if "_sdc_deleted_at" in r] == []
    sim.set_count(7, 99)  # the 5 new customers are removed again
    assert not new & served(sim)
    later = run_with_state(on, tmp_path, last_state(between))
    assert later.returncode == 0, later.stderr
    assert deleted(later) == new | removed_early
    if skip_unchanged:
        assert live(later) == served(sim)  # detect_deletions turned on: sent whole once
    after = run_with_state(on, tmp_path, last_state(later))
    assert deleted(after) == set()


def test_a_run_with_deletions_off_keeps_no_ids_where_there_were_none(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 100)])
    run = run_tap(config_for(sim, [7]), tmp_path)
    assert run.returncode == 0, run.stderr
    assert IDS not in partition(last_state(run))
    assert VOUCHES_FOR not in partition(last_state(run))


def test_a_memory_kept_by_an_earlier_tap_cube_is_rebuilt_and_its_ids_kept(simulator, tmp_path):
    """A state from before `memory_vouches_for`: the partition is sent whole once, and
    the ids it delivered still mark what was removed."""
    sim = simulator([plain_assignment(7, 200)])
    config = config_for(sim, [7], skip_unchanged=True, detect_deletions=True)
    first = run_tap(config, tmp_path)
    state = last_state(first)
    del partition(state)[VOUCHES_FOR]
    sim.set_count(7, 197, at="start")
    second = run_with_state(config, tmp_path, state)
    assert second.returncode == 0, second.stderr
    assert live(second) == served(sim)
    assert deleted(second) == live(first) - served(sim)
    [line] = sent_whole_lines(second)
    assert "its memory was kept by an earlier tap-cube" in line
    # last_state parses the run's output afresh: the first run's note as it was.
    noted = partition(last_state(first))[VOUCHES_FOR]
    assert partition(last_state(second))[VOUCHES_FOR] == noted


def test_the_memory_notes_what_it_vouches_for_and_an_unchanged_run_trusts_it(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 200)])
    config = config_for(sim, [7], skip_unchanged=True, detect_deletions=True)
    first = run_tap(config, tmp_path)
    noted = partition(last_state(first))
    assert changes.STATE_KEY in noted
    assert IDS in noted
    assert re.fullmatch(r"[0-9a-f]{16}(-[0-9a-f]{16}){3}", noted[VOUCHES_FOR])
    second = run_with_state(config, tmp_path, last_state(first))
    assert live(second) == set()
    assert sent_whole_lines(second) == []
    assert partition(last_state(second))[VOUCHES_FOR] == noted[VOUCHES_FOR]


@pytest.mark.parametrize("value", [42, "", "abc", "0" * 67, ["x"]])
def test_a_damaged_note_of_what_the_memory_vouches_for_fails_with_one_line(
    simulator, tmp_path, value
):
    sim = simulator([plain_assignment(7, 50)])
    config = config_for(sim, [7], skip_unchanged=True)
    state = last_state(run_tap(config, tmp_path))
    partition(state)[VOUCHES_FOR] = value
    run = run_with_state(config, tmp_path, state)
    assert run.returncode == 1
    assert run.last_stderr_line.startswith(
        'tap-cube: error: the state of customers, partition {"assignment_id": 7}: '
        "its memory_vouches_for is"
    ), run.stderr
    assert run.records() == []
