"""Discovery: each offered stream made from its spec, with the schema its source finds.

A stream is of the class its spec's `Reader` names (`reader_class`). A spec's schema is
its fixed columns (`StreamSpec.properties`) and what its `SchemaSource` (specs.py) finds
besides: nothing (`Static`), the custom fields that a metadata
stream lists and the first page shows (`FromCustomFields`), another stream's schema plus
columns of its own (`Extends`), or the customers' custom fields that rows about calls
carry (`FromWindows`). A source that reads the server does so only without a catalog:
a catalog's schema is taken as given. Each schema is found once per discovery, and one
that builds on another's finds that first (specs.py checks that nothing goes round).
"""

from __future__ import annotations

import typing as t
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial

from tap_cube.errors import InaccessibleError
from tap_cube.state import StreamShape, key_types
from tap_cube.streams.call_outcomes import DayWindowStream
from tap_cube.streams.cube_stream import CubeStream
from tap_cube.streams.schema import (
    CUSTOM_FIELD_PREFIX,
    FieldTypes,
    custom_properties,
    merge_properties,
)
from tap_cube.streams.specs import (
    Extends,
    FromCustomFields,
    FromWindows,
    Reader,
    SpecError,
    Static,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from singer_sdk.helpers.types import Context
    from singer_sdk.singerlib import Catalog

    from tap_cube.streams.specs import StreamSpec

Schema = dict[str, t.Any]


def find_schema(spec: StreamSpec, discovery: Discovery) -> Schema:
    """The schema of `spec`, found as its `SchemaSource` says (specs.py)."""
    match spec.schema_source:
        case Static():
            return spec.base_schema()
        case FromCustomFields(metadata=metadata):
            return discovery.given_or_found(
                spec, spec.base_schema(), partial(_from_custom_fields, spec, metadata, discovery)
            )
        case Extends(stream=extended, properties=properties):
            return discovery.given_or_found(
                spec, spec.base_schema(), partial(_extended, spec, extended, properties, discovery)
            )
        case FromWindows(custom_fields_of=custom_fields_of):
            base = spec.base_schema()
            carried: dict[str, t.Any] = {}
            for name in custom_fields_of:
                if discovery.offers(name):
                    carried = merge_properties(carried, custom_properties(discovery.schema(name)))
            base["properties"].update(carried)
            return discovery.given_or_found(spec, base, partial(_windowed, spec, base, discovery))
    msg = f"stream {spec.name!r} cannot be built: its schema source is none that discovery knows"
    raise SpecError(msg)


def _from_custom_fields(spec: StreamSpec, metadata: str, discovery: Discovery) -> Schema:
    with discovery.sample(spec) as customers:
        metadata_stream = discovery.stream(metadata)
        try:
            return discover_customer_schema(customers, metadata_stream)
        finally:
            metadata_stream.close()


def _extended(
    spec: StreamSpec,
    extended: str,
    properties: Mapping[str, dict[str, t.Any]],
    discovery: Discovery,
) -> Schema:
    with discovery.sample(spec) as stream:
        return extend_schema(discovery.schema(extended), stream, dict(properties))


def _windowed(spec: StreamSpec, base: Schema, discovery: Discovery) -> Schema:
    with discovery.sample(spec, base) as stream:
        return discover_window_schema(t.cast("DayWindowStream", stream), base)


def reader_class(reader: Reader) -> type[CubeStream]:
    """The stream class a row's `reader` names."""
    match reader:
        case Reader.LISTS:
            return CubeStream
        case Reader.DAY_WINDOWS:
            return DayWindowStream
    t.assert_never(reader)


def state_shape(spec: StreamSpec) -> StreamShape:
    """What the stream's state may hold (tap_cube/state.py checks a given state)."""
    replication_key = reader_class(spec.reader).replication_key
    return StreamShape(
        name=spec.name,
        partition_keys=key_types(spec.partitions.key_schema),
        bookmark_key=replication_key if isinstance(replication_key, str) else None,
    )


class Discovery:
    """The offered streams of one discovery, each made once its schema is found."""

    def __init__(
        self,
        offered: Sequence[StreamSpec],
        make: Callable[[StreamSpec, Schema], CubeStream],
        catalog: Catalog | None,
    ) -> None:
        """`make`: a stream of a spec with a schema; `catalog`: the given one, if any."""
        self._specs = {spec.name: spec for spec in offered}
        self._make = make
        self._catalog = catalog
        self._schemas: dict[str, Schema] = {}
        self._streams: dict[str, CubeStream] = {}

    def streams(self) -> list[CubeStream]:
        """Every offered stream, in the order of the specs."""
        return [self.stream(name) for name in self._specs]

    def offers(self, name: str) -> bool:
        return name in self._specs

    def stream(self, name: str) -> CubeStream:
        """The offered stream `name`, with its schema."""
        if name not in self._streams:
            self._streams[name] = self._make(self._specs[name], self.schema(name))
        return self._streams[name]

    def schema(self, name: str) -> Schema:
        """The schema of the offered stream `name`, found once."""
        if name not in self._schemas:
            spec = self._specs[name]
            self._schemas[name] = find_schema(spec, self)
        return self._schemas[name]

    @contextmanager
    def sample(self, spec: StreamSpec, base: Schema | None = None) -> Iterator[CubeStream]:
        """A stream of `spec` to read first pages with (schema: `base`, else the spec's
        own), closed after."""
        stream = self._make(spec, base if base is not None else spec.base_schema())
        try:
            yield stream
        finally:
            stream.close()

    def given_or_found(self, spec: StreamSpec, base: Schema, find: Callable[[], Schema]) -> Schema:
        """A stream's schema: from the given catalog if there is one, else found.

        With a catalog no request is made; a stream the catalog leaves out is not
        selected, so its base schema will do.
        """
        if self._catalog is None:
            return find()
        entry = self._catalog.get_stream(spec.name)
        return entry.schema.to_dict() if entry is not None else base


def first_page_sample(stream: CubeStream, context: Context) -> list[dict[str, t.Any]]:
    """The records of a partition's first page, or none when it may be skipped."""
    try:
        return stream.requests.fetch_page(context, None).records
    except InaccessibleError as exc:
        if not stream.facts.skips_inaccessible:
            raise
        stream.logger.warning("%s; leaving its fields out of the schema", exc)
        return []


def discover_customer_schema(customers: CubeStream, custom_fields: CubeStream) -> Schema:
    """A customers schema from each container's metadata and first page.

    Two requests per container: the custom-field metadata types the fields it lists, and
    the first page of `customers` shows any field the metadata does not list (or all of
    them, when the metadata is forbidden or missing), so no field is dropped.
    """
    schema = customers.spec.base_schema()
    known = set(schema["properties"])
    types = FieldTypes()
    for context in customers.partitions or []:
        listed: set[str] = set()
        try:
            listed = types.add_metadata(custom_fields.requests.fetch_page(context, None).records)
        except InaccessibleError as exc:
            customers.logger.warning(
                "%s: custom-field metadata unavailable (%s); typing its fields from its "
                "first page of customers",
                customers.describe_partition(context),
                exc,
            )
        types.add_sample(first_page_sample(customers, context), known | listed)
    schema["properties"].update(types.properties())
    return schema


def extend_schema(
    base: Schema,
    stream: CubeStream,
    extra_properties: dict[str, t.Any],
    contexts: Iterable[Context] | None = None,
    prefix: str = "",
) -> Schema:
    """`base` plus `extra_properties`, plus the fields (named `prefix`...) the first page
    of each context shows: of each partition, unless `contexts` says which pages."""
    schema = {**base, "properties": {**base["properties"], **extra_properties}}
    types = FieldTypes()
    for context in (stream.partitions or []) if contexts is None else contexts:
        sample = [
            {name: value for name, value in record.items() if name.startswith(prefix)}
            for record in first_page_sample(stream, context)
        ]
        types.add_sample(sample, set(schema["properties"]))
    schema["properties"].update(types.properties())
    return schema


def discover_window_schema(stream: DayWindowStream, base: Schema) -> Schema:
    """`base` plus the custom fields the rows of each partition's latest window carry
    that it lacks, typed as customers' are (tap_cube/streams/schema.py)."""
    now = datetime.now(UTC)
    windows = (stream.latest_window(partition, now) for partition in stream.partitions or [])
    contexts = [window for window in windows if window is not None]
    return extend_schema(base, stream, {}, contexts, prefix=CUSTOM_FIELD_PREFIX)
