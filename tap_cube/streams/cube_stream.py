"""`CubeStream`: a Cube list endpoint as a Singer stream; the SDK's glue around its reads.

The stream says where each partition's list is and what its records are. Its page
requests (tap_cube/api/page_requests.py) and client (tap_cube/api/client.py) get the
pages, the page pipeline (tap_cube/api/fetch.py) fetches them ahead, paging
(tap_cube/api/paging.py) says which page comes next; the three are made together in
tap_cube/api/stream_requests.py. A partition's read (tap_cube/records/partition_read.py)
turns the pages into each record exactly once, fitted as tap_cube/records/record_fit.py
says, with the STATEs due on the way. Calls go one way: the stream hands each of them
plain values and functions, writes the messages they ask for, and keeps no fact of a
partition being read.
"""

from __future__ import annotations

import typing as t
from functools import cached_property, partial

from singer_sdk import RESTStream
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import RemoveRecordTransform, StreamMap
from typing_extensions import override

from tap_cube.api.client import CubeClient
from tap_cube.api.page_requests import ListAddress
from tap_cube.api.stream_requests import StreamRequests
from tap_cube.progress import PROGRESS_INTERVAL
from tap_cube.records.completeness import CHECKPOINT_INTERVAL
from tap_cube.records.record_fit import RecordFit
from tap_cube.records.record_messages import MapStep, map_steps, record_messages
from tap_cube.records.stream_reads import StreamReads
from tap_cube.settings import Settings
from tap_cube.streams.catalog import reconcile_selected
from tap_cube.streams.schema import declare_carried
from tap_cube.streams.stream_facts import StreamFacts

if t.TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator

    from singer_sdk.authenticators import APIKeyAuthenticator, BasicAuthenticator
    from singer_sdk.helpers.types import Context
    from singer_sdk.singerlib import Catalog, RecordMessage
    from singer_sdk.tap_base import Tap

    from tap_cube.api.fetch import RequestGate
    from tap_cube.streams.directory import Directory
    from tap_cube.streams.specs import StreamSpec


