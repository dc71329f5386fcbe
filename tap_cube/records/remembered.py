"""A partition's remembered state: whether this run trusts it, and what goes back into it.

A partition remembers its delivered ids (tap_cube/records/deletions.py), its record hashes
(tap_cube/records/changes.py), the note of what they vouch for (tap_cube/records/memory.py)
and when they were born (tap_cube/records/memory_age.py). Memory that vouches for other
records, or hashes too old, is let go before the partition is read, so that it is sent
whole once; plain functions on the state dict, for the partition's read.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from tap_cube.records import changes, deletions, memory, memory_age
from tap_cube.records.converters import parse_bookmark
from tap_cube.settings import Settings, zone_of

if t.TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from singer_sdk.mapper import StreamMap

State = dict[str, t.Any]


@dataclass(frozen=True, slots=True)
class MemoryRules:
    """What this run holds a partition's memory to: the same for all of a stream's."""

    stream_name: str
    #: What this run's memory of a partition vouches for.
    vouches_for: memory.Vouching
    #: The streams the records go to, as emitted (after stream maps).
    emitted_streams: Sequence[str]
    max_memory_age_days: float
    resend_before: datetime | None
    #: Whether skip_unchanged applies: only then are the stored hashes compared with.
    skips_unchanged: bool


def memory_rules(
    stream_name: str,
    emitting_maps: Sequence[StreamMap],
    settings: Settings,
    *,
    switches: dict[str, bool],
) -> MemoryRules:
    """The rules for a stream whose records the SDK emits through `emitting_maps`: its
    memory vouches for its SCHEMA messages as the SDK writes them, the settings beside
    them, the `timezone` setting's zone and the `switches` (detect_deletions,
    skip_unchanged)."""
    destination = [stream_map.stream_alias for stream_map in emitting_maps]
    vouches_for = memory.Vouching.of(
        destination=destination,
        shape={
            "schemas": [
                [m.stream_alias, m.transformed_schema, m.transformed_key_properties]
                for m in emitting_maps
            ],
            "settings": {name: settings.given(name) for name in memory.MAP_SETTINGS},
        },
        timezone=zone_of(settings.timezone).key,
        switches=switches,
    )
    return MemoryRules(
        stream_name=stream_name,
        vouches_for=vouches_for,
        emitted_streams=destination,
        max_memory_age_days=settings.max_memory_age_days,
        resend_before=parse_bookmark(settings.resend_before),
        skips_unchanged=switches["skip_unchanged"],
    )


def distrust_reason(state: State, rules: MemoryRules, now: datetime) -> str | None:
    """Why the partition's stored memory is not trusted this run (None: trust it).

    Its stored hashes are then dropped, so the partition is sent whole and its hashes
    rebuilt; its delivered ids are kept unless they name rows of another destination
    (`names_another_destination`). Not trusted: memory that vouches for other records
    (tap_cube/records/memory.py), and hashes born (last sent whole) before resend_before
    or longer ago than the partition's age limit (tap_cube/records/memory_age.py): they
    may vouch for rows the target lost.
    """
    hashes = state.get(changes.STATE_KEY)
    if hashes is None and deletions.STATE_KEY not in state:
        return None  # nothing remembered
    if hashes is not None and changes.is_outdated(hashes):
        return "its record hashes were kept by an earlier tap-cube, in a format it no longer reads"
    note = state.get(memory.STATE_KEY)
    if note is None:
        return "its memory was kept by an earlier tap-cube, which did not note what it vouches for"
    changed = rules.vouches_for.changed_since(memory.Vouching.parse(note))
    if changed:
        reason = memory.reason(changed, rules.emitted_streams)
        if deletions.STATE_KEY in state and names_another_destination(state, rules):
            reason += (
                "; the ids it delivered name rows of where its records went before, so "
                "they are let go and nothing is marked deleted this run"
            )
        return reason
    if hashes is None:
        return None  # delivered ids stay true of the table, whatever their age
    return memory_age.distrust_reason(
        parse_bookmark(state.get(memory_age.STATE_KEY)),
        now=now,
        limit=memory_age.age_limit(
            rules.max_memory_age_days, rules.stream_name, state.get("context", {})
        ),
        resend_before=rules.resend_before,
    )


def names_another_destination(state: State, rules: MemoryRules) -> bool:
    """Whether the partition's memory is of records sent to other streams (tables)."""
    note = state.get(memory.STATE_KEY)
    earlier = memory.Vouching.parse(note) if note is not None else None
    return earlier is not None and earlier.destination != rules.vouches_for.destination


def forget_distrusted(state: State, rules: MemoryRules) -> bool:
    """Drops the memory `distrust_reason` does not trust; whether that changes what is
    sent or deleted (then worth a line)."""
    forgets_hashes = state.pop(changes.STATE_KEY, None) is not None and rules.skips_unchanged
    forgets_ids = names_another_destination(state, rules) and (
        state.pop(deletions.STATE_KEY, None) is not None
    )
    return forgets_hashes or forgets_ids


def note_what_memory_vouches_for(state: State, rules: MemoryRules) -> None:
    """Notes with the partition's ids and hashes what they vouch for (none: no note)."""
    if deletions.STATE_KEY in state or changes.STATE_KEY in state:
        state[memory.STATE_KEY] = rules.vouches_for.note()
    else:
        state.pop(memory.STATE_KEY, None)


def deletions_start_here(stream_name: str, where: str, *, others: bool) -> str:
    """The line for a partition that deletions track, without delivered ids: rows removed
    from Cube before this run are never marked deleted. Right for its first run; worth a
    WARNING when `others` of the stream's partitions have theirs (a `meltano state merge`
    replaces the list of partitions)."""
    among = f" while other partitions of {stream_name} have theirs" if others else ""
    return (
        f"{stream_name}: {where}: no delivered ids in the state{among}, so rows removed from "
        "Cube before this run are not marked deleted. Right for its first run; if its "
        "memory was lost (a new state id, state clear, --full-refresh, a state merge), "
        "restore it with meltano state set, or delete its rows in the target and set "
        "resend_before"
    )
