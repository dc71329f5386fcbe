"""skip_unchanged: a second run sends only what is new, changed or deleted."""

from __future__ import annotations

import base64
import itertools
import json
import re
import zlib
from array import array

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tap_cube.records import changes
from tap_cube.records.changes import (
    FORMAT,
    STATE_KEY,
    ChangeFilter,
    HashSet,
    decode_hashes,
    encode_hashes,
    record_hash,
    record_hashes_problem,
)
from tap_cube.records.state_text import Base64Text
from tests.conftest import config_for, plain_assignment, run_tap
from tests.test_deletions import deletions, last_state, run_with_state, state_a_target_may_keep


def partition_state(run, stream: str = "customers", index: int = 0) -> dict:
    return dict(last_state(run)["bookmarks"][stream]["partitions"][index])


def sent(run, stream: str = "customers") -> dict[tuple[int, str], dict]:
    """The live records a run sent, by assignment and id."""
    return {
        (r["assignment_id"], str(r["crm__customer_id"])): r
        for r in run.records(stream)
        if not r.get("_sdc_deleted_at")
    }


def summary(run, where: str = "customers: assignment 7") -> tuple[int, int, int]:
    """emitted, unchanged and deleted, from the partition's INFO line."""
    found = re.search(
        re.escape(where) + r" done: .*; (\d+) emitted, (\d+) unchanged \(skipped\), (\d+) deleted",
        run.stderr,
    )
    assert found, run.stderr
    emitted, unchanged, deleted = (int(n) for n in found.groups())
    return emitted, unchanged, deleted


@pytest.mark.parametrize("style", ["dense", "sparse", "text"])
def test_a_second_run_sends_only_new_changed_and_deleted_customers(simulator, tmp_path, style):
    sim = simulator(
        [
            plain_assignment(7, 1200, customer_id_style=style),
            plain_assignment(8, 300, customer_id_style=style),
        ]
    )
    config = config_for(sim, [7, 8], detect_deletions=True, skip_unchanged=True)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    assert len(sent(first)) == 1500
    assert summary(first) == (1200, 0, 0)

    ids = [str(c["crm__customer_id"]) for c in sim.customers(7)]
    sim.update_customer(7, ids[500], {"crm__standard_info__name": "Åse Ødegård"})
    sim.update_customer(7, ids[900], {"crm__custom_info__70": "12"})
    sim.update_customer(7, ids[901], {"crm__custom_info__99": "a field not seen before"})
    sim.set_count(7, 1190, at="start")  # the first 10 removed
    sim.set_count(8, 305)  # 5 added
    second = run_with_state(config, tmp_path, last_state(first))
    assert second.returncode == 0, second.stderr
    assert set(sent(second)) == {(7, ids[500]), (7, ids[900]), (7, ids[901])} | {
        (8, str(c["crm__customer_id"])) for c in sim.customers(8)[300:]
    }
    assert sent(second)[(7, ids[500])]["crm__standard_info__name"] == "Åse Ødegård"
    assert {str(r["crm__customer_id"]) for r in deletions(second)} == set(ids[:10])
    assert summary(second) == (3, 1187, 10)
    assert summary(second, "customers: assignment 8") == (5, 300, 0)

    third = run_with_state(config, tmp_path, last_state(second))
    assert third.returncode == 0, third.stderr
    assert sent(third) == {}
    assert deletions(third) == []


def test_without_state_every_record_is_sent(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 400)])
    config = config_for(sim, [7], skip_unchanged=True)
    first = run_tap(config, tmp_path)
    again = run_tap(config, tmp_path)  # --full-refresh: Meltano passes no state
    assert len(sent(first)) == len(sent(again)) == 400


def test_off_by_default_and_off_keeps_no_hashes(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 400)])
    first = run_tap(config_for(sim, [7], skip_unchanged=True), tmp_path)
    assert STATE_KEY in partition_state(first)
    second = run_with_state(config_for(sim, [7]), tmp_path, last_state(first))
    assert len(sent(second)) == 400
    # Turned on again later, it compares with nothing older than this complete read.
    assert STATE_KEY not in partition_state(second)
    assert summary(second) == (400, 0, 0)


