"""A given state is input: what cannot be trusted stops the run with one line, up front.

A state that lost its delivered ids would start deletions afresh and never mark the
customers removed since the last run; a partition context of another type would not
match its partition and do the same. Either must fail loudly, never exit 0.
"""

from __future__ import annotations

import base64
import copy
import json
import typing as t
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from tap_cube.errors import CubeError
from tap_cube.records.deletions import STATE_KEY
from tap_cube.streams.cube_stream import CubeStream
from tap_cube.tap import TapCube
from tests.conftest import config_for, plain_assignment, run_tap


def last_state(run):
    return [m["value"] for m in run.messages if m["type"] == "STATE"][-1]


def run_with_state(config, tmp_path, state, *args: str):
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    return run_tap(config, tmp_path, "--state", str(state_file), *args)


def partition(state: dict, stream: str = "customers") -> dict:
    found: dict = state["bookmarks"][stream]["partitions"][0]
    return found


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def set_ids(**changes):
    def damage(state: dict) -> None:
        ids = partition(state)[STATE_KEY]
        for key, value in changes.items():
            if value is KeyError:
                del ids[key]
            else:
                ids[key] = value

    return damage


def set_partition(key: str, value: object):
    def damage(state: dict) -> None:
        partition(state)[key] = value

    return damage


def truncate_numbers(state: dict) -> None:
    ids = partition(state)[STATE_KEY]
    ids["numbers"] = b64(base64.b64decode(ids["numbers"])[:-3])


def truncate_others(state: dict) -> None:
    ids = partition(state)[STATE_KEY]
    ids["others"] = b64(base64.b64decode(ids["others"])[:-3])


def duplicate_partition(state: dict) -> None:
    parts = state["bookmarks"]["customers"]["partitions"]
    parts.append(copy.deepcopy(parts[0]))


def replace(path: tuple[str, ...], value: object):
    def damage(state: dict) -> None:
        holder = state
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = value

    return damage


DAMAGES = {
    "numbers not base64": set_ids(numbers="!!!"),
    "numbers truncated": truncate_numbers,
    "numbers a number": set_ids(numbers=5),
    "numbers missing": set_ids(numbers=KeyError),
    "others missing": set_ids(others=KeyError),
    "others not base64": set_ids(others="!!!"),
    "others truncated": truncate_others,
    "others not a list": set_ids(others=b64(zlib.compress(b'{"a": 1}'))),
    "others holds an object": set_ids(others=b64(zlib.compress(b'["x", {"a": 1}]'))),
    "delivered ids a string": set_partition(STATE_KEY, "abc"),
    "delivered ids a list": set_partition(STATE_KEY, [1, 2]),
    "delivered ids a number": set_partition(STATE_KEY, 7),
    "delivered ids null": set_partition(STATE_KEY, None),
    "context of another type": set_partition("context", {"assignment_id": "7"}),
    "context of a float": set_partition("context", {"assignment_id": 7.0}),
    "context with another key": set_partition("context", {"assignment": 7}),
    "context missing": lambda state: partition(state).pop("context"),
    "partition twice": duplicate_partition,
    "partitions not a list": replace(("bookmarks", "customers", "partitions"), {"a": 1}),
    "partition not an object": replace(("bookmarks", "customers", "partitions"), ["x"]),
    "stream state a list": replace(("bookmarks", "customers"), []),
    "bookmarks a list": replace(("bookmarks",), []),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_state_fails_with_one_line_instead_of_losing_deletions(
    simulator, tmp_path, damage
):
    sim = simulator([plain_assignment(7, 605, customer_id_style="text")])
    config = config_for(sim, [7], detect_deletions=True)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    state = last_state(first)
    damage(state)
    sim.set_count(7, 600)  # 5 customers removed since the first run
    second = run_with_state(config, tmp_path, state)
    assert second.returncode == 1, second.stderr[-2000:]
    assert not [r for r in second.records() if r.get("_sdc_deleted_at")]
    assert not [m for m in second.messages if m["type"] == "STATE"]  # nothing was read
    line = second.last_stderr_line
    # A state whose structure the SDK could not even walk is refused with the input
    # files (naming the file); every other damage is named by stream and partition.
    unwalkable = damage in (DAMAGES["bookmarks a list"], DAMAGES["stream state a list"])
    expected = "tap-cube: error: --state " if unwalkable else "tap-cube: error: the state"
    assert line.startswith(expected), line
    whole_state = damage in (DAMAGES["bookmarks a list"],)
    if not whole_state:
        assert "customers" in line, line
    assert "meltano state" in line, line
    assert "Traceback" not in second.stderr
    if damage is DAMAGES["context of a float"]:
        assert (
            '{"assignment_id": 7.0}: assignment_id must be an integer, not the number 7.0' in line
        )


def test_a_state_of_partitions_no_longer_configured_is_kept_as_is(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 30), plain_assignment(8, 20)])
    first = run_tap(config_for(sim, [7, 8], detect_deletions=True), tmp_path)
    state = last_state(first)
    second = run_with_state(config_for(sim, [7], detect_deletions=True), tmp_path, state)
    assert second.returncode == 0, second.stderr
    kept = last_state(second)["bookmarks"]["customers"]["partitions"]
    assert {json.dumps(p["context"]) for p in kept} == {
        '{"assignment_id": 7}',
        '{"assignment_id": 8}',
    }


