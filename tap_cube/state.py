"""The state a run is given: input like the settings, checked whole before anything is read.

The SDK reads a state as it finds it: a partition whose context has another type
(`{"assignment_id": "7"}`) simply matches no partition, and delivered ids that cannot
be read would be forgotten; either way the run starts that partition afresh and exits 0,
and the customers removed since the last run are never marked deleted. So every part
of the state of a stream this tap knows is checked when it is loaded (`check_state`,
one partition at a time in `check_partition`), and what cannot be trusted stops the
run with one line naming the stream, the partition and what to do. Streams and keys
the tap does not know are left as they are. The state as `meltano state get` prints
it is read too; a top level of any other shape stops the run (`singer_state`).
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass
from decimal import Decimal

from tap_cube.errors import StateError
from tap_cube.records import changes, memory, memory_age
from tap_cube.records.converters import parse_bookmark
from tap_cube.records.deletions import STATE_KEY, decode_ids

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

_REMEDY = (
    "remove that partition from the state (meltano state get, then meltano state set) "
    "or clear the state (meltano state clear <state id>) to start it afresh"
)
#: The JSON type a partition key's schema names, as Python's json gives it.
_KEY_TYPES: dict[str, type] = {"integer": int, "string": str}


@dataclass(frozen=True)
class StreamShape:
    """What a stream's state may hold: its partition keys, delivered ids, a bookmark."""

    name: str
    #: Each partition key and the Python type of its JSON value; none: one partition.
    partition_keys: Mapping[str, type]
    #: The replication key whose value is a bookmark timestamp, if incremental.
    bookmark_key: str | None


def key_types(key_schema: Mapping[str, Mapping[str, t.Any]]) -> dict[str, type]:
    """Each partition key and the Python type of its JSON value, from their schema."""
    return {key: _KEY_TYPES[prop["type"]] for key, prop in key_schema.items()}


#: The key under which `meltano state get` prints the Singer state.
MELTANO_WRAPPER = "singer_state"


