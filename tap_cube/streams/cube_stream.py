"""`CubeStream`: a Cube list endpoint as a Singer stream, from its pages to its records.

The stream says what to request and what its records are; its client (tap_cube/api/client.py)
gets the pages, the page pipeline (tap_cube/api/fetch.py) fetches them ahead, and a complete
read (tap_cube/records/completeness.py) turns them into each record exactly once. Calls go one
way: the stream hands each of them plain values and functions, and keeps the state.
"""

from __future__ import annotations

import time
import typing as t
from array import array
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
from tap_cube.errors import DeletionsWithheldError, InaccessibleError, IncompleteError
from tap_cube.progress import PROGRESS_INTERVAL
from tap_cube.records import changes, deletions, memory, memory_age
from tap_cube.records.coercion import CATCH_ALL, RecordCoercion
from tap_cube.records.completeness import (
    CHECKPOINT_INTERVAL,
    Checkpoint,
    CompleteRead,
    DeletionRule,
    PartitionList,
    ReadSummary,
    RecordPath,
)
from tap_cube.records.converters import INT64_MAX, INT64_MIN, UNFIT
from tap_cube.records.deletions import DELETED_AT, DELETED_AT_SCHEMA
from tap_cube.settings import setting, zone_of
from tap_cube.state import parse_bookmark
from tap_cube.streams.catalog import reconcile

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator
    from zoneinfo import ZoneInfo

    from singer_sdk.authenticators import APIKeyAuthenticator, BasicAuthenticator
    from singer_sdk.helpers.types import Context
    from singer_sdk.singerlib import Catalog
    from singer_sdk.tap_base import Tap

    from tap_cube.api.page import Page
    from tap_cube.streams.directory import Directory


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

    Subclasses set `path`, `partition_label` and, for plain JSON lists rather than DRF
    pages, `paginated = False`. Records are de-duplicated per partition on
    `record_id_field`, and coerce() fits every value to its declared type or keeps it
    in the catch-all column (tap_cube/records/coercion.py).
    """

    paginated: bool = True
    #: The field that identifies a record within one partition.
    record_id_field: str | None = None
    #: The fields that tell records apart within one partition (the record id, or what
    #: stands for one), with their columns: kept in a given catalog whatever it says.
    id_schema: t.ClassVar[dict[str, t.Any]] = {}
    #: How a partition is named in messages: "assignment", "data owner", ...
    partition_label: str = "partition"
    #: The setting that chose the partitions, for messages about one of them.
    partition_setting: str = "the tap-cube settings"
    #: Whether a partition answering 403 or 404 is skipped with a warning even when
    #: skip_inaccessible_assignments is off (for data some users may not see).
    optional: bool = False
    #: Whether detect_deletions applies: full lists keyed by `record_id_field`.
    tracks_deletions: bool = False
    #: Seconds between two progress lines of a long partition (tap_cube/progress.py).
    progress_interval: float = PROGRESS_INTERVAL
    #: Seconds at least between two STATEs written while one partition is read
    #: (`_write_checkpoint`); more when writing one takes long (see `Checkpoint`).
    checkpoint_interval: float = CHECKPOINT_INTERVAL
    #: The partition's fields, which the SDK adds to every record from its context.
    key_schema: t.ClassVar[dict[str, t.Any]] = {}
    #: Whether skip_unchanged applies: full-table streams keyed by `record_id_field`.
    tracks_changes: bool = False
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
        schema: dict[str, t.Any] | None = None,
        *,
        gate: RequestGate,
        directory: Directory | None = None,
    ) -> None:
        super().__init__(tap=tap, schema=schema)
        if directory is not None:
            self.directory = directory
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
        #: skip_unchanged's filter of the partition being read (None: send every record).
        self._changes: changes.ChangeFilter | None = None
        #: Whether the last STATE written still holds the stored hashes of the partition
        #: being read, which vouch for what the target holds (see `_withdraw_hashes`).
        self._vouching = False
        self._pipeline: PagePipeline | None = None
        self.skipped: list[str] = []
        #: Partitions whose read could not be checked as complete (no count).
        self.unchecked: list[str] = []
        self.withheld_deletions: list[str] = []
        #: When the page whose records are being emitted arrived.
        self._extracted_at = datetime.now(UTC)

    @property
    def record_key(self) -> list[str]:
        """The fields that tell the stream's records apart, across its partitions: the
        partition's fields and `id_schema`'s. The key a target must keep rows on."""
        return [*self.key_schema, *self.id_schema]

    def added_properties(self) -> dict[str, dict[str, t.Any]]:
        """What records carry whatever the schema says: their key (which upserts, deletion
        records, the delivered ids and skip_unchanged's hashes rest on) and, when
        deletions are detected, `_sdc_deleted_at`."""
        key_fields = {**self.key_schema, **self.id_schema}
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
        """The query parameters of the first page of the partition's list."""
        return {}

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
    def skips_inaccessible(self) -> bool:
        """Whether a partition answering 403 or 404 is skipped with a warning."""
        return self.optional or bool(self.config.get("skip_inaccessible_assignments"))

    def describe_partition(self, context: Context | None) -> str:
        """How messages name a partition: "assignment 7", "data owner 3 (B2C)"."""
        if not context:
            return self.name
        first, *rest = context.values()
        extra = f" ({', '.join(str(value) for value in rest)})" if rest else ""
        return f"{self.partition_label} {first}{extra}"

    def planned_partitions(self) -> list[dict[str, t.Any]]:
        """The partitions whose pages may be fetched ahead, in the order they are read."""
        return list(self.partitions or [{}])

    @property
    def pipeline(self) -> PagePipeline:
        if self._pipeline is None:
            self._pipeline = PagePipeline(
                self.fetch_page,
                concurrency=int(setting(self.config, "max_concurrent_requests")),
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
            everything_skipped = len(self.skipped) == len(self.partitions or [{}])
            if everything_skipped and not self.optional:
                msg = (
                    f"{self.name}: nothing was accessible: {', '.join(self.skipped)} answered "
                    f"403 or 404. Check {self.partition_setting} against what this user may "
                    "read, and that api_url is your account's."
                )
                raise InaccessibleError(msg, 0)
            if self.skipped:
                self.logger.warning(
                    "%s: skipped because not accessible: %s", self.name, ", ".join(self.skipped)
                )
            if self.withheld_deletions:
                msg = (
                    f"{self.name}: {'; '.join(self.withheld_deletions)}, more than "
                    f"max_deletion_share ({self.max_deletion_share:g}) allows, so nothing was "
                    "marked deleted there and those rows stay live. If Cube really removed "
                    "them, run once with max_deletion_share: 1 (TAP_CUBE_MAX_DELETION_SHARE=1)"
                )
                raise DeletionsWithheldError(msg)
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
        if self.skipped:
            msg = (
                f"{self.name}: ACTIVATE_VERSION (emit_activate_version_messages) was not "
                f"sent: {', '.join(self.skipped)} answered 403 or 404, so the target would "
                "mark its rows deleted; grant this user access, or leave it out of "
                f"{self.partition_setting}"
            )
            raise IncompleteError(msg)
        if self.unchecked:
            msg = (
                f"{self.name}: ACTIVATE_VERSION (emit_activate_version_messages) was not "
                f"sent: the pages of {', '.join(self.unchecked)} carry no count, so the read "
                "cannot be checked as complete and the target would mark the rows it missed "
                "deleted; run again later, or leave emit_activate_version_messages off"
            )
            raise IncompleteError(msg)
        super()._write_activate_version_message(self._stream_version)

    def read_partition(self, context: Context | None) -> Iterator[dict[str, t.Any]]:
        """The records of one partition, each exactly once, or an error that says why not.

        A partition that answers 403 or 404 before its first page is skipped with a
        warning when skips_inaccessible allows it. Its state changes only once it was
        read completely: its delivered ids (detect_deletions) and record hashes
        (skip_unchanged), and the note of what they vouch for (tap_cube/records/memory.py).
        """
        started = time.monotonic()
        started_at = datetime.now(UTC)
        # Only streams that keep ids or hashes per partition touch its state here (a
        # call outcomes window is no partition of its own).
        keeps_state = self.tracks_deletions or self.tracks_changes
        state = self.get_context_state(context) if keeps_state else {}
        where = self.describe_partition(context)
        # With detect_deletions off, ids are kept only where a run with it on kept some.
        keeps_ids = self.detects_deletions or deletions.STATE_KEY in state
        if self.detects_deletions and deletions.STATE_KEY not in state:
            self._say_deletions_start_here(state, where)
        reason = self._distrust_reason(state) if keeps_state else None
        if reason is not None:
            self._forget_distrusted(state, where, reason)
        # The stored hashes are held decoded while the partition is read, and their text
        # leaves the state (megabytes at a million records); a complete read puts new ones.
        stored = state.pop(changes.STATE_KEY, None) if self.skips_unchanged else None
        self._changes = self._change_filter(stored) if self.skips_unchanged else None
        self._vouching = bool(stored)
        # Every record goes out unless stored hashes are compared with.
        sends_whole = self._changes is None or not len(self._changes.previous)
        del stored
        checkpoint = Checkpoint(self.checkpoint_interval)
        read: CompleteRead  # the page source writes its checkpoints
        read = CompleteRead(
            partial(
                self._pages,
                context or {},
                between_pages=lambda: self._write_checkpoint(state, read, checkpoint),
            ),
            PartitionList(
                stream_name=self.name,
                where=where,
                logger=self.logger,
                id_field=self.record_id_field,
                paginated=self.paginated,
                progress_interval=self.progress_interval,
            ),
            RecordPath(
                identity=self.record_identity,
                prepare=partial(self.set_aside_owned, context=context),
                fit=self.coerce,
            ),
            self._deletion_rule(state) if keeps_ids else None,
        )
        try:
            yield from read.records()
        except InaccessibleError as exc:
            if read.pages or not self.skips_inaccessible:
                self._end_early(state, read.summary)
                raise
            self.logger.warning("%s; skipping it", exc)
            self.skipped.append(where)
            self._keep_stored_hashes(state)  # not read: the next run compares with them
            return
        except GeneratorExit:
            raise  # closed by the SDK, which failed: nothing more goes out
        except BaseException:
            self._end_early(state, read.summary)
            raise
        finally:
            change_filter, self._changes, self._vouching = self._changes, None, False
        summary = read.summary
        if summary.delivered_ids is not None:
            state[deletions.STATE_KEY] = summary.delivered_ids
        if keeps_state and sends_whole:
            state[memory_age.STATE_KEY] = started_at.isoformat()
        if summary.withheld is not None:
            self.withheld_deletions.append(summary.withheld)
        if summary.unchecked is not None:
            self.unchecked.append(where)
        if change_filter is not None:
            # After a read again, some records sent may since have been deleted; their
            # hashes must not make them look unchanged when they come back, so the
            # next run compares with nothing and sends the partition whole.
            kept = change_filter.finish() if not summary.reread else ()
            state[changes.STATE_KEY] = changes.encode_hashes(kept)
        elif self.tracks_changes:
            # Hashes from before a run without skip_unchanged may vouch for rows it
            # has since marked deleted.
            state.pop(changes.STATE_KEY, None)
        self._note_what_memory_vouches_for(state)
        unchanged = change_filter.unchanged if change_filter is not None else 0
        self.logger.info(
            "%s: %s done: %d records, %d pages, %d retries, %.1f s; "
            "%d emitted, %d unchanged (skipped), %d deleted",
            self.name,
            where,
            summary.delivered,
            summary.pages,
            self.client.retries_of(where),
            time.monotonic() - started,
            summary.delivered - unchanged,
            unchanged,
            summary.deleted,
        )

    def _say_deletions_start_here(self, state: dict[str, t.Any], where: str) -> None:
        """A partition that deletions track, without delivered ids: rows removed from
        Cube before this run are never marked deleted. Right for its first run; a
        WARNING when other partitions of the stream have theirs (a `meltano state
        merge` replaces the list of partitions)."""
        partitions = (self.stream_state or {}).get("partitions") or []
        others = any(p is not state and deletions.STATE_KEY in p for p in partitions)
        log = self.logger.warning if others else self.logger.info
        log(
            "%s: %s: no delivered ids in the state%s, so rows removed from Cube before this "
            "run are not marked deleted. Right for its first run; if its memory was lost "
            "(a new state id, state clear, --full-refresh, a state merge), restore it with "
            "meltano state set, or delete its rows in the target and set resend_before",
            self.name,
            where,
            f" while other partitions of {self.name} have theirs" if others else "",
        )

    def _end_early(self, state: dict[str, t.Any], summary: ReadSummary) -> None:
        """A STATE for a partition whose read ends early (an error, a signal) after it
        sent records: its delivered ids with those it sent (CompleteRead), and its stored
        hashes again while they still vouch for everything sent. The run still fails;
        the target confirms this STATE once it has loaded the records before it."""
        if summary.delivered_ids is None:
            return
        state[deletions.STATE_KEY] = summary.delivered_ids
        self._keep_stored_hashes(state)
        self._note_what_memory_vouches_for(state)
        self.state_manager.is_flushed = False  # the SDK writes a STATE only when unflushed
        try:
            self._write_state_message()
        except Exception:  # the error that ended the read is the one to report
            self.logger.warning("%s: the state could not be written", self.name)

    def _write_checkpoint(
        self, state: dict[str, t.Any], read: CompleteRead, checkpoint: Checkpoint
    ) -> None:
        """Between two pages of a long partition, once its checkpoint is due: a STATE with
        the ids sent so far together with those remembered, and the stored hashes only
        while they still vouch for all that went out (see `_withdraw_hashes`).

        A target hands a STATE back once it has loaded the records before it, so a run
        whose target drains when stopped (or at a batch boundary) leaves Meltano a state
        that covers what the table got: a record it sent that is gone by the next complete
        read is then still marked deleted.
        """
        if not checkpoint.due():
            return
        with checkpoint.timed():
            delivered = read.sent_so_far()
            if delivered is None:
                return
            state[deletions.STATE_KEY] = delivered
            self._keep_stored_hashes(state)
            self.state_manager.is_flushed = False  # the SDK writes a STATE only when unflushed
            try:
                self._write_state_message()
            finally:
                # The read goes on: a STATE written later (a withdrawal) must not hold them.
                state.pop(changes.STATE_KEY, None)

    def _keep_stored_hashes(self, state: dict[str, t.Any]) -> None:
        """Puts the partition's stored hashes back into its state, while they still vouch
        for all that went out of it (see `_withdraw_hashes`)."""
        if self._vouching and self._changes is not None and len(self._changes.previous):
            state[changes.STATE_KEY] = changes.encode_hashes(self._changes.previous)

    # --- what the memory vouches for ---------------------------------------------------

    def _distrust_reason(self, state: dict[str, t.Any]) -> str | None:
        """Why the partition's stored memory is not trusted this run (None: trust it).

        Its stored hashes are then dropped, so the partition is sent whole and its
        hashes rebuilt; its delivered ids are kept unless they name rows of another
        destination (`_names_another_destination`). Not trusted: memory that vouches for
        other records (tap_cube/records/memory.py), and hashes born (last sent whole)
        before resend_before or longer ago than the partition's age limit
        (tap_cube/records/memory_age.py): they may vouch for rows the target lost.
        """
        hashes = state.get(changes.STATE_KEY)
        if hashes is None and deletions.STATE_KEY not in state:
            return None  # nothing remembered
        if hashes is not None and changes.is_outdated(hashes):
            return (
                "its record hashes were kept by an earlier tap-cube, in a format it no longer reads"
            )
        note = state.get(memory.STATE_KEY)
        if note is None:
            return (
                "its memory was kept by an earlier tap-cube, which did not note what it vouches for"
            )
        changed = self.vouches_for.changed_since(memory.Vouching.parse(note))
        if changed:
            reason = memory.reason(changed, self._emitted_streams)
            if deletions.STATE_KEY in state and self._names_another_destination(state):
                reason += (
                    "; the ids it delivered name rows of where its records went before, so "
                    "they are let go and nothing is marked deleted this run"
                )
            return reason
        if hashes is None:
            return None  # delivered ids stay true of the table, whatever their age
        return memory_age.distrust_reason(
            parse_bookmark(state.get(memory_age.STATE_KEY)),
            now=datetime.now(UTC),
            limit=memory_age.age_limit(
                setting(self.config, "max_memory_age_days"), self.name, state.get("context", {})
            ),
            resend_before=parse_bookmark(self.config.get("resend_before")),
        )

    def _names_another_destination(self, state: dict[str, t.Any]) -> bool:
        """Whether the partition's memory is of records sent to other streams (tables)."""
        note = state.get(memory.STATE_KEY)
        earlier = memory.Vouching.parse(note) if note is not None else None
        return earlier is not None and earlier.destination != self.vouches_for.destination

    def _forget_distrusted(self, state: dict[str, t.Any], where: str, reason: str) -> None:
        """Drops the memory `_distrust_reason` does not trust, and says so in one line
        where that changes what is sent or deleted."""
        forgets_hashes = state.pop(changes.STATE_KEY, None) is not None and self.skips_unchanged
        forgets_ids = self._names_another_destination(state) and (
            state.pop(deletions.STATE_KEY, None) is not None
        )
        if forgets_hashes or forgets_ids:
            self.logger.info("%s: %s: sent whole this once: %s", self.name, where, reason)

    def _note_what_memory_vouches_for(self, state: dict[str, t.Any]) -> None:
        """Notes with the partition's ids and hashes what they vouch for (none: no note)."""
        if deletions.STATE_KEY in state or changes.STATE_KEY in state:
            state[memory.STATE_KEY] = self.vouches_for.note()
        else:
            state.pop(memory.STATE_KEY, None)

    @cached_property
    def _emitted_streams(self) -> list[str]:
        """The streams this stream's records go to, as emitted (after stream maps)."""
        return [stream_map.stream_alias for stream_map in self.emitting_maps]

    @cached_property
    def emitting_maps(self) -> list[StreamMap]:
        """The stream maps that make messages of this stream's records."""
        return [m for m in self.stream_maps if not isinstance(m, RemoveRecordTransform)]

    @cached_property
    def vouches_for(self) -> memory.Vouching:
        """What this run's memory of a partition vouches for (tap_cube/records/memory.py):
        its SCHEMA messages as the SDK writes them, and the settings beside them."""
        return memory.Vouching.of(
            destination=self._emitted_streams,
            shape={
                "schemas": [
                    [m.stream_alias, m.transformed_schema, m.transformed_key_properties]
                    for m in self.emitting_maps
                ],
                "settings": {name: self.config.get(name) for name in memory.MAP_SETTINGS},
            },
            timezone=self.zone.key,
            switches={
                "detect_deletions": self.detects_deletions,
                "skip_unchanged": self.skips_unchanged,
            },
        )

    def _pages(
        self,
        context: Context,
        *,
        again: bool = False,
        between_pages: Callable[[], None] | None = None,
    ) -> Iterator[Page]:
        """The partition's pages from the pipeline, noting when each arrived;
        `between_pages` is called once every record of the pages before went out."""
        for page in self.pipeline.pages(context, again=again):
            if between_pages is not None:
                between_pages()
            self._extracted_at = page.arrived_at
            yield page

    def _change_filter(self, stored: str | None) -> changes.ChangeFilter:
        """skip_unchanged's filter, comparing with the hashes of the last complete read
        (checked with the rest of the state before the run: tap_cube/state.py)."""
        return changes.ChangeFilter(changes.decode_hashes(stored) if stored else array("Q"))

    def _deletion_rule(self, state: dict[str, t.Any]) -> DeletionRule | None:
        """detect_deletions, or with it off the delivered ids kept current (completeness.py)."""
        if not self.tracks_deletions:
            return None
        return DeletionRule(
            delivered_before=state.get(deletions.STATE_KEY),
            max_share=self.max_deletion_share,
            id_schema=self.schema["properties"][str(self.record_id_field)],
            marks_deleted=self.detects_deletions,
        )

    def record_identity(self) -> Callable[[dict[str, t.Any]], object]:
        """What identifies a record within its partition (None: the record lacks it).

        The id as its key column will hold it: ids that the target stores in one row
        are one id (5 and "5" in a text column; 5, "5" and 5.0 in an integer column),
        for de-duplication, the delivered ids in state and deletion records alike. An
        id that fits no column is returned as sent; coerce() then stops the run.
        A fresh function for each read of a partition, for identities that depend on the
        records before.
        """
        field = self.record_id_field
        if field is None:
            return lambda record: None
        fit = self._coercion.converters.get(field)
        if fit is None:
            return lambda record: record.get(field)
        # Ids already of their column's type are their own key: the usual case, cheaply.
        kind = {"text": str, "integer": int}.get(self._coercion.kinds[field])

        def identify(record: dict[str, t.Any]) -> object:
            sent = record.get(field)
            if sent is None or type(sent) is kind:
                return sent
            key = fit(sent)
            return sent if key is UNFIT else key

        return identify

    @cached_property
    def _coercion(self) -> RecordCoercion:
        # The schema the SCHEMA message carries: a given catalog's, else the discovered one.
        return RecordCoercion(self.effective_schema.get("properties", {}), self.zone)

    @cached_property
    def zone(self) -> ZoneInfo:
        """Where Cube's local times (without an offset) are: the `timezone` setting."""
        return zone_of(setting(self.config, "timezone"))

    def coerce(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """The record, every value of its declared type or kept in the catch-all column."""
        return self._coercion(record)

    @cached_property
    def owned_fields(self) -> tuple[str, ...]:
        """The fields the tap writes into records itself, whatever the server sends."""
        return (*self.key_schema, CATCH_ALL, DELETED_AT)

    def set_aside_owned(self, record: dict[str, t.Any], context: Context | None) -> None:
        """The server's values of `owned_fields` go to the catch-all: the tap's win."""
        self._coercion.set_aside_owned(record, self.owned_fields, context or {})

    def discovery_declares(self, field: str) -> bool:
        """Whether discovering the schema again would give `field` a column of its own."""
        return False

    def _report_unfit(self, where: str) -> None:
        """One warning per field whose values fit no column in the partition `where`."""
        where = self.name if where == self.name else f"{self.name}: {where}"
        for line in self._coercion.report(self.discovery_declares):
            self.logger.warning("%s: %s", where, line)

    @cached_property
    def detects_deletions(self) -> bool:
        return self.tracks_deletions and bool(self.config.get("detect_deletions"))

    @cached_property
    def max_deletion_share(self) -> float:
        """The share of a partition's rows that one run may mark deleted."""
        return float(setting(self.config, "max_deletion_share"))

    @cached_property
    def skips_unchanged(self) -> bool:
        return self.tracks_changes and bool(self.config.get("skip_unchanged"))

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
        if self._changes is not None and not self._sends(record, emitted):
            return
        for stream, mapped in emitted:
            yield RecordMessage(
                stream=stream,
                record=mapped,
                version=self._stream_version,
                time_extracted=self._extracted_at,
            )

    def _sends(self, record: dict[str, t.Any], emitted: list[tuple[str, dict[str, t.Any]]]) -> bool:
        """Whether skip_unchanged lets `record` (as `emitted`: stream, record per message)
        go out; before the partition's first record that goes out, its hashes are withdrawn."""
        change_filter = self._changes
        if change_filter is None or not emitted:
            return True
        if DELETED_AT not in record and not change_filter.admits(emitted):
            return False
        self._withdraw_hashes()
        return True

    def _withdraw_hashes(self) -> None:
        """Before the partition's first record its stored hashes do not vouch for (a
        change, a new record, a deletion), a STATE without them.

        Should the tap's run stop (an error, a signal to the tap alone) once the target has
        loaded that record, the target hands this STATE back, Meltano keeps it, and the
        next run sends the partition whole: a record that changed back meanwhile is not
        taken for unchanged while the target holds the stopped run's version. When Meltano
        stops tap and target together it keeps no STATE of the run; the memory's age
        limit heals that (docs/meltano.md). One STATE per partition with changes; a
        complete read puts new hashes.
        """
        if not self._vouching:
            return
        self._vouching = False
        self.state_manager.is_flushed = False  # the SDK writes a STATE only when unflushed
        self._write_state_message()

    @override
    def generate_child_contexts(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Iterable[Context | None]:
        # No Cube stream has children; the default still builds a context per record.
        if not self.child_streams:
            return ()
        return super().generate_child_contexts(record, context)