def test_a_change_of_selection_sends_every_record_again(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 300)])
    config = config_for(sim, [7], skip_unchanged=True)
    first = run_tap(config, tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    catalog = json.loads(
        run_tap(config, tmp_path, "--discover").stdout,
    )
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == ["properties", "crm__standard_info__email"]:
                item["metadata"]["selected"] = False
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    second = run_with_state(
        config, tmp_path, last_state(first), "--catalog", str(tmp_path / "catalog.json")
    )
    assert second.returncode == 0, second.stderr
    assert len(sent(second)) == 300
    assert all("crm__standard_info__email" not in r for r in sent(second).values())


def test_campaigns_and_custom_fields_are_sent_once_until_they_change(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 50)])
    config = config_for(sim, [7], skip_unchanged=True)
    first = run_tap(config, tmp_path)
    assert first.records("campaigns")
    assert first.records("customer_custom_fields")
    campaign = first.records("campaigns")[0]["campaign__id"]
    sim.update_campaign(campaign, {"campaign__name": "Vår-kampanje"})
    second = run_with_state(config, tmp_path, last_state(first))
    assert second.returncode == 0, second.stderr
    assert [r["campaign__id"] for r in second.records("campaigns")] == [campaign]
    assert second.records("customer_custom_fields") == []


def test_a_skipped_assignment_keeps_its_hashes(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 300), plain_assignment(8, 200)])
    config = config_for(sim, [7, 8], skip_unchanged=True, skip_inaccessible_assignments=True)
    first = run_tap(config, tmp_path)
    before = partition_state(first, index=1)[STATE_KEY]
    sim.set_access(8, "forbidden")
    changed = str(sim.customers(8)[7]["crm__customer_id"])
    sim.update_customer(8, changed, {"crm__standard_info__name": "Endret"})
    second = run_with_state(config, tmp_path, last_state(first))
    assert second.returncode == 0, second.stderr
    assert partition_state(second, index=1)[STATE_KEY] == before
    sim.set_access(8, "ok")
    third = run_with_state(config, tmp_path, last_state(second))
    assert set(sent(third)) == {(8, changed)}


def test_a_list_that_changed_while_read_is_sent_whole_next_time(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1000)], next_style="same")
    config = config_for(sim, [7], skip_unchanged=True, max_concurrent_requests=1)
    first = run_tap(config, tmp_path)
    customers = sim.customers(7)
    short = {"count": 1000, "next": None, "previous": None, "results": customers[500:990]}
    sim.fail_next("/customers/?page=2", 200, json.dumps(short), times=1)
    second = run_with_state(config, tmp_path, last_state(first))
    assert second.returncode == 0, second.stderr
    assert "reading it again" in second.stderr
    # Its hashes would vouch for records that may have gone meanwhile: none are kept.
    assert decode_hashes(partition_state(second)[STATE_KEY]) == array("Q")
    third = run_with_state(config, tmp_path, last_state(second))
    assert len(sent(third)) == 1000


def test_hashes_of_the_earlier_format_are_let_go_and_the_partition_sent_whole(simulator, tmp_path):
    """A state written before the byte-plane format: its hashes are not read, so every
    record of the partition is sent once, with a warning, and the run after that skips."""
    sim = simulator([plain_assignment(7, 300), plain_assignment(8, 200)])
    config = config_for(sim, [7, 8], skip_unchanged=True)
    state = last_state(run_tap(config, tmp_path))
    earlier = array("Q", decode_hashes(state["bookmarks"]["customers"]["partitions"][0][STATE_KEY]))
    differences = array("Q", [b - a for a, b in zip([0, *earlier], earlier, strict=False)])
    state["bookmarks"]["customers"]["partitions"][0][STATE_KEY] = base64.b64encode(
        zlib.compress(differences.tobytes(), 1)
    ).decode()
    second = run_with_state(config, tmp_path, state)
    assert second.returncode == 0, second.stderr
    assert (
        "assignment 7: sent whole this once: its record hashes were kept by an earlier tap-cube"
        in second.stderr
    )
    assert {key[0] for key in sent(second)} == {7}
    assert len(sent(second)) == 300
    assert partition_state(second)[STATE_KEY].startswith(FORMAT)
    third = run_with_state(config, tmp_path, last_state(second))
    assert third.returncode == 0, third.stderr
    assert sent(third) == {}


@pytest.mark.parametrize(
    "damage",
    [
        FORMAT + "not base64 at all!",
        FORMAT + base64.b64encode(b"not zlib").decode(),
        FORMAT + base64.b64encode(zlib.compress(b"1234567")).decode(),  # 7 bytes
        FORMAT + base64.b64encode(zlib.compress(b"\xff" * 16)).decode(),  # sums past 2**64
        42,
    ],
)
def test_damaged_hashes_in_the_state_fail_with_one_line(simulator, tmp_path, damage):
    sim = simulator([plain_assignment(7, 100)])
    config = config_for(sim, [7], skip_unchanged=True)
    state = last_state(run_tap(config, tmp_path))
    state["bookmarks"]["customers"]["partitions"][0][STATE_KEY] = damage
    run = run_with_state(config, tmp_path, state)
    assert run.returncode == 1
    assert run.last_stderr_line.startswith(
        'tap-cube: error: the state of customers, partition {"assignment_id": 7}: record_hashes is'
    ), run.stderr
    assert "meltano state clear" in run.last_stderr_line
    assert "Traceback" not in run.stderr


