"""The STATE writer: a STATE equal to the last one written is skipped, by its digest."""

from __future__ import annotations

import contextlib
import io
import json
import typing as t
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tap_cube.output import DigestStateWriter, state_digest


class Collected:
    def __init__(self) -> None:
        self.written: list[dict] = []

    def write_message(self, message) -> None:
        self.written.append(json.loads(json.dumps(message.to_dict()["value"], default=str)))


def test_a_state_equal_to_the_last_written_is_skipped():
    out = Collected()
    writer = DigestStateWriter(out)  # type: ignore[arg-type]
    write: t.Any = writer.write_state  # any JSON object, as a given state may be
    state: dict = {"bookmarks": {"customers": {"partitions": [{"record_hashes": "x" * 200_000}]}}}
    write(state)
    write(state)
    write(json.loads(json.dumps(state)))  # equal, not the same object
    assert len(out.written) == 1
    state["bookmarks"]["customers"]["partitions"][0]["record_hashes"] = "x" * 199_999 + "y"
    write(state)
    assert len(out.written) == 2
    # It keeps no copy: a change made in place is a change.
    state["bookmarks"]["customers"]["partitions"][0].pop("record_hashes")
    write(state)
    assert len(out.written) == 3


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values, json_values)
def test_digests_differ_where_the_values_do(a, b):
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (state_digest(a) == state_digest(b)) == same


def test_values_written_apart_digest_apart():
    assert state_digest("1") != state_digest(1)
    assert state_digest(1) != state_digest(1.5) != state_digest(True)
    # The digest is of the line written: what is written alike is the same state.
    assert state_digest(1) == state_digest(Decimal(1))
    assert state_digest(["a", "b"]) != state_digest(["ab"])
    assert state_digest({"a": {"b": 1}}) != state_digest({"a": "b", "1": 1})


def written_lines(capfd) -> list[dict]:
    return [json.loads(line) for line in capfd.readouterr().out.splitlines()]


def test_a_state_is_written_as_the_sdk_writes_it_with_long_strings_in_slices(capfd):
    from datetime import UTC, datetime

    from singer_sdk.contrib.msgspec import MsgSpecWriter
    from singer_sdk.singerlib import StateMessage

    from tap_cube.output import BufferedRecordWriter

    tricky = 'a"b\\c\n\u00e6\u00f8\U0001f600' * 30_000  # escapes across slice ends
    value: dict = {
        "bookmarks": {
            "customers": {"partitions": [{"context": {"assignment_id": 7}, "h": tricky}]},
            "calls": {"replication_key_value": datetime(2026, 1, 2, tzinfo=UTC)},
        },
        "n": [1, 2.5, Decimal("3.25"), None, True, "x" * 70_000],
    }
    ours = BufferedRecordWriter()
    ours.write_message(StateMessage(value=value))
    theirs = MsgSpecWriter()
    expected = json.loads(bytes(theirs.format_message(StateMessage(value=value))))
    assert written_lines(capfd) == [expected]


def test_a_stop_during_a_long_state_waits_until_it_is_whole(capfd, monkeypatch):
    import pytest
    from singer_sdk.singerlib import StateMessage

    from tap_cube import output
    from tap_cube.errors import Stopped

    writer = output.BufferedRecordWriter()
    real = output.write_output
    calls = []

    def signal_midway(data):
        calls.append(len(data))
        if len(calls) == 2:
            writer.stop(15)  # as the signal handler would, between two blocks
        real(data)

    monkeypatch.setattr(output, "write_output", signal_midway)
    with pytest.raises(Stopped):
        writer.write_message(StateMessage(value={"h": "y" * 500_000}))
    assert len(calls) > 2
    assert written_lines(capfd) == [{"type": "STATE", "value": {"h": "y" * 500_000}}]


@given(json_values, st.text(min_size=1, max_size=3))
def test_any_state_is_written_as_the_sdk_writer_would(value, filler):
    from singer_sdk.contrib.msgspec import MsgSpecWriter
    from singer_sdk.singerlib import StateMessage

    from tap_cube.output import BufferedRecordWriter

    # A long string beside whatever hypothesis makes, so that slices are cut too.
    state = {"value": value, "long": filler * 40_000}
    ours = BufferedRecordWriter()
    out = io.BytesIO()
    with contextlib.redirect_stdout(io.TextIOWrapper(out, encoding="utf-8")) as wrapper:
        ours.write_message(StateMessage(value=state))
        wrapper.flush()
    theirs = bytes(MsgSpecWriter().format_message(StateMessage(value=state)))
    assert json.loads(out.getvalue()) == json.loads(theirs)


@given(
    st.dictionaries(st.text(), json_values, max_size=8),
    st.none() | st.integers(min_value=0, max_value=2**53),
    st.none() | st.datetimes(timezones=st.timezones()),
    st.integers(min_value=1, max_value=300),
)
def test_records_are_written_byte_for_byte_as_the_sdk_writer_writes_them(
    record, version, time_extracted, copies
):
    from singer_sdk.contrib.msgspec import MsgSpecWriter
    from singer_sdk.singerlib import RecordMessage

    from tap_cube.output import BufferedRecordWriter

    # Enough copies of a long record to fill a block or more of 64 KiB.
    record = {**record, "long": "\u00e6" * 400}
    message = RecordMessage(
        stream="customers", record=record, version=version, time_extracted=time_extracted
    )
    ours = BufferedRecordWriter()
    out = io.BytesIO()
    with contextlib.redirect_stdout(io.TextIOWrapper(out, encoding="utf-8")) as wrapper:
        for _ in range(copies):
            ours.write_message(message)
        ours.flush()
        wrapper.flush()
    theirs = bytes(MsgSpecWriter().format_message(message))
    assert out.getvalue() == theirs * copies
    assert ours.records_written == copies
