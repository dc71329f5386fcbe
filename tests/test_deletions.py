"""detect_deletions: ids no longer served become deletion records, per complete partition."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import zlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroaring import BitMap

from tap_cube.errors import DeletionsWithheldError
from tap_cube.records import deletions as deletions_module
from tap_cube.records.deletions import STATE_KEY, decode_ids, encode_ids
from tests.conftest import TapRun, config_for, plain_assignment, run_tap, selecting


def last_state(run):
    states = [m["value"] for m in run.messages if m["type"] == "STATE"]
    return states[-1]


def deletions(run, stream: str = "customers") -> list[dict]:
    return [r for r in run.records(stream) if r.get("_sdc_deleted_at")]


def state_a_target_may_keep(run, state_before: dict | None) -> dict | None:
    """The state Meltano keeps after a failed run: the last STATE the run emitted, if any
    (a target confirms a STATE only after loading the records before it)."""
    states = [m["value"] for m in run.messages if m["type"] == "STATE"]
    return states[-1] if states else state_before


def run_with_state(config, tmp_path, state: dict, *args: str):
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    return run_tap(config, tmp_path, "--state", str(state_file), *args)


@pytest.mark.parametrize("style", ["dense", "sparse", "text"])
def test_customers_removed_since_last_run_are_marked_deleted(simulator, tmp_path, style):
    sim = simulator(
        [
            plain_assignment(7, 1200, customer_id_style=style),
            plain_assignment(8, 300, customer_id_style=style),
        ]
    )
    config = config_for(sim, [7, 8], detect_deletions=True)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    assert deletions(first) == []
    assert "_sdc_deleted_at" in first.schema()["properties"]
    before = {r["crm__customer_id"] for r in sim.customers(7)}
    sim.set_count(7, 1100, at="start")  # 100 customers removed from assignment 7
    removed = before - {r["crm__customer_id"] for r in sim.customers(7)}
    second = run_with_state(config, tmp_path, last_state(first))
    assert second.returncode == 0, second.stderr
    marked = deletions(second)
    assert {r["crm__customer_id"] for r in marked} == removed
    assert {r["assignment_id"] for r in marked} == {7}
    assert all(set(r) == {"assignment_id", "crm__customer_id", "_sdc_deleted_at"} for r in marked)
    assert "assignment 7: 100 records are no longer served; marked deleted" in second.stderr
    # A third run has nothing new to delete.
    third = run_with_state(config, tmp_path, last_state(second))
    assert deletions(third) == []


@pytest.mark.parametrize(
    ("earlier_run", "style", "skip_unchanged"),
    [(True, "dense", False), (False, "text", False), (True, "text", True), (True, "dense", True)],
)
def test_a_customer_a_failed_run_sent_and_that_is_gone_by_the_next_is_marked_deleted(
    simulator, tmp_path, earlier_run, style, skip_unchanged
):
    """A run fails after it sent a customer new to the state; the customer is removed
    before the next complete run, which must still mark it deleted. (Whether the failed
    run is the first or a later one, and with skip_unchanged too.)"""
    sim = simulator([plain_assignment(7, 1200, customer_id_style=style)])
    config = config_for(sim, [7], detect_deletions=True, skip_unchanged=skip_unchanged)
    state = None
    if earlier_run:
        first = run_tap(config, tmp_path)
        assert first.returncode == 0, first.stderr
        state = last_state(first)
        sim.set_count(7, 1201, at="start")  # a new customer, on page 1
    new = str(sim.customers(7)[0]["crm__customer_id"])
    sim.fail_next("/customers/?page=2", 400, json.dumps({"detail": "Bad request"}))
    failed = run_with_state(config, tmp_path, state) if state else run_tap(config, tmp_path)
    assert failed.returncode == 1
    assert new in {str(r["crm__customer_id"]) for r in failed.records()}
    sim.set_count(7, 1200 if earlier_run else 1199, at="start")  # the new customer is gone
    kept = state_a_target_may_keep(failed, state)
    assert kept is not None, "the failed run left no state naming what it sent"
    again = run_with_state(config, tmp_path, kept)
    assert again.returncode == 0, again.stderr
    assert [str(r["crm__customer_id"]) for r in deletions(again)] == [new]
    # Every live customer is sent again: with skip_unchanged, the failed run withdrew
    # the partition's hashes before it sent the new customer.
    assert len(sent_live(again)) == (1200 if earlier_run else 1199)


#: tap-cube's command, sent SIGTERM by itself as the first block of output that holds
#: the text given first (a record) is written: the signal lands in the writer, outside
#: the partition's read, wherever the SDK writes that block from.
SIGNAL_AS_IT_WRITES = """
import os, signal, sys
from tap_cube import cli, output
marker = sys.argv.pop(1).encode()
write = output.write_output
def write_and_signal(data):
    if marker in data:
        os.kill(os.getpid(), signal.SIGTERM)
    write(data)