# --- the encoding -------------------------------------------------------------------------

hash_sets = st.sets(st.integers(0, 2**64 - 1), max_size=3000).map(sorted)


@given(hash_sets)
def test_hashes_survive_the_state(hashes):
    packed = array("Q", hashes)
    assert decode_hashes(encode_hashes(packed)) == packed
    assert record_hashes_problem(encode_hashes(packed)) is None


@given(st.lists(st.binary(max_size=10)))
def test_base64_of_pieces_is_that_of_them_joined(pieces):
    text = Base64Text()
    for piece in pieces:
        text.add(piece)
    assert text.value() == base64.b64encode(b"".join(pieces)).decode()


@given(st.text(alphabet="QUFBQkM=x\n", max_size=40), st.sampled_from([1, 2, 5]))
@example(text="BBBBBBBB=", block=1)  # the padding alone in the last slice
def test_base64_read_in_slices_is_as_strict_as_read_whole(text, block):
    """Whatever the text and wherever the slices fall, the same bytes, or an error
    exactly when reading the text whole fails."""
    try:
        whole: bytes | None = base64.b64decode(text, validate=True)
    except ValueError:
        whole = None
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(changes, "_BLOCK", block)
        try:
            sliced: bytes | None = b"".join(changes._base64_slices(text, 0))
        except ValueError:
            sliced = None
    assert sliced == whole


@given(st.lists(st.integers(0, 2**64 - 1), max_size=3000).map(sorted))
def test_any_sorted_hashes_survive_in_blocks_as_a_set(hashes):
    """Repeats included, from an iterator as from an array, over blocks of any fill."""
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(changes, "_BLOCK", 7)  # many blocks, the last one partly filled
        encoded = encode_hashes(iter(hashes))
        assert encoded == encode_hashes(array("Q", hashes))
        assert decode_hashes(encoded) == array("Q", hashes)


def test_the_differences_are_stored_byte_plane_by_byte_plane():
    """The format, spelled out: FORMAT, then base64 of zlib of each block's differences,
    lowest bytes first; a reader that knows only this finds the hashes."""
    hashes = [3, 258, 2**40 + 7, 2**64 - 1]
    encoded = encode_hashes(hashes)
    assert encoded.startswith(FORMAT)
    planes = zlib.decompress(base64.b64decode(encoded[len(FORMAT) :]))
    differences = [
        int.from_bytes(bytes(planes[plane * 4 + i] for plane in range(8)), "little")
        for i in range(4)
    ]
    assert list(itertools.accumulate(differences)) == hashes


@given(hash_sets, st.integers(0, 2**64 - 1))
def test_membership_is_exact(hashes, other):
    found = HashSet(array("Q", hashes))
    assert all(h in found for h in hashes)
    assert [found.position(h) for h in hashes] == list(range(len(hashes)))
    assert (other in found) == (other in set(hashes))


records = st.lists(
    st.fixed_dictionaries({"id": st.integers(0, 30), "name": st.sampled_from(["a", "b", "c"])}),
    max_size=60,
)


@given(records, records)
def test_a_filter_sends_what_the_last_read_lacks_and_keeps_this_reads_hashes(before, now):
    """Against any last read and any records now (repeats included): a record is sent
    exactly when its hash is not among the last read's, and what is kept is the hashes of
    this read, each once and sorted, whether met again or new."""
    emitted = [[[("customers", record)]] for record in now]
    previous = array("Q", sorted({record_hash([("customers", r)]) for r in before}))
    change_filter = ChangeFilter(previous)
    admitted = [change_filter.admits(*e) for e in emitted]
    assert admitted == [record_hash(*e) not in set(previous) for e in emitted]
    assert change_filter.emitted == sum(admitted)
    assert change_filter.unchanged == len(now) - sum(admitted)
    assert list(change_filter.finish()) == sorted({record_hash(*e) for e in emitted})


@given(st.binary(max_size=200))
def test_any_damage_is_a_problem_or_a_valid_set(raw):
    for value in (FORMAT + raw.decode("latin-1"), FORMAT + base64.b64encode(raw).decode()):
        problem = record_hashes_problem(value)
        if problem is None:
            decode_hashes(value)