def test_streams_and_keys_the_tap_does_not_know_are_left_alone(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 30)])
    config = config_for(sim, [7], detect_deletions=True)
    state = last_state(run_tap(config, tmp_path))
    state["bookmarks"]["someone_elses_stream"] = {"anything": ["at all"]}
    partition(state)["a_later_key"] = {"x": 1}
    second = run_with_state(config, tmp_path, state)
    assert second.returncode == 0, second.stderr
    assert last_state(second)["bookmarks"]["someone_elses_stream"] == {"anything": ["at all"]}


def test_the_state_as_meltano_state_get_prints_it_is_read(simulator, tmp_path):
    """`meltano state get` wraps the state in {"singer_state": ...}; given to --state as
    it is, the customers removed meanwhile are still marked deleted."""
    sim = simulator([plain_assignment(7, 100)])
    config = config_for(sim, [7], detect_deletions=True)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    sim.set_count(7, 90, at="start")
    second = run_with_state(config, tmp_path, {"singer_state": last_state(first)})
    assert second.returncode == 0, second.stderr
    assert len([r for r in second.records() if r.get("_sdc_deleted_at")]) == 10
    # What it writes is the Singer state, which Meltano wraps again itself.
    assert "bookmarks" in last_state(second)


@pytest.mark.parametrize(
    "shape",
    [
        "bare bookmarks",
        "another wrapper",
        "wrapped twice",
        "wrapped beside more",
        "wrapped a list",
    ],
)
def test_a_state_of_an_unknown_shape_is_refused_not_taken_as_empty(simulator, tmp_path, shape):
    sim = simulator([plain_assignment(7, 100)])
    config = config_for(sim, [7], detect_deletions=True)
    state = last_state(run_tap(config, tmp_path))
    given = {
        "bare bookmarks": state["bookmarks"],
        "another wrapper": {"value": state},
        "wrapped twice": {"singer_state": {"singer_state": state}},
        "wrapped beside more": {"singer_state": state, "completed": True},
        "wrapped a list": {"singer_state": [state]},
    }[shape]
    sim.set_count(7, 90, at="start")
    run = run_with_state(config, tmp_path, given)
    assert run.returncode == 1, run.stderr[-2000:]
    assert run.records() == []
    line = run.last_stderr_line
    assert line.startswith("tap-cube: error: the state is not a Singer state: "), line
    assert '"bookmarks"' in line
    assert "meltano state get" in line
    assert "Traceback" not in run.stderr


