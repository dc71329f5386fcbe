"""`CubeStream`: a Cube list endpoint as a Singer stream; the SDK's glue around its reads.

The stream says what to request and what its records are. Its client (tap_cube/api/client.py)
gets the pages, the page pipeline (tap_cube/api/fetch.py) fetches them ahead, paging
(tap_cube/api/paging.py) says which page comes next, and a partition's read
(tap_cube/records/partition_read.py) turns them into each record exactly once, with the
STATEs due on the way. Calls go one way: the stream hands each of them plain values and
functions, writes the messages they ask for, and keeps no fact of a partition being read.
"""

from __future__ import annotations

import typing as t
from datetime import UTC, datetime
from functools import cached_property, partial
from urllib.parse import urlsplit

from singer_sdk import RESTStream
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import RemoveRecordTransform, StreamMap
from singer_sdk.singerlib import RecordMessage
from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE
from singer_sdk.streams.rest import PageContext
from typing_extensions import override

from tap_cube.api import paging
from tap_cube.api.client import CubeClient, PageRequest
from tap_cube.api.fetch import PagePipeline, RequestGate
from tap_cube.api.paging import CubeNextLinkPaginator
from tap_cube.progress import PROGRESS_INTERVAL
from tap_cube.records import keys
from tap_cube.records.coercion import CATCH_ALL, RecordCoercion
from tap_cube.records.completeness import CHECKPOINT_INTERVAL, PartitionList, RecordPath
from tap_cube.records.converters import INT64_MAX, INT64_MIN
from tap_cube.records.deletions import DELETED_AT, DELETED_AT_SCHEMA
from tap_cube.records.partition_read import (
    ExtractedRecord,
    PartitionRead,
    ReadPolicy,
    RequestFigures,
    StateDue,
)
from tap_cube.records.remembered import MemoryRules, memory_rules
from tap_cube.records.stream_outcome import StreamOutcome
from tap_cube.settings import Settings, zone_of
from tap_cube.streams.catalog import reconcile

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
    from zoneinfo import ZoneInfo

    from singer_sdk.authenticators import APIKeyAuthenticator, BasicAuthenticator
    from singer_sdk.helpers.types import Context
    from singer_sdk.singerlib import Catalog
    from singer_sdk.tap_base import Tap

    from tap_cube.api.page import Page
    from tap_cube.streams.directory import Directory
    from tap_cube.streams.specs import StreamSpec


def int64_bounded(prop: dict[str, t.Any]) -> dict[str, t.Any]:
    """An integer property with the int64 range that coerce() keeps to; others as they are.

    Declaring it makes targets pick bigint: without it pipelinewise-target-postgres picks
    numeric and target-duckdb HUGEINT.
    """
    if "integer" not in prop.get("type", ()):
        return prop
    return {**prop, "minimum": INT64_MIN, "maximum": INT64_MAX}