def test_hashes_take_about_eight_bytes_each_in_the_state():
    import random

    hashes = array("Q", sorted({random.getrandbits(64) for _ in range(200_000)}))
    encoded = encode_hashes(hashes)
    assert len(encoded) < len(hashes) * 8.1
    assert list(ChangeFilter(hashes).finish()) == []  # nothing admitted yet


def test_a_run_that_fails_before_any_change_keeps_the_hashes(simulator, tmp_path):
    """A run that fails after it read unchanged records only leaves a STATE that still
    holds the partition's hashes: the next run sends nothing that did not change."""
    sim = simulator([plain_assignment(7, 1200)])
    config = config_for(sim, [7], skip_unchanged=True, detect_deletions=True)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    sim.fail_next("/customers/?page=2", 400, json.dumps({"detail": "Bad request"}))
    failed = run_with_state(config, tmp_path, last_state(first))
    assert failed.returncode == 1
    assert failed.records() == []
    kept = state_a_target_may_keep(failed, last_state(first))
    assert kept is not None
    assert partition_state_of(kept)[STATE_KEY] == partition_state(first)[STATE_KEY]
    again = run_with_state(config, tmp_path, kept)
    assert again.returncode == 0, again.stderr
    assert summary(again) == (0, 1200, 0)


def partition_state_of(state: dict) -> dict:
    return dict(state["bookmarks"]["customers"]["partitions"][0])


@pytest.mark.parametrize("how", ["changed", "deleted"])
def test_a_record_sent_by_a_failed_run_that_changes_back_is_sent_again(simulator, tmp_path, how):
    # A failed run loads a change (or a deletion) into the target; before the next run
    # the record is back to what the last complete run saw. Its old hash must not make
    # it look unchanged: the target holds the failed run's version.
    sim = simulator([plain_assignment(7, 300), plain_assignment(8, 1200)])
    config = config_for(sim, [7, 8], skip_unchanged=True, detect_deletions=True)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    customer = sim.customers(7)[0]
    key = str(customer["crm__customer_id"])
    if how == "changed":
        sim.update_customer(7, key, {"crm__standard_info__name": "Endret i en feilet kjøring"})
    else:
        sim.set_count(7, 299, at="start")
    # Assignment 8 fails after assignment 7 was sent: the run ends without its final state.
    sim.fail_next("/assignments/8/customers/?page=2", 400, json.dumps({"detail": "Bad request"}))
    failed = run_with_state(config, tmp_path, last_state(first))
    assert failed.returncode != 0
    sent_then = [r for r in failed.records() if str(r["crm__customer_id"]) == key]
    assert sent_then, failed.stderr  # the target loaded the change or the deletion
    if how == "changed":
        sim.update_customer(
            7, key, {"crm__standard_info__name": customer["crm__standard_info__name"]}
        )
    else:
        sim.set_count(7, 300, at="start")
    kept = state_a_target_may_keep(failed, last_state(first))
    assert kept is not None
    again = run_with_state(config, tmp_path, kept)
    assert again.returncode == 0, again.stderr
    assert sent(again).get((7, key)) is not None, "the record changed back was not sent"


def customer_states(run) -> list[tuple[bool, dict]]:
    """assignment 7's partition in each STATE before the first customers record, and after."""
    found, before = [], True
    for message in run.messages:
        if message["type"] == "RECORD" and message["stream"] == "customers":
            before = False
        if message["type"] == "STATE":
            customers = message["value"]["bookmarks"].get("customers", {})
            partitions = customers.get("partitions") or [{}]
            found.append((before, partitions[0]))
    return found


def test_hashes_are_withdrawn_before_the_first_change_only(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 300)])
    config = config_for(sim, [7], skip_unchanged=True)
    first = run_tap(config, tmp_path)
    ids = [str(c["crm__customer_id"]) for c in sim.customers(7)]
    for key in ids[100:103]:
        sim.update_customer(7, key, {"crm__standard_info__name": "Endret"})
    second = run_with_state(config, tmp_path, last_state(first))
    states = customer_states(second)
    # The last STATE before the first change no longer vouches for the old hashes.
    assert STATE_KEY not in [p for before, p in states if before][-1]
    assert STATE_KEY in partition_state(second)
    withdrawals = [p for _, p in states if STATE_KEY not in p]
    assert len(withdrawals) == 1
    # A run with nothing to send withdraws nothing.
    third = run_with_state(config, tmp_path, last_state(second))
    assert sent(third) == {}
    assert all(STATE_KEY in p for _, p in customer_states(third))
