"""The RECORD messages a record becomes, as the SDK's `_generate_record_messages` makes
them: one per stream map that keeps it, none for a record skip_unchanged finds unchanged.

A record of a partition's read (`ExtractedRecord`, tap_cube/records/partition_read.py)
carries when its page arrived and its partition's `ChangeGate`, which says whether it
goes out; the stream hands the SDK's hook over to `record_messages`.

With every property selected (the usual case) the SDK's per-field selection walk
removes nothing, yet it was the largest per-record cost left, so the messages are made
here without it; with any property deselected, the SDK makes them. Either way records
are compared as emitted, so a change of selection or stream maps counts as a change.

A stream without stream maps has one, the SDK's SameRecordTransform, whose transform
gives the record itself unless flattening is on, through three calls a record; its
`MapStep` says so once (`map_steps`), and the record is taken as it is.
"""

from __future__ import annotations

import typing as t
from datetime import UTC, datetime

from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import RecordMessage

from tap_cube.records.partition_read import ExtractedRecord

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from singer_sdk.mapper import StreamMap

#: A stream map as records go through it: the stream it emits to, and its transform, or
#: None where that gives the record itself.
MapStep = tuple[str, "Callable[[dict[str, t.Any]], dict[str, t.Any] | None] | None"]


def map_steps(stream_maps: Sequence[StreamMap]) -> list[MapStep]:
    """The steps of `stream_maps`, in their order."""
    return [
        (
            stream_map.stream_alias,
            None
            if type(stream_map) is SameRecordTransform and not stream_map.flattening_enabled
            else stream_map.transform,
        )
        for stream_map in stream_maps
    ]


def record_messages(
    record: dict[str, t.Any],
    steps: Sequence[MapStep],
    version: int | None,
    write_state: Callable[[], None],
    *,
    sdk_messages: Callable[[dict[str, t.Any]], Iterator[RecordMessage]] | None,
) -> list[RecordMessage]:
    """The record's messages, none if it does not go out: the SDK's (`sdk_messages`), or,
    when that is None (every property selected), made here without the SDK's selection
    walk. Before the first record going out that its partition's stored hashes do not
    vouch for, `write_state` writes a STATE without them (`ChangeGate.lets_out`).

    One function and a list, not a generator: it runs for every record.
    """
    # Loops, not comprehensions, which are calls of their own (Python 3.11).
    messages: list[RecordMessage] | None = None
    emitted: list[tuple[str, dict[str, t.Any]]] = []
    if sdk_messages is None:
        for stream, transform in steps:
            mapped = record if transform is None else transform(record)
            if mapped is not None:
                emitted.append((stream, mapped))
    else:
        messages = list(sdk_messages(record))
        for message in messages:
            emitted.append((message.stream, message.record))
    # Compared before any message is made: most records of a re-run are unchanged.
    if type(record) is ExtractedRecord:
        gate, extracted_at = record.changes, record.time_extracted
    else:
        gate, extracted_at = None, datetime.now(UTC)
    if gate is not None and not gate.lets_out(record, emitted, write_state):
        return []
    if messages is not None:
        return messages
    # When the record's page arrived, which the record carries from its read.
    messages = []
    for stream, mapped in emitted:
        messages.append(
            RecordMessage(
                stream=stream, record=mapped, version=version, time_extracted=extracted_at
            )
        )
    return messages