output.write_output = write_and_signal
cli.main()
"""


def run_stopped_as_it_writes(marker: str, config: dict, tmp_path, *args: str) -> TapRun:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    command = [sys.executable, "-c", SIGNAL_AS_IT_WRITES, marker, "--config", str(config_file)]
    process = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    return TapRun(process.returncode, process.stdout, process.stderr)


@pytest.mark.parametrize("skip_unchanged", [False, True])
def test_a_customer_a_stopped_run_wrote_and_that_is_gone_by_the_next_is_marked_deleted(
    simulator, tmp_path, skip_unchanged
):
    """SIGTERM lands wherever the main thread is: here while the block holding a customer
    new to the state is written. Without skip_unchanged that is the SDK's write of a
    record, mid-partition; with it, the flush before the stream's last STATE, after the
    read. Either way the STATE written on the way out names the customer, so the next
    complete run marks it deleted once it is gone."""
    sim = simulator([plain_assignment(7, 1200)])
    config = config_for(sim, [7], detect_deletions=True, skip_unchanged=skip_unchanged)
    catalog = tmp_path / "catalog.json"
    discovered = json.loads(run_tap(config, tmp_path, "--discover").stdout)
    catalog.write_text(json.dumps(selecting(discovered, "customers")))
    first = run_tap(config, tmp_path, "--catalog", str(catalog))
    assert first.returncode == 0, first.stderr
    sim.set_count(7, 1201, at="start")  # a new customer, on page 1
    new = sim.customers(7)[0]["crm__customer_id"]

    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(last_state(first)))
    marker = f'"crm__customer_id":{json.dumps(new)}'
    args = ("--catalog", str(catalog), "--state", str(state_file))
    stopped = run_stopped_as_it_writes(marker, config, tmp_path, *args)
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert "stopped by SIGTERM" in stopped.last_stderr_line
    assert new in [r["crm__customer_id"] for r in stopped.records()]

    sim.set_count(7, 1200, at="start")  # the new customer is gone
    again = run_with_state(config, tmp_path, last_state(stopped), "--catalog", str(catalog))
    assert again.returncode == 0, again.stderr
    assert [r["crm__customer_id"] for r in deletions(again)] == [new]


def sent_live(run) -> list[dict]:
    return [r for r in run.records() if not r.get("_sdc_deleted_at")]


def test_state_is_written_when_a_stream_is_done_not_while_records_flow(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 30_000)])
    run = run_tap(config_for(sim, [7], detect_deletions=True), tmp_path)
    assert run.returncode == 0, run.stderr
    kinds = [m["type"] for m in run.messages]
    first_record = kinds.index("RECORD")
    states_among_records = [
        i for i, kind in enumerate(kinds) if kind == "STATE" and i > first_record
    ]
    # One state per stream at its end; none in the middle of the 30,000 customers.
    assert len(states_among_records) <= 5
    customers = last_state(run)["bookmarks"]["customers"]["partitions"][0]
    assert len(json.dumps(customers[STATE_KEY])) < 2000  # 30,000 dense ids, compressed


def test_a_skipped_assignment_deletes_nothing_and_keeps_its_ids(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 600), plain_assignment(8, 400)])
    config = config_for(sim, [7, 8], detect_deletions=True, skip_inaccessible_assignments=True)
    first = run_tap(config, tmp_path)
    sim.set_access(8, "forbidden")
    second = run_with_state(config, tmp_path, last_state(first))
    assert second.returncode == 0, second.stderr
    assert deletions(second) == []
    sim.set_access(8, "ok")
    sim.set_count(8, 390)
    third = run_with_state(config, tmp_path, last_state(second))
    assert len(deletions(third)) == 10  # the ids of the first run were kept through the skip


def test_a_list_that_never_adds_up_deletes_nothing(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1000)], next_style="same")
    config = config_for(sim, [7], detect_deletions=True, max_concurrent_requests=1)
    first = run_tap(config, tmp_path)
    customers = sim.customers(7)
    short = {"count": 1000, "next": None, "previous": None, "results": customers[500:990]}
    sim.fail_next("/customers/?page=2", 200, json.dumps(short), times=10)
    second = run_with_state(config, tmp_path, last_state(first))
    assert second.returncode == 1
    assert deletions(second) == []


def test_a_read_without_a_count_deletes_nothing_and_a_later_counted_one_does(simulator, tmp_path):
    # The server's pages carry no count, and its links end after 4 of 6 pages: the 400
    # customers of pages 5 and 6 are live, only not served this time.
    sim = simulator([plain_assignment(7, 1200)], page_size=200, next_style="same")
    config = config_for(sim, [7], detect_deletions=True, max_concurrent_requests=1)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    customers = sim.customers(7)
    path = "/assignments/7/customers/"
    for n in (2, 3, 4):
        following = f"{sim.url}{path}?page={n + 1}" if n < 4 else None
        body = {"next": following, "previous": None, "results": customers[(n - 1) * 200 : n * 200]}
        sim.fail_next(f"{path}?page={n}", 200, json.dumps(body))
    body = {"next": f"{sim.url}{path}?page=2", "previous": None, "results": customers[:200]}
    sim.fail_next(path, 200, json.dumps(body), times=2)  # discovery's sample, the sync
    second = run_with_state(config, tmp_path, last_state(first))
    assert second.returncode == 0, second.stderr
    assert len(second.records()) == 800
    assert deletions(second) == []
    said = [line for line in second.stderr.splitlines() if "no count" in line]
    assert len(said) == 1, said
    assert "customers: assignment 7: " in said[0]
    assert "nothing is marked deleted" in said[0]
    # The ids it did not serve were kept: a counted read deletes what is really gone.
    sim.set_count(7, 1100, at="start")
    gone = {r["crm__customer_id"] for r in customers} - {
        r["crm__customer_id"] for r in sim.customers(7)
    }
    third = run_with_state(config, tmp_path, last_state(second))
    assert third.returncode == 0, third.stderr
    assert {r["crm__customer_id"] for r in deletions(third)} == gone
    assert len(gone) == 100


def test_off_by_default(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 600)])
    first = run_tap(config_for(sim, [7]), tmp_path)
    assert "_sdc_deleted_at" not in first.schema()["properties"]
    sim.set_count(7, 500)
    second = run_with_state(config_for(sim, [7]), tmp_path, last_state(first))
    assert deletions(second) == []


def test_rows_removed_while_read_are_deleted_in_the_same_run(simulator):
    from tests.test_concurrency import customers_stream

    sim = simulator([plain_assignment(7, 1500)], latency=0.01)
    stream = customers_stream(sim, [7], max_concurrent_requests=1, detect_deletions=True)
    gone = [r["crm__customer_id"] for r in sim.customers(7)[:30]]
    emitted: list[str] = []
    deleted: list[str] = []
    for index, record in enumerate(stream.get_records({"assignment_id": 7})):
        (deleted if record.get("_sdc_deleted_at") else emitted).append(record["crm__customer_id"])
        if index == 0:
            sim.set_count(7, 1470, at="start")
    assert set(gone) <= set(emitted)  # served before they went
    assert sorted(deleted) == sorted(gone)  # and marked deleted once the list added up


# --- the deletion guard: one short answer must not wipe a partition ----------------------


def test_an_emptied_assignment_deletes_nothing_and_fails_naming_it(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 600), plain_assignment(8, 300)])
    config = config_for(sim, [7, 8], detect_deletions=True)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    sim.set_count(7, 0)
    sim.set_count(8, 290)
    second = run_with_state(config, tmp_path, last_state(first))
    assert second.returncode == 1, second.stderr[-2000:]
    # The first stream with deletions (in name order) stops the run once its
    # partitions are read: the other assignment deleted as usual there.
    marked = deletions(second, "callflow_customers")
    assert {r["assignment_id"] for r in marked} == {8}
    assert len(marked) == 10
    assert deletions(second) == []
    line = second.last_stderr_line
    assert line.startswith(
        "tap-cube: error: callflow_customers: assignment 7: 600 of the 600 rows it delivered "
        "before would be marked deleted (the list came back empty), more than "
        "max_deletion_share (0.5) allows"
    ), line
    assert "max_deletion_share: 1 (TAP_CUBE_MAX_DELETION_SHARE=1)" in line

    # Allowed on purpose, the next run deletes them: the ids were kept.
    allowed = run_with_state({**config, "max_deletion_share": 1}, tmp_path, last_state(first))
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    for stream in ("customers", "callflow_customers"):
        assert {r["assignment_id"] for r in deletions(allowed, stream)} == {7, 8}
        assert len(deletions(allowed, stream)) == 610


@pytest.mark.parametrize(
    ("remaining", "share", "fails"),
    [(60, None, False), (40, None, True), (40, 0.7, False), (99, 0, True), (100, 0, False)],
)
def test_the_share_a_run_may_delete(simulator, tmp_path, remaining, share, fails):
    sim = simulator([plain_assignment(7, 100)])
    config = config_for(sim, [7], detect_deletions=True, max_deletion_share=share)
    first = run_tap(config, tmp_path)
    sim.set_count(7, remaining)
    second = run_with_state(config, tmp_path, last_state(first))
    assert (second.returncode == 1) == fails, second.stderr[-2000:]
    assert len(deletions(second)) == (0 if fails else 100 - remaining)
    if fails:
        assert f"assignment 7: {100 - remaining} of the 100 rows" in second.last_stderr_line


def test_a_withheld_partition_keeps_every_id_it_delivered(simulator):
    from tests.test_concurrency import customers_stream

    sim = simulator([plain_assignment(7, 100)])
    stream = customers_stream(sim, [7], detect_deletions=True)
    assert not [r for r in stream.get_records({"assignment_id": 7}) if r.get("_sdc_deleted_at")]
    state = stream.get_context_state({"assignment_id": 7})
    before = dict(state[STATE_KEY])
    sim.set_count(7, 10)
    with pytest.raises(DeletionsWithheldError):
        list(stream.get_records({"assignment_id": 7}))
    assert state[STATE_KEY] == before


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_share_outside_0_to_1_is_refused(simulator, tmp_path, share):
    sim = simulator([plain_assignment(7, 10)])
    run = run_tap(config_for(sim, [7], max_deletion_share=share), tmp_path)
    assert run.returncode == 1
    assert "max_deletion_share must be between 0 and 1" in run.last_stderr_line


# --- the encoding -------------------------------------------------------------------------

other_ids = st.lists(
    st.one_of(
        st.integers(-(2**63), 2**63 - 1).filter(lambda n: not 0 <= n < 2**32),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
    ),
    unique=True,
    max_size=50,
)


@given(st.sets(st.integers(0, 2**32 - 1), max_size=50), other_ids, st.sampled_from([1, 3]))
def test_ids_encoded_a_batch_at_a_time_are_the_one_json_list(numbers, others, batch):
    """The others are written a batch at a time, and are still the one compressed JSON
    list that a state of any earlier run holds, and read back as they were."""
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(deletions_module, "_BATCH", batch)
        encoded = encode_ids(BitMap(numbers), iter(others))
    whole = zlib.compress(msgspec.json.encode(others), 6)
    assert base64.b64decode(encoded["others"]) == whole
    assert decode_ids(encoded) == (BitMap(numbers), others)


def test_compound_ids_are_not_kept():
    with pytest.raises(TypeError, match="compound ids"):
        encode_ids(BitMap(), ["a", b'{"x":1}'])
