"""What a partition's memory vouches for: the note kept beside its ids and hashes.

A partition's delivered ids (deletions.py) and record hashes (changes.py) say what the
target holds of it: which rows, with which values. That is true only of the records as
they were emitted then: to the same streams, with the same schema, stream maps and
flattening, the same timezone, and with detect_deletions and skip_unchanged as they
were. The state notes all of that as `memory_vouches_for`, four 64-bit hashes in hex
(a part each, so that a run can say which part changed); a run whose note differs
trusts the memory no further than the note allows (tap_cube/records/remembered.py
`distrust_reason`).
"""

from __future__ import annotations

import dataclasses
import re
import typing as t

import msgspec
import xxhash

if t.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: The key of a partition's state that notes what its ids and hashes vouch for.
STATE_KEY = "memory_vouches_for"
#: The SDK's settings that change the records as emitted, beside the schema.
MAP_SETTINGS = (
    "stream_maps",
    "stream_map_config",
    "faker_config",
    "flattening_enabled",
    "flattening_max_depth",
)
_PART = "[0-9a-f]{16}"
_NOTE = re.compile(f"{_PART}(?:-{_PART}){{3}}")
# Sorted keys: the same settings note the same whatever order they were given in.
_encode = msgspec.json.Encoder(order="sorted", enc_hook=str).encode


def _digest(value: object) -> str:
    return f"{xxhash.xxh3_64_intdigest(_encode(value)):016x}"


@dataclasses.dataclass(frozen=True)
class Vouching:
    """What a partition's memory vouches for, a hash per part."""

    #: The streams its records go to, as emitted (after stream maps' aliases).
    destination: str
    #: The schema of each of them as emitted (selection, stream maps and flattening
    #: applied), and the settings of stream maps and flattening.
    shape: str
    #: The timezone of Cube's local times.
    timezone: str
    #: Whether detect_deletions and skip_unchanged were on.
    switches: str

    @classmethod
    def of(
        cls,
        *,
        destination: Sequence[str],
        shape: object,
        timezone: str,
        switches: Mapping[str, bool],
    ) -> Vouching:
        return cls(_digest(destination), _digest(shape), _digest(timezone), _digest(switches))

    @classmethod
    def parse(cls, note: str) -> Vouching:
        """The note a state holds (checked by `is_note` when the state was loaded)."""
        return cls(*note.split("-"))

    def note(self) -> str:
        """The note for the state."""
        return "-".join(dataclasses.astuple(self))

    def changed_since(self, earlier: Vouching) -> list[str]:
        """The parts that differ from the `earlier` note's."""
        return [
            part.name
            for part in dataclasses.fields(self)
            if getattr(self, part.name) != getattr(earlier, part.name)
        ]


_DESCRIBED = {
    "destination": "the streams its records go to",
    "shape": "the schema, selection, stream maps or flattening",
    "timezone": "the timezone",
    "switches": "detect_deletions or skip_unchanged",
}


def reason(changed: Sequence[str], streams: Sequence[str]) -> str:
    """Why a memory is not trusted when the parts `changed` of its note did; `streams`
    are those its records go to now."""
    named = [
        f"{_DESCRIBED[part]} (now {', '.join(streams) or 'none'})"
        if part == "destination"
        else _DESCRIBED[part]
        for part in changed
    ]
    return f"{' and '.join(named)} changed since its memory was kept"


def is_note(value: object) -> bool:
    """Whether `value` is a note as `Vouching.note` writes it."""
    return isinstance(value, str) and _NOTE.fullmatch(value) is not None
