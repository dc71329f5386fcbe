"""Deletions: the ids a partition delivered last time, and those no longer served.

Cube documents no deletions: a customer removed from an assignment simply stops being
listed. After a partition has been read completely, every id it delivered the last time
that it did not serve this time is emitted once more as a deletion record (its key and
`_sdc_deleted_at`), which a target upserts per row: only that partition's rows are
touched, and only once the partition is known to be complete.

The ids live in the partition's state, compactly: numeric ids below 2**32 as a
serialized roaring bitmap, any others as a zlib-compressed JSON list. An id is in the
form its key column holds (see tap_cube/records/keys.py), so what is stored, what
is compared and what a deletion record carries are the same value.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import typing as t
import zlib
from datetime import UTC, datetime

import msgspec
from pyroaring import BitMap

from tap_cube.records.state_text import Base64Text

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from tap_cube.records.seen import SeenIds

#: The key of a partition's state that holds the ids it delivered last time.
STATE_KEY = "delivered_ids"
#: The column a deletion record sets; the SDK's targets know it (record metadata).
DELETED_AT = "_sdc_deleted_at"
DELETED_AT_SCHEMA: dict[str, t.Any] = {"type": ["string", "null"], "format": "date-time"}
#: Ids encoded at a time.
_BATCH = 1 << 16


def encode_ids(numbers: BitMap, others: Iterable[int | str | bytes]) -> dict[str, str]:
    """Delivered ids, for a partition's state: small numbers, and every other id.

    The others are a JSON list, encoded and compressed _BATCH ids at a time, so that
    neither they nor their JSON are ever all in memory at once.
    """
    numbers = BitMap(numbers)
    numbers.run_optimize()
    compressor = zlib.compressobj(6)
    text = Base64Text()
    text.add(compressor.compress(b"["))
    others = iter(others)
    separator = b""
    while batch := tuple(itertools.islice(others, _BATCH)):
        if any(isinstance(key, bytes) for key in batch):
            msg = "compound ids (of rows without an id) are not kept in state"
            raise TypeError(msg)
        text.add(compressor.compress(separator + msgspec.json.encode(batch)[1:-1]))
        separator = b","
    text.add(compressor.compress(b"]"))
    text.add(compressor.flush())
    return {
        "numbers": base64.b64encode(numbers.serialize()).decode("ascii"),
        "others": text.value(),
    }


def decode_ids(encoded: object) -> tuple[BitMap, list[int | str]]:
    """The ids of `encode_ids`; a ValueError saying what is wrong for anything else."""
    if not isinstance(encoded, dict):
        msg = "is not an object of numbers and others"
        raise ValueError(msg)
    for part in ("numbers", "others"):
        if not isinstance(encoded.get(part), str):
            msg = f"lacks its {part} (base64 text)"
            raise ValueError(msg)
    try:
        numbers = BitMap.deserialize(base64.b64decode(encoded["numbers"], validate=True))
    except (binascii.Error, ValueError, IndexError):
        msg = "has numbers that are not a serialized roaring bitmap (cut short or altered?)"
        raise ValueError(msg) from None
    try:
        others = msgspec.json.decode(
            zlib.decompress(base64.b64decode(encoded["others"], validate=True))
        )
    except (binascii.Error, ValueError, zlib.error, msgspec.DecodeError):
        msg = "has others that are not a compressed JSON list (cut short or altered?)"
        raise ValueError(msg) from None
    if not isinstance(others, list) or not all(type(key) in (int, str) for key in others):
        msg = "has others that are not a list of ids (numbers and text)"
        raise ValueError(msg)
    return numbers, others


def delivered_so_far(previous: object, emitted: SeenIds) -> dict[str, str]:
    """The ids delivered before and those emitted since, for the state of a read that
    ends early, or of one with detect_deletions off: a record it sent that is gone by
    the next complete read with detect_deletions on is then still marked deleted."""
    return encode_ids(*_delivered(previous, emitted))


def _delivered(previous: object, emitted: SeenIds | None) -> tuple[BitMap, list[int | str]]:
    """The ids of `previous` (a partition's delivered ids, checked when the state was
    loaded), with those of `emitted` if given: small numbers, and the others (as a
    state keeps them, each once; so too when the emitted ids join them)."""
    others: list[int | str]
    if previous is None:
        numbers, others = BitMap(), []
    else:
        numbers, others = decode_ids(previous)
    if emitted is not None:
        numbers |= emitted.small_numbers
        others += [key for key in emitted.other_ids() if isinstance(key, int | str)]
        others = list(dict.fromkeys(others))
    return numbers, others


class RemovedIds:
    """Ids delivered before (last run, or earlier in this one) that a complete read lacks.

    `previous` is the partition's delivered ids from its state (checked when the state
    was loaded), `served` what the complete read served, and `emitted` what this run
    emitted when that is more than `served` (a partition read again after it changed):
    those rows are in the target too, and gone from Cube. Only the removed ids are kept:
    the delivered ones, megabytes of text ids at a million, are decoded again in the
    rare case that they are all kept (`delivered_ids`).
    """

    def __init__(self, previous: object, served: SeenIds, emitted: SeenIds) -> None:
        self._previous = previous
        self._emitted = emitted if emitted is not served else None
        numbers, others = _delivered(previous, self._emitted)
        self.delivered = len(numbers) + len(others)
        self._numbers = numbers - served.small_numbers
        self._others = list(dict.fromkeys(key for key in others if key not in served))

    def __len__(self) -> int:
        return len(self._numbers) + len(self._others)

    def delivered_ids(self) -> dict[str, str]:
        """Every id delivered before, for a state that deletes nothing now."""
        return encode_ids(*_delivered(self._previous, self._emitted))

    def records(
        self, key_field: str, key_schema: Mapping[str, t.Any]
    ) -> Iterator[dict[str, t.Any]]:
        """A deletion record for each removed id, keyed as its row is."""
        types = key_schema.get("type", [])
        as_number = "integer" in ([types] if isinstance(types, str) else types)
        deleted_at = datetime.now(UTC).isoformat()
        for key in itertools.chain(self._numbers, self._others):
            yield {key_field: int(key) if as_number else str(key), DELETED_AT: deleted_at}