class CubeStream(RESTStream[t.Any]):
    """A Cube list endpoint, read through the page pipeline.

    What it reads, and how, is its spec (a row of tap_cube/streams/specs.py): its name
    and path, its partitions, its key, its columns. Records are de-duplicated per
    partition on `record_id_field`, and coerce() fits every value to its declared type
    or keeps it in the catch-all column (tap_cube/records/coercion.py).
    """

    #: Seconds between two progress lines of a long partition (tap_cube/progress.py).
    progress_interval: float = PROGRESS_INTERVAL
    #: Seconds at least between two STATEs written while one partition is read
    #: (tap_cube/records/partition_read.py); more when writing one takes long.
    checkpoint_interval: float = CHECKPOINT_INTERVAL
    #: Why a run never sends this stream's whole table, if it never does: then
    #: ACTIVATE_VERSION, which tells the target a version holds it all, is refused.
    partial_send: str | None = None
    # coerce() makes every record match the schema, cheaper than the SDK's generic
    # conformance, which walks the schema for every field of every record.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    #: The run's campaigns and data owners, for the streams whose partitions they are;
    #: unset in the stream that reads them for it.
    directory: Directory

    def __init__(
        self,
        tap: Tap,
        spec: StreamSpec,
        schema: dict[str, t.Any] | None = None,
        *,
        gate: RequestGate,
        directory: Directory | None = None,
    ) -> None:
        """`schema`: as discovery found it; none: the spec's, before discovery."""
        self.spec = spec
        if directory is not None:
            self.directory = directory
        #: The setting that chose the partitions, for messages about one of them.
        self.partition_setting = spec.partitions.setting_for(directory)
        super().__init__(
            tap=tap,
            name=spec.name,
            schema=schema if schema is not None else spec.base_schema(),
            path=spec.path,
        )
        self.client = CubeClient(
            self.config,
            self.requests_session,
            gate,
            stream_name=self.name,
            logger=self.logger,
            paginated=self.paginated,
            optional=self.optional,
            partition_setting=self.partition_setting,
        )
        self._gate = gate
        self.primary_keys = self.record_key
        properties = self.schema["properties"]
        for name, prop in self.added_properties().items():
            properties.setdefault(name, prop)
        for name, prop in properties.items():
            properties[name] = int64_bounded(prop)
        if self.detects_deletions or self.skips_unchanged:
            # A full-table state says nothing new mid-stream, and it carries every
            # partition's delivered ids and record hashes: write it when the stream is done.
            self.STATE_MSG_FREQUENCY = 1 << 62
        self._pipeline: PagePipeline | None = None
        #: What the partitions read so far came to (skipped, unchecked, withheld).
        self._outcome = StreamOutcome(self.name)

    # --- what the spec says -----------------------------------------------------

    @property
    def paginated(self) -> bool:
        """Whether the list comes in DRF pages with `next` links, not as one JSON list."""
        return self.spec.paginated

    @property
    def record_id_field(self) -> str | None:
        """The field that identifies a record within one partition."""
        return self.spec.record_id

    @property
    def key_schema(self) -> Mapping[str, dict[str, t.Any]]:
        """The partition's fields, which the SDK adds to every record from its context."""
        return self.spec.partitions.key_schema

    @property
    def optional(self) -> bool:
        """Whether a partition answering 403 or 404 is skipped with a warning even when
        skip_inaccessible_assignments is off (for data some users may not see)."""
        return self.spec.optional

    @property
    def tracks_deletions(self) -> bool:
        """Whether detect_deletions applies: full lists keyed by `record_id_field`."""
        return self.spec.tracks_deletions

    @property
    def tracks_changes(self) -> bool:
        """Whether skip_unchanged applies: full-table streams keyed by `record_id_field`."""
        return self.spec.tracks_changes

    @property
    def record_key(self) -> list[str]:
        """The fields that tell the stream's records apart, across its partitions: the
        partition's fields and the spec's key. The key a target must keep rows on."""
        return [*self.key_schema, *self.spec.key]

    def added_properties(self) -> dict[str, dict[str, t.Any]]:
        """What records carry whatever the schema says: their key (which upserts, deletion
        records, the delivered ids and skip_unchanged's hashes rest on) and, when
        deletions are detected, `_sdc_deleted_at`."""
        key_fields = {**self.key_schema, **self.spec.id_schema}
        added = {name: int64_bounded(prop) for name, prop in key_fields.items()}
        if self.detects_deletions:
            added[DELETED_AT] = DELETED_AT_SCHEMA
        return added

    @override
    def apply_catalog(self, catalog: Catalog) -> None:
        """The given catalog's entry, reconciled first with what records carry (catalog.py)."""
        entry = catalog.get_stream(self.name)
        # A stream the catalog leaves unselected emits nothing, so nothing to reconcile.
        if entry is not None and entry.metadata.resolve_selection()[()]:
            carried = [*self.record_key, DELETED_AT]
            reconcile(entry, self.added_properties(), carried if self.detects_deletions else None)
        super().apply_catalog(catalog)

    # --- what to request ----------------------------------------------------------

    @property
    @override
    def url_base(self) -> str:
        return self.client.url_base

    @property
    @override
    def authenticator(self) -> APIKeyAuthenticator | BasicAuthenticator:
        return self.client.authenticator

    @property
    @override
    def http_headers(self) -> dict[str, str]:
        return {"Accept": "application/json"}

    def paginator_for(self, context: Context | None) -> CubeNextLinkPaginator:
        """The paginator of one partition's list (paging happens in tap_cube/api/paging.py,
        in place of the SDK's `get_new_paginator` and `parse_response`)."""
        params = paging.first_page_query(self.first_page_params(context))
        list_path = self.get_url(context).removeprefix(self.url_base)
        return CubeNextLinkPaginator(self.describe_partition(context), list_path, params)

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        """The first page's parameters, or exactly those of the `next` link being followed."""
        query = str(next_page_token) if next_page_token else None
        return paging.request_params(self.first_page_params(context), query)

    def first_page_params(self, context: Context | None) -> dict[str, t.Any]:
        """The spec's query parameters whose settings are set."""
        params = {param: self.settings.given(name) for param, name in self.spec.params.items()}
        return {param: value for param, value in params.items() if value}

    def page_request(self, context: Context | None, query: str | None) -> PageRequest:
        """The authenticated request for a page: the first, or the one `query` names."""
        http_request = self.get_http_request(
            page=PageContext(stream_context=context, next_page_token=query)
        )
        prepared = self.build_prepared_request(
            method=http_request.method,
            url=http_request.url,
            params=http_request.encode_params(),
            headers=http_request.headers,
        )
        return PageRequest(
            prepared, self.describe_partition(context), self.page_path(context, query), query
        )

    def fetch_page(self, context: Context | None, query: str | None) -> Page:
        """One page of a partition's list: the first, or the one `query` names."""
        return self.client.fetch_page(self.page_request(context, query))

    def page_path(self, context: Context | None, query: str | None) -> str:
        """The path and query of a page, as messages show it."""
        path = urlsplit(self.get_url(context)).path
        return paging.shown_path(path, self.first_page_params(context), query)

    # --- partitions ---------------------------------------------------------------

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]] | None:
        contexts = self.spec.partitions.contexts
        if contexts is None:
            return super().partitions
        return contexts(self.config, self.directory)

    @property
    def skips_inaccessible(self) -> bool:
        """Whether a partition answering 403 or 404 is skipped with a warning: partitions
        found in /campaigns, whose data some users may not see, always are."""
        found = self.spec.partitions.found
        return (
            self.optional
            or self.settings.skip_inaccessible_assignments
            or (found is not None and found(self.directory))
        )

    def describe_partition(self, context: Context | None) -> str:
        """How messages name a partition: "assignment 7", "data owner 3 (B2C)"."""
        list_name = f"{self.spec.list_name} of " if self.spec.list_name else ""
        if not context:
            return list_name + self.name
        first, *rest = context.values()
        extra = f" ({', '.join(str(value) for value in rest)})" if rest else ""
        return f"{list_name}{self.spec.partitions.label} {first}{extra}"

    def planned_partitions(self) -> list[dict[str, t.Any]]:
        """The partitions whose pages may be fetched ahead, in the order they are read;
        asked once, when the stream starts to read."""
        self.warn_vanished_partitions()
        return list(self.partitions or [{}])

    def warn_vanished_partitions(self) -> None:
        """When the stream starts to read: data owners the state knows, now not found."""
        if self.spec.partitions.warns_vanished:
            self.directory.warn_vanished(self.tap_state.get("bookmarks") or {})

    @property
    def pipeline(self) -> PagePipeline:
        if self._pipeline is None:
            self._pipeline = PagePipeline(
                self.fetch_page,
                concurrency=self.settings.max_concurrent_requests,
                paginator=self.paginator_for,
                gate=self._gate,
            )
            self._pipeline.plan(self.planned_partitions())
        return self._pipeline

    def close(self) -> None:
        """End outstanding work; no worker thread outlives this call."""
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None

    # --- records --------------------------------------------------------------------

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        where = self.describe_partition(context)
        last = self._is_last_partition(context)
        try:
            yield from self.read_partition(context)
        except BaseException:
            self.close()  # a failed or abandoned run leaves no worker behind
            raise
        finally:
            self._report_unfit(where)
        if last:
            self.close()
            self._outcome.check(
                len(self.partitions or [{}]),
                self.partition_setting,
                optional=self.optional,
                max_deletion_share=self.max_deletion_share,
                logger=self.logger,
            )
            self._activate_version()

    @property
    def activates_version(self) -> bool:
        """Whether the SDK gives this stream's records a version to activate, as its
        `sync` decides it."""
        return (
            self.selected
            and self.replication_method == REPLICATION_FULL_TABLE
            and self.emit_activate_version_messages
        )

    @override
    def _write_activate_version_message(self, full_table_version: int) -> None:
        """Held back: the SDK writes it as a sync begins, before any record of the version,
        and a target then marks every row deleted until it is sent again; a run that
        fails on the way left them so. `_activate_version` writes it once all were sent."""

    def _activate_version(self) -> None:
        """ACTIVATE_VERSION after the stream's last record, when every partition was
        read whole; a skipped one would have its rows marked deleted, so none then."""
        if self._stream_version is None:
            return
        refused = self._outcome.activate_version_refused(self.partition_setting)
        if refused is not None:
            raise refused
        super()._write_activate_version_message(self._stream_version)

    def read_partition(self, context: Context | None) -> Iterator[dict[str, t.Any]]:
        """The records of one partition, each exactly once, or an error that says why not;
        and the STATEs its read asks for (tap_cube/records/partition_read.py).

        A partition that answers 403 or 404 before its first page is skipped with a
        warning when skips_inaccessible allows it. Its state changes only once it was
        read completely: its delivered ids (detect_deletions) and record hashes
        (skip_unchanged), and the note of what they vouch for (tap_cube/records/memory.py).
        """
        # Only streams that keep ids or hashes per partition touch its state here (a
        # call outcomes window is no partition of its own).
        keeps_state = self.tracks_deletions or self.tracks_changes
        state = self.get_context_state(context) if keeps_state else {}
        where = self.describe_partition(context)
        read = PartitionRead(
            state,
            partial(self.pipeline.pages, context or {}),
            PartitionList(
                stream_name=self.name,
                where=where,
                logger=self.logger,
                id_field=self.record_id_field,
                paginated=self.paginated,
                progress_interval=self.progress_interval,
                limit=lambda: self._gate.limit.current,
            ),
            self.record_path(context),
            self._read_policy(keeps_state=keeps_state),
            siblings=(self.stream_state or {}).get("partitions") or [],
            requests=partial(self._request_figures, where),
        )
        items = read.items()
        try:
            while True:
                try:
                    item = next(items)
                except StopIteration as done:
                    self._outcome.add(where, done.value)
                    return
                if isinstance(item, StateDue):
                    self._write_state_now(ending=item is StateDue.ENDING)
                else:
                    yield item
        finally:
            items.close()  # closed by the SDK (which failed): so is the read

    def _request_figures(self, where: str) -> RequestFigures:
        limit = self._gate.limit
        return RequestFigures(
            retries=self.client.retries_of(where),
            throttled=self.client.throttled_of(where),
            limit=limit.current,
            ceiling=limit.ceiling,
            floor=limit.floor,
        )

    def _read_policy(self, *, keeps_state: bool) -> ReadPolicy:
        """What this stream and its settings make of a partition's read."""
        return ReadPolicy(
            tracks_deletions=self.tracks_deletions,
            detects_deletions=self.detects_deletions,
            tracks_changes=self.tracks_changes,
            skips_unchanged=self.skips_unchanged,
            skips_inaccessible=self.skips_inaccessible,
            max_deletion_share=self.max_deletion_share,
            id_schema=(
                self.schema["properties"][str(self.record_id_field)]
                if self.tracks_deletions
                else None
            ),
            checkpoint_interval=self.checkpoint_interval,
            memory=self._memory_rules if keeps_state else None,
        )

    def _write_state_now(self, *, ending: bool = False) -> None:
        """A STATE now, where a partition's read asks for one. `ending`: the read ends
        early, and the error that ended it is the one to report."""
        self.state_manager.is_flushed = False  # the SDK writes a STATE only when unflushed
        try:
            self._write_state_message()
        except Exception:
            if not ending:
                raise
            self.logger.warning("%s: the state could not be written", self.name)

    # --- what the memory vouches for ---------------------------------------------------

    @cached_property
    def emitting_maps(self) -> list[StreamMap]:
        """The stream maps that make messages of this stream's records."""
        return [m for m in self.stream_maps if not isinstance(m, RemoveRecordTransform)]

    @cached_property
    def _memory_rules(self) -> MemoryRules:
        """What this run holds a partition's memory to (tap_cube/records/remembered.py)."""
        return memory_rules(
            self.name,
            self.emitting_maps,
            self.config,
            timezone=self.zone.key,
            switches={
                "detect_deletions": self.detects_deletions,
                "skip_unchanged": self.skips_unchanged,
            },
            max_memory_age_days=self.settings.max_memory_age_days,
        )

    # --- what becomes of a record -----------------------------------------------------

    def record_path(self, context: Context | None) -> RecordPath:
        """How a partition's records are prepared, keyed and fitted: functions of
        tap_cube/records/, so that a record's way does not come back to the stream."""
        return RecordPath(
            keyer=self._id_keyer(),
            prepare=partial(
                self._coercion.set_aside_owned, owned=self.owned_fields, partition=context or {}
            ),
            fit=self._coercion,
        )

    def _id_keyer(self) -> Callable[[], Callable[[dict[str, t.Any]], object]]:
        """Makes the keyer of a read: `record_id_field` as its key column will hold it
        (tap_cube/records/keys.py), for de-duplication, the delivered ids in state and
        deletion records alike."""
        field = self.record_id_field
        fit = self._coercion.converters.get(field) if field is not None else None
        kind = (
            {"text": str, "integer": int}.get(self._coercion.kinds[field])
            if field and fit
            else None
        )
        return partial(keys.id_keyer, field, fit, kind)

    @cached_property
    def _coercion(self) -> RecordCoercion:
        # The schema the SCHEMA message carries: a given catalog's, else the discovered one.
        return RecordCoercion(self.effective_schema.get("properties", {}), self.zone)

    @cached_property
    def settings(self) -> Settings:
        """The tap's settings, typed, with their defaults (the one way they are read)."""
        return Settings(self.config)

    @cached_property
    def zone(self) -> ZoneInfo:
        """Where Cube's local times (without an offset) are: the `timezone` setting."""
        return zone_of(self.settings.timezone)

    def coerce(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """The record, every value of its declared type or kept in the catch-all column."""
        return self.record_path(None).fit(record)

    @cached_property
    def owned_fields(self) -> tuple[str, ...]:
        """The fields the tap writes into records itself, whatever the server sends."""
        return (*self.key_schema, CATCH_ALL, DELETED_AT)

    def discovery_declares(self, field: str) -> bool:
        """Whether discovering the schema again would give `field` a column of its own."""
        return self.spec.schema_source.declares(field)

    def _report_unfit(self, where: str) -> None:
        """One warning per field whose values fit no column in the partition `where`."""
        where = self.name if where == self.name else f"{self.name}: {where}"
        for line in self._coercion.report(self.discovery_declares):
            self.logger.warning("%s: %s", where, line)

    @cached_property
    def detects_deletions(self) -> bool:
        return self.tracks_deletions and self.settings.detect_deletions

    @cached_property
    def max_deletion_share(self) -> float:
        """The share of a partition's rows that one run may mark deleted."""
        return self.settings.max_deletion_share

    @cached_property
    def skips_unchanged(self) -> bool:
        return self.tracks_changes and self.settings.skip_unchanged

    def _is_last_partition(self, context: Context | None) -> bool:
        partitions = self.partitions
        return not partitions or partitions[-1] == context

    # --- messages -------------------------------------------------------------------

    @cached_property
    def _declared(self) -> frozenset[str]:
        return frozenset(self.schema.get("properties", {}))

    @cached_property
    def _every_property_selected(self) -> bool:
        return all(self.mask[("properties", name)] for name in self._declared)

    @override
    def _generate_record_messages(
        self, record: dict[str, t.Any]
    ) -> Generator[RecordMessage, None, None]:
        """The SDK's record messages, without its per-field selection walk when it is moot,
        and none for a record skip_unchanged finds unchanged.

        With every property selected (the usual case) the walk removes nothing, yet it
        was the largest per-record cost left; with any deselected, the SDK does it all.
        Records are compared as emitted, so a change of selection or stream maps counts.
        """
        if not self._every_property_selected:
            messages = list(super()._generate_record_messages(record))
            if self._sends(record, [(message.stream, message.record) for message in messages]):
                yield from messages
            return
        emitted = [
            (stream_map.stream_alias, mapped)
            for stream_map in self.stream_maps
            if (mapped := stream_map.transform(record)) is not None
        ]
        # Compared before any message is made: most records of a re-run are unchanged.
        if not self._sends(record, emitted):
            return
        # When the record's page arrived, which the record carries from its read.
        extracted_at = (
            record.time_extracted if isinstance(record, ExtractedRecord) else datetime.now(UTC)
        )
        for stream, mapped in emitted:
            yield RecordMessage(
                stream=stream,
                record=mapped,
                version=self._stream_version,
                time_extracted=extracted_at,
            )

    def _sends(self, record: dict[str, t.Any], emitted: list[tuple[str, dict[str, t.Any]]]) -> bool:
        """Whether skip_unchanged lets `record` (as `emitted`: stream, record per message)
        go out, as its partition's gate says (tap_cube/records/partition_read.py); before
        the first that its stored hashes do not vouch for, a STATE without them."""
        gate = record.changes if isinstance(record, ExtractedRecord) else None
        if gate is None or not emitted:
            return True
        if not gate.sends(record, emitted):
            return False
        if gate.withdraws_hashes():
            self._write_state_now()
        return True

    @override
    def generate_child_contexts(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Iterable[Context | None]:
        # No Cube stream has children; the default still builds a context per record.
        if not self.child_streams:
            return ()
        return super().generate_child_contexts(record, context)
