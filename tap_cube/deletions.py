"""Deletions: the ids a partition delivered last time, and those no longer served.

Cube documents no deletions: a customer removed from an assignment simply stops being
listed. After a partition has been read completely, every id it delivered the last time
that it did not serve this time is emitted once more as a deletion record (its key and
`_sdc_deleted_at`), which a target upserts per row: only that partition's rows are
touched, and only once the partition is known to be complete.

The ids live in the partition's state, compactly: numeric ids below 2**32 as a
serialized roaring bitmap, any others as a zlib-compressed JSON list.
"""

from __future__ import annotations

import base64
import typing as t
import zlib
from datetime import UTC, datetime

import msgspec
from pyroaring import BitMap

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from tap_cube.seen import SeenIds

#: The key of a partition's state that holds the ids it delivered last time.
STATE_KEY = "delivered_ids"
#: The column a deletion record sets; the SDK's targets know it (record metadata).
DELETED_AT = "_sdc_deleted_at"
DELETED_AT_SCHEMA: dict[str, t.Any] = {"type": ["string", "null"], "format": "date-time"}


def encode_ids(seen: SeenIds) -> dict[str, str]:
    """A partition's delivered ids, for its state."""
    numbers = BitMap(seen.small_numbers)
    numbers.run_optimize()
    others = [key.decode() if isinstance(key, bytes) else key for key in seen.other_ids()]
    return {
        "numbers": base64.b64encode(numbers.serialize()).decode("ascii"),
        "others": base64.b64encode(zlib.compress(msgspec.json.encode(others), 6)).decode("ascii"),
    }


def decode_ids(encoded: object) -> tuple[BitMap, list[int | str]]:
    """The ids of `encode_ids`; nothing for a state that has none (or another shape)."""
    if not isinstance(encoded, dict):
        return BitMap(), []
    try:
        numbers = BitMap.deserialize(base64.b64decode(encoded["numbers"]))
        others = msgspec.json.decode(zlib.decompress(base64.b64decode(encoded["others"])))
    except (KeyError, TypeError, ValueError, zlib.error, msgspec.DecodeError):
        return BitMap(), []
    return numbers, [key for key in others if isinstance(key, int | str)]


def removed_ids(
    previous: object, served: SeenIds, emitted: SeenIds | None = None
) -> Iterator[int | str]:
    """Ids delivered before (last run, or earlier in this one) that `served` lacks.

    `emitted` holds what this run emitted when that is more than the complete read
    `served` (a partition read again after it changed): those rows are in the target
    too, and gone from Cube.
    """
    numbers, others = decode_ids(previous)
    if emitted is not None and emitted is not served:
        numbers |= emitted.small_numbers
        others += [key for key in emitted.other_ids() if isinstance(key, int | str)]
    yield from numbers - served.small_numbers
    seen: set[int | str] = set()
    for key in others:
        if key not in seen and key not in served:
            seen.add(key)
            yield key


def deletion_records(
    state: dict[str, t.Any],
    served: SeenIds,
    emitted: SeenIds,
    key_field: str,
    key_schema: Mapping[str, t.Any],
) -> Iterator[dict[str, t.Any]]:
    """A deletion record for each id delivered before but not served by a complete read.

    Afterwards the partition's state remembers what this read served, for the next run.
    """
    types = key_schema.get("type", [])
    as_number = "integer" in ([types] if isinstance(types, str) else types)
    deleted_at = datetime.now(UTC).isoformat()
    for key in removed_ids(state.get(STATE_KEY), served, emitted):
        yield {key_field: int(key) if as_number else str(key), DELETED_AT: deleted_at}
    state[STATE_KEY] = encode_ids(served)