class CubeStream(RESTStream[t.Any]):
    """A Cube list endpoint, read through the page pipeline.

    What it reads, and how, is its spec (a row of tap_cube/streams/specs.py): its name
    and path, its partitions, its key, its columns. Records are de-duplicated per
    partition on its `record_id`, and its `record_fit` fits every value to its declared
    type or keeps it in the catch-all column (tap_cube/records/record_fit.py).
    """

    #: Seconds between two progress lines of a long partition (tap_cube/progress.py).
    progress_interval: float = PROGRESS_INTERVAL
    #: Seconds at least between two STATEs written while one partition is read
    #: (tap_cube/records/partition_read.py); more when writing one takes long.
    checkpoint_interval: float = CHECKPOINT_INTERVAL
    #: Why a run never sends this stream's whole table, if it never does: then
    #: ACTIVATE_VERSION, which tells the target a version holds it all, is refused.
    partial_send: str | None = None
    # record_fit makes every record match the schema, cheaper than the SDK's generic
    # conformance, which walks the schema for every field of every record.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(
        self,
        tap: Tap,
        spec: StreamSpec,
        schema: dict[str, t.Any] | None = None,
        *,
        gate: RequestGate,
        directory: Directory | None = None,
    ) -> None:
        """`schema`: as discovery found it; none: the spec's, before discovery.
        `directory`: the run's campaigns and data owners, for the streams whose
        partitions they are; none in the stream that reads them for it."""
        self.spec = spec
        #: The spec read with the run's settings (tap_cube/streams/stream_facts.py).
        self.facts = StreamFacts(spec, Settings(tap.config), directory)
        super().__init__(
            tap=tap,
            name=spec.name,
            schema=schema if schema is not None else spec.base_schema(),
            path=spec.path,
        )
        client = CubeClient(
            self.config,
            self.requests_session,
            gate,
            stream_name=self.name,
            logger=self.logger,
            paginated=spec.paginated,
            optional=spec.optional,
            partition_setting=self.facts.partition_setting,
        )
        #: Its client, page requests and page pipeline (tap_cube/api/stream_requests.py).
        self.requests = StreamRequests(
            client,
            gate,
            self.list_address,
            concurrency=self.facts.settings.max_concurrent_requests,
            headers=self.http_headers,
            user_agent=self.user_agent,
            plan=self.planned_partitions,
        )
        self.primary_keys = self.facts.record_key
        declare_carried(self.schema["properties"], self.facts.carried_properties)
        if self.facts.state_at_stream_end:
            self.STATE_MSG_FREQUENCY = 1 << 62  # no STATE after so many records

    @property
    def record_key(self) -> list[str]:
        """The key a target must keep rows on (StreamFacts.record_key)."""
        return self.facts.record_key

    @override
    def apply_catalog(self, catalog: Catalog) -> None:
        """The given catalog's entry, reconciled first with what records carry (catalog.py)."""
        facts = self.facts
        reconcile_selected(catalog, self.name, facts.carried_properties, facts.deletion_fields)
        super().apply_catalog(catalog)

    # --- what to request ----------------------------------------------------------

    @property
    @override
    def url_base(self) -> str:
        return self.requests.client.url_base

    @property
    @override
    def authenticator(self) -> APIKeyAuthenticator | BasicAuthenticator:
        return self.requests.client.authenticator

    @property
    @override
    def http_headers(self) -> dict[str, str]:
        return {"Accept": "application/json"}

    def list_address(self, context: Context | None) -> ListAddress:
        """Where a partition's list is: how messages name it, its URL, its first page's
        query parameters."""
        return ListAddress(
            self.describe_partition(context), self.get_url(context), self.first_page_params(context)
        )

    def first_page_params(self, context: Context | None) -> dict[str, t.Any]:
        """The spec's query parameters whose settings are set."""
        return self.facts.first_page_params()

    # --- partitions ---------------------------------------------------------------

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]] | None:
        contexts = self.facts.partition_contexts()
        return super().partitions if contexts is None else contexts

    def describe_partition(self, context: Context | None) -> str:
        """How messages name a partition: "assignment 7", "data owner 3 (B2C)"."""
        return self.spec.name_partition(context)

    def planned_partitions(self) -> list[dict[str, t.Any]]:
        """The partitions whose pages may be fetched ahead, in the order they are read;
        asked once, when the stream starts to read."""
        self.facts.warn_vanished(self.tap_state)
        return list(self.partitions or [{}])

    def close(self) -> None:
        """End outstanding work; no worker thread outlives this call."""
        self.requests.close()

    # --- records --------------------------------------------------------------------

    @override
    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> Generator[dict[str, t.Any], t.Any, t.Any]:
        """The SDK's; a sync that fails (an error, or a signal wherever in the SDK's work
        it landed) writes on its way out the STATE its reads leave, which names every
        record that may have gone out (StreamReads.end_run)."""
        try:
            yield from super()._sync_records(context, write_messages=write_messages)
        except BaseException:
            reads: StreamReads | None = self.__dict__.get("reads")  # made as a read begins
            if reads is not None:
                reads.end_run(write_state=write_messages)
            raise

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        where = self.describe_partition(context)
        partitions = self.partitions
        last = not partitions or partitions[-1] == context
        try:
            yield from self.read_partition(context)
        except BaseException:
            self.close()  # a failed or abandoned run leaves no worker behind
            raise
        finally:
            self.record_fit.report_unfit(self.name, where, self.logger)
        if last:
            self.close()
            version = self._stream_version
            self.reads.finish(len(partitions or [{}]), activates_version=version is not None)
            if version is not None:  # every partition was read whole
                super()._write_activate_version_message(version)

    @override
    def _write_activate_version_message(self, full_table_version: int) -> None:
        """Held back: the SDK writes it as a sync begins, before any record of the version,
        and a target then marks every row deleted until it is sent again; a run that
        fails on the way left them so. `get_records` writes it after the last partition,
        when every partition was read whole (tap_cube/records/stream_reads.py)."""

    def read_partition(self, context: Context | None) -> Iterator[dict[str, t.Any]]:
        """The read of one partition (tap_cube/records/stream_reads.py): its records, each
        exactly once, or an error that says why not. Everything the stream gives the read
        is made here first, so that the read never calls back into the stream."""
        reads = self.reads
        where = self.describe_partition(context)
        state = self.get_context_state(context) if reads.keeps_state else {}
        path = self.record_fit.path(context)
        pages = partial(self.requests.pipeline.started().pages, context or {})
        siblings = (self.stream_state or {}).get("partitions") or []
        return reads.partition_records(
            where, state, pages, path, siblings=siblings, progress_interval=self.progress_interval
        )

    @cached_property
    def reads(self) -> StreamReads:
        """What every partition's read is held to (made as the first starts, once the
        stream maps are known), and what they came to."""
        policy = self.facts.read_policy(
            self.emitting_maps,
            id_schema=lambda: self.schema["properties"][str(self.spec.record_id)],
            checkpoint_interval=self.checkpoint_interval,
        )
        return StreamReads(
            policy,
            write_state=self._write_state_now,
            logger=self.logger,
            client=self.requests.client,
            limit=self.requests.gate.limit,
        )

    def _write_state_now(self) -> None:
        """A STATE now, where a partition's read asks for one."""
        self.state_manager.is_flushed = False  # the SDK writes a STATE only when unflushed
        self._write_state_message()

    @cached_property
    def emitting_maps(self) -> list[StreamMap]:
        """The stream maps that make messages of this stream's records."""
        return [m for m in self.stream_maps if not isinstance(m, RemoveRecordTransform)]

    # --- what becomes of a record -----------------------------------------------------

    @cached_property
    def record_fit(self) -> RecordFit:
        """How its records are prepared, keyed and fitted (tap_cube/records/record_fit.py),
        to the schema the SCHEMA message carries: a given catalog's, else the discovered one."""
        return RecordFit.of(
            self.effective_schema.get("properties", {}),
            self.facts.zone,
            record_id=self.spec.record_id,
            partition_keys=self.spec.partitions.key_schema,
            discovery_declares=self.spec.schema_source.declares,
        )

    # --- messages -------------------------------------------------------------------

    @cached_property
    def _map_steps(self) -> list[MapStep]:
        return map_steps(self.stream_maps)

    @cached_property
    def _every_property_selected(self) -> bool:
        return all(self.mask[("properties", name)] for name in self.schema.get("properties", {}))

    @override
    def _generate_record_messages(
        self, record: dict[str, t.Any]
    ) -> Generator[RecordMessage, None, None]:
        """The SDK's record messages, without its per-field selection walk when it is moot,
        and none for a record skip_unchanged finds unchanged (records/record_messages.py)."""
        sdk_messages = None if self._every_property_selected else super()._generate_record_messages
        yield from record_messages(
            record,
            self._map_steps,
            self._stream_version,
            self._write_state_now,
            sdk_messages=sdk_messages,
        )

    @override
    def generate_child_contexts(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Iterable[Context | None]:
        # No Cube stream has children; the default still builds a context per record.
        if not self.child_streams:
            return ()
        return super().generate_child_contexts(record, context)
