"""The RECORD messages a record becomes, as the SDK's `_generate_record_messages` makes
them: one per stream map that keeps it, none for a record skip_unchanged finds unchanged.

A record of a partition's read (`ExtractedRecord`, tap_cube/records/partition_read.py)
carries when its page arrived and its partition's `ChangeGate`, which says whether it
goes out; the stream hands the SDK's hook over to `record_messages`.

With every property selected (the usual case) the SDK's per-field selection walk
removes nothing, yet it was the largest per-record cost left, so the messages are made
here without it; with any property deselected, the SDK makes them. Either way records
are compared as emitted, so a change of selection or stream maps counts as a change.
"""

from __future__ import annotations

import typing as t
from datetime import UTC, datetime

from singer_sdk.singerlib import RecordMessage

from tap_cube.records.partition_read import ExtractedRecord

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from singer_sdk.mapper import StreamMap

#: A record as its messages carry it: the stream (after stream maps) and the record.
Emitted = list[tuple[str, dict[str, t.Any]]]


def record_messages(
    record: dict[str, t.Any],
    stream_maps: Sequence[StreamMap],
    version: int | None,
    write_state: Callable[[], None],
    *,
    sdk_messages: Callable[[dict[str, t.Any]], Iterator[RecordMessage]] | None,
) -> list[RecordMessage]:
    """The record's messages, none if it does not go out: the SDK's (`sdk_messages`), or,
    when that is None (every property selected), made here without the SDK's selection
    walk. A list, not a generator: one record makes a message or two, per record."""
    if sdk_messages is None:
        return _mapped_messages(record, stream_maps, version, write_state)
    messages = list(sdk_messages(record))
    emitted = [(message.stream, message.record) for message in messages]
    return messages if _goes_out(record, emitted, write_state) else []


def _goes_out(record: dict[str, t.Any], emitted: Emitted, write_state: Callable[[], None]) -> bool:
    """Whether skip_unchanged lets `record` (as `emitted`) go out, as its partition's
    gate says; before the first that its stored hashes do not vouch for, `write_state`
    writes a STATE without them."""
    gate = record.changes if isinstance(record, ExtractedRecord) else None
    return gate is None or gate.lets_out(record, emitted, write_state)


def _mapped_messages(
    record: dict[str, t.Any],
    stream_maps: Sequence[StreamMap],
    version: int | None,
    write_state: Callable[[], None],
) -> list[RecordMessage]:
    """The record's messages with every property selected: the SDK's, without its
    per-field selection walk, which then removes nothing."""
    emitted = [
        (stream_map.stream_alias, mapped)
        for stream_map in stream_maps
        if (mapped := stream_map.transform(record)) is not None
    ]
    # Compared before any message is made: most records of a re-run are unchanged.
    if not _goes_out(record, emitted, write_state):
        return []
    # When the record's page arrived, which the record carries from its read.
    extracted_at = (
        record.time_extracted if isinstance(record, ExtractedRecord) else datetime.now(UTC)
    )
    return [
        RecordMessage(stream=stream, record=mapped, version=version, time_extracted=extracted_at)
        for stream, mapped in emitted
    ]