# --- hypothesis: any state either loads and behaves, or fails with one line ---------------


def decoded_ids(encoded: object) -> set[str] | None:
    """The ids a delivered_ids value holds, decoded independently; None if it holds none."""
    try:
        assert isinstance(encoded, dict)
        numbers = BitMap.deserialize(base64.b64decode(encoded["numbers"], validate=True))
        others = json.loads(zlib.decompress(base64.b64decode(encoded["others"], validate=True)))
        assert isinstance(others, list)
        assert all(type(key) in (int, str) for key in others)
    except Exception:
        return None
    return {str(n) for n in numbers} | {str(key) for key in others}


def encoded(numbers: list[int], others: list[str | int]) -> dict[str, str]:
    bitmap = BitMap(numbers)
    return {
        "numbers": b64(bitmap.serialize()),
        "others": b64(zlib.compress(json.dumps(others).encode())),
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
served_ids = [f"K{i}" for i in range(6)]  # what the server lists now
id_pool = [*served_ids, "K7", "K8", "00", "12", "-3"]
valid_ids = st.builds(
    encoded,
    st.lists(st.sampled_from([12, 40, 2**32 - 1]), max_size=3),
    st.lists(st.sampled_from([i for i in id_pool if i != "12"]), max_size=6),
)
base64_junk = st.builds(lambda raw: b64(raw), st.binary(max_size=24))
damaged_ids = st.one_of(
    json_values,
    st.fixed_dictionaries({"numbers": base64_junk | json_values, "others": base64_junk}),
    st.fixed_dictionaries({"numbers": base64_junk}),
    st.builds(
        lambda ids, key, value: {**ids, key: value},
        valid_ids,
        st.sampled_from(["numbers", "others"]),
        base64_junk | json_values,
    ),
)
contexts = st.one_of(
    st.just({"assignment_id": 7}),
    st.dictionaries(st.sampled_from(["assignment_id", "x"]), json_values, max_size=2),
)
partition_states = st.fixed_dictionaries(
    {"context": contexts},
    optional={
        STATE_KEY: valid_ids | damaged_ids,
        "replication_key_value": json_values,
    },
)
states = st.fixed_dictionaries(
    {
        "bookmarks": st.fixed_dictionaries(
            {"customers": st.fixed_dictionaries({"partitions": st.lists(partition_states)})}
        )
    }
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(state=states)
def test_any_state_loads_and_behaves_or_fails_with_one_line(static_cube, state):
    static_cube.serve_customers(
        7, [{"crm__customer_id": key, "crm__standard_info__name": key} for key in served_ids]
    )
    config = {
        "api_url": static_cube.url,
        "auth_token": "tok-123456",
        "max_retries": 0,
        "assignment_ids": [7],
        "detect_deletions": True,
        "max_deletion_share": 1,
    }
    given_state = copy.deepcopy(state)
    try:
        tap = TapCube(config=config, state=state)
    except CubeError as exc:
        message = str(exc)
        assert "\n" not in message
        assert message.startswith("the state of customers"), message
        return
    partitions = given_state["bookmarks"]["customers"]["partitions"]
    mine = [p for p in partitions if p["context"] == {"assignment_id": 7}]
    assert all(type(p["context"]["assignment_id"]) is int for p in mine)
    assert len(mine) <= 1
    previous: set[str] = set()
    if mine and STATE_KEY in mine[0]:
        known = decoded_ids(mine[0][STATE_KEY])
        assert known is not None, f"accepted undecodable ids {mine[0][STATE_KEY]!r}"
        previous = known
    stream = tap.streams["customers"]
    assert isinstance(stream, CubeStream)
    try:
        records = t.cast("list[dict[str, t.Any]]", list(stream.get_records({"assignment_id": 7})))
    finally:
        stream.close()
    deleted = {r["crm__customer_id"] for r in records if r.get("_sdc_deleted_at")}
    assert deleted == previous - set(served_ids)
