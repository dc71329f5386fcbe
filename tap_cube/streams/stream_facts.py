"""What a stream's spec comes to in one run: the spec read with the run's settings.

`StreamFacts` works out, from plain values, what the stream, its requests and its reads
are made from: its key, what its records carry, whether it detects deletions and skips
unchanged records, which partitions it may skip, and what every partition's read is
held to. The stream (tap_cube/streams/cube_stream.py) only wires them to the SDK.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from functools import cached_property

from tap_cube.records.deletions import DELETED_AT
from tap_cube.records.partition_read import ReadPolicy, ReadSwitches
from tap_cube.records.remembered import memory_rules
from tap_cube.settings import Settings, zone_of
from tap_cube.streams.schema import carried_properties

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from zoneinfo import ZoneInfo

    from singer_sdk.mapper import StreamMap

    from tap_cube.streams.directory import Directory
    from tap_cube.streams.specs import StreamSpec


@dataclass(frozen=True)
class StreamFacts:
    """A stream's spec, the run's settings, and the run's directory of campaigns and data
    owners (None for the stream that reads it)."""

    spec: StreamSpec
    settings: Settings
    directory: Directory | None = None

    @cached_property
    def zone(self) -> ZoneInfo:
        """Where Cube's local times (without an offset) are: the `timezone` setting."""
        return zone_of(self.settings.timezone)

    @cached_property
    def switches(self) -> ReadSwitches:
        """Whether it tracks deletions and changes, and this run detects and skips them."""
        spec = self.spec
        return ReadSwitches.of(
            self.settings,
            tracks_deletions=spec.tracks_deletions,
            tracks_changes=spec.tracks_changes,
        )

    @property
    def state_at_stream_end(self) -> bool:
        """Whether the stream's STATE is written only when the stream is done, not after
        so many records: a full-table state says nothing new mid-stream, and with
        detect_deletions or skip_unchanged it carries every partition's delivered ids and
        record hashes (a partition's read writes its own checkpoints)."""
        return self.switches.detects_deletions or self.switches.skips_unchanged

    @property
    def run_directory(self) -> Directory:
        """The directory, for a stream whose partitions it holds."""
        if self.directory is None:
            raise TypeError(f"{self.spec.name}: its partitions need the run's directory")
        return self.directory

    def partition_contexts(self) -> list[dict[str, t.Any]] | None:
        """The partitions to read; None: one, the whole list."""
        contexts = self.spec.partitions.contexts
        return None if contexts is None else contexts(self.settings, self.run_directory)

    def warn_vanished(self, tap_state: Mapping[str, t.Any]) -> None:
        """As the stream starts to read: data owners the tap's state knows, now not found."""
        if self.spec.partitions.warns_vanished:
            self.run_directory.warn_vanished(tap_state.get("bookmarks") or {})

    @property
    def partition_setting(self) -> str:
        """The setting that chose the partitions, for messages about one of them."""
        return self.spec.partitions.setting_for(self.directory)

    @property
    def record_key(self) -> list[str]:
        """The fields that tell the stream's records apart, across its partitions: the
        partition's fields and the spec's key. The key a target must keep rows on."""
        return [*self.spec.partitions.key_schema, *self.spec.key]

    @cached_property
    def carried_properties(self) -> dict[str, dict[str, t.Any]]:
        """What records carry whatever the schema says (schema.py)."""
        key_fields = {**self.spec.partitions.key_schema, **self.spec.id_schema}
        return carried_properties(key_fields, deletions=self.switches.detects_deletions)

    @property
    def deletion_fields(self) -> list[str] | None:
        """The fields a deletion record carries, when this run detects deletions."""
        return [*self.record_key, DELETED_AT] if self.switches.detects_deletions else None

    @property
    def skips_inaccessible(self) -> bool:
        """Whether a partition answering 403 or 404 is skipped with a warning: partitions
        found in /campaigns, whose data some users may not see, always are. Asks the
        directory: ask it once reading has begun."""
        found, directory = self.spec.partitions.found, self.directory
        return (
            self.spec.optional
            or self.settings.skip_inaccessible_assignments
            or (found is not None and directory is not None and found(directory))
        )

    def first_page_params(self) -> dict[str, t.Any]:
        """The spec's query parameters whose settings are set."""
        params = {param: self.settings.given(name) for param, name in self.spec.params.items()}
        return {param: value for param, value in params.items() if value}

    def read_policy(
        self,
        emitting_maps: Sequence[StreamMap],
        *,
        id_schema: Callable[[], dict[str, t.Any]],
        checkpoint_interval: float,
    ) -> ReadPolicy:
        """What every partition's read is held to, its records emitted through
        `emitting_maps`: the switches, the schema of its id (`id_schema`, asked only
        where deletions are tracked), and, for a stream that keeps ids or hashes per
        partition, what this run holds that memory to (tap_cube/records/remembered.py)."""
        switches = self.switches
        chosen = {
            "detect_deletions": switches.detects_deletions,
            "skip_unchanged": switches.skips_unchanged,
        }
        spec = self.spec
        return ReadPolicy(
            stream_name=spec.name,
            id_field=spec.record_id,
            paginated=spec.paginated,
            partition_setting=self.partition_setting,
            optional=spec.optional,
            switches=switches,
            skips_inaccessible=self.skips_inaccessible,
            max_deletion_share=self.settings.max_deletion_share,
            id_schema=id_schema() if switches.tracks_deletions else None,
            checkpoint_interval=checkpoint_interval,
            memory=memory_rules(spec.name, emitting_maps, self.settings, switches=chosen)
            if switches.keeps_state
            else None,
        )