def singer_state(given: Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The Singer state in a given state: as a target emitted it, or unwrapped from the
    form `meltano state get` prints; StateError for any other shape.

    The SDK reads only a state's "bookmarks": any other shape would be taken as empty,
    and a run from an empty state marks nothing deleted that was removed meanwhile.
    """
    state = given
    if set(given) == {MELTANO_WRAPPER} and isinstance(given[MELTANO_WRAPPER], dict):
        state = given[MELTANO_WRAPPER]
    if state and "bookmarks" not in state:
        keys = ", ".join(json.dumps(str(key))[:40] for key in list(state)[:3])
        more = ", ..." if len(state) > 3 else ""
        msg = (
            f'the state is not a Singer state: its top level holds {keys}{more}, not "bookmarks"; '
            "give the state as the tap emitted it (a STATE message's value), or as "
            '`meltano state get <state id>` prints it ({"singer_state": {"bookmarks": ...}})'
        )
        raise StateError(msg)
    return dict(state)


def check_state(state: Mapping[str, t.Any], shapes: Iterable[StreamShape]) -> None:
    """Raise StateError, naming what to do, for anything in `state` that cannot be trusted."""
    bookmarks = state.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        msg = (
            "the state's bookmarks are not an object (it is not a state this tap wrote); "
            "clear the state (meltano state clear <state id>) to start afresh"
        )
        raise StateError(msg)
    known = {shape.name: shape for shape in shapes}
    for name, stream_state in bookmarks.items():
        # Another stream's state is kept as it is, but the SDK needs it to be an object.
        shape = known.get(name, StreamShape(str(name), {}, None))
        if name in known or not isinstance(stream_state, dict):
            _check_stream(stream_state, shape)


def _check_stream(stream_state: object, shape: StreamShape) -> None:
    if not isinstance(stream_state, dict):
        _fail(shape, None, f"it is {_kind(stream_state)}, not an object")
    if not shape.partition_keys:
        check_partition(stream_state, shape, None)
        return
    partitions = stream_state.get("partitions", [])
    if not isinstance(partitions, list):
        _fail(shape, None, f"its partitions are {_kind(partitions)}, not a list")
    seen: set[str] = set()
    for index, partition in enumerate(partitions):
        check_partition(partition, shape, index)
        context = _context_text(partition["context"])
        if context in seen:
            _fail(shape, context, "the partition is listed twice")
        seen.add(context)


def check_partition(partition: object, shape: StreamShape, index: int | None) -> None:
    """Check one partition's state (the stream's, for a stream of one partition).

    `index` is the partition's place in the stream's list, for a partition whose
    context cannot name it.
    """
    where = f"partition {index + 1}" if index is not None else None
    if not isinstance(partition, dict):
        _fail(shape, where, f"it is {_kind(partition)}, not an object")
    if index is not None:
        context = partition.get("context")
        if not isinstance(context, dict):
            _fail(shape, where, f"its context is {_kind(context)}, not an object")
        where = _context_text(context)
        if set(context) != set(shape.partition_keys):
            _fail(shape, where, f"its context must name {' and '.join(shape.partition_keys)}")
        for key, expected in shape.partition_keys.items():
            if type(context[key]) is not expected:
                kind = "an integer" if expected is int else "text"
                _fail(shape, where, f"{key} must be {kind}, not {_kind(context[key])}")
    if STATE_KEY in partition:
        try:
            decode_ids(partition[STATE_KEY])
        except ValueError as exc:
            _fail(shape, where, f"its {STATE_KEY} {exc}")
    born = partition.get(memory_age.STATE_KEY)
    if born is not None and parse_bookmark(born) is None:
        shown = _json(born)[:60]
        _fail(shape, where, f"its {memory_age.STATE_KEY} {shown} is not an ISO 8601 timestamp")
    problem = changes.record_hashes_problem(partition.get(changes.STATE_KEY))
    if problem is not None:
        _fail(shape, where, problem)
    note = partition.get(memory.STATE_KEY)
    if note is not None and not memory.is_note(note):
        # A note no tap-cube writes: the state was edited or damaged, as for the ids.
        _fail(
            shape,
            where,
            f"its {memory.STATE_KEY} is {_kind(note)}, not what tap-cube notes there "
            "(four 16-digit hex hashes joined by '-')",
        )
    if shape.bookmark_key is not None:
        _check_bookmark(partition, shape, where)


def _check_bookmark(partition: dict[str, t.Any], shape: StreamShape, where: str | None) -> None:
    key = partition.get("replication_key")
    if key is not None and key != shape.bookmark_key:
        _fail(shape, where, f"its replication_key is {key!r}, not {shape.bookmark_key!r}")
    if "replication_key_value" not in partition:
        return
    value = partition["replication_key_value"]
    if parse_bookmark(value) is None:
        shown = _json(value)[:60]
        _fail(shape, where, f"its bookmark {shown} is not an ISO 8601 timestamp")


def _fail(shape: StreamShape, where: str | None, problem: str) -> t.NoReturn:
    place = f", partition {where}" if where and where[0] == "{" else f", {where}" if where else ""
    remedy = _REMEDY if where else _REMEDY.replace("that partition", "this stream")
    msg = f"the state of {shape.name}{place}: {problem}; {remedy}"
    raise StateError(msg)


def _json(value: object) -> str:
    """A state value as JSON; the SDK reads a state's fractions as Decimal."""
    return json.dumps(
        value, sort_keys=True, default=lambda v: float(v) if isinstance(v, Decimal) else repr(v)
    )


def _context_text(context: object) -> str:
    return _json(context)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {_json(value)}"
    if isinstance(value, int | float | Decimal):
        return f"the number {_json(value)}"
    if isinstance(value, str):
        return f"the text {_json(value)[:40]}"
    return "a list" if isinstance(value, list) else "an object"
