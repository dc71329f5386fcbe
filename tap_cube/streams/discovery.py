"""Discovery: each offered stream made from its spec, with the schema its source finds.

A spec's schema is its fixed columns (`StreamSpec.properties`) and what its
`SchemaSource` finds besides: nothing (`Static`), the custom fields that a metadata
stream lists and the first page shows (`FromCustomFields`), another stream's schema plus
columns of its own (`Extends`), or the customers' custom fields that rows about calls
carry (`FromWindows`). A source that reads the server does so only without a catalog:
a catalog's schema is taken as given. Each schema is found once per discovery, and one
that builds on another's finds that first (specs.py checks that nothing goes round).
"""

from __future__ import annotations

import typing as t
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from typing_extensions import override

from tap_cube.errors import InaccessibleError
from tap_cube.streams.call_outcomes import DayWindowStream
from tap_cube.streams.cube_stream import CubeStream
from tap_cube.streams.schema import (
    CUSTOM_FIELD_PREFIX,
    FieldTypes,
    custom_properties,
    merge_properties,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from singer_sdk.helpers.types import Context
    from singer_sdk.singerlib import Catalog

    from tap_cube.streams.specs import StreamSpec

Schema = dict[str, t.Any]


@dataclass(frozen=True)
class SchemaSource:
    """How discovery finds the columns of a stream that its spec cannot say in advance."""

    #: The stream class whose records the source samples.
    reader: t.ClassVar[type[CubeStream]] = CubeStream

    def builds_on(self) -> tuple[str, ...]:
        """The streams whose schema or records it needs: offered whenever it is."""
        return ()

    def carries(self) -> tuple[str, ...]:
        """The streams whose custom fields it takes, of those offered."""
        return ()

    def find(self, spec: StreamSpec, discovery: Discovery) -> Schema:
        """The stream's schema."""
        raise NotImplementedError

    def declares(self, field: str) -> bool:
        """Whether discovering the schema again would give `field` a column of its own."""
        return False


@dataclass(frozen=True)
class Static(SchemaSource):
    """The spec's columns are all there is: no request."""

    @override
    def find(self, spec: StreamSpec, discovery: Discovery) -> Schema:
        return spec.base_schema()


@dataclass(frozen=True)
class FromCustomFields(SchemaSource):
    """Customers: their custom fields, typed by the `metadata` stream's rows, and the
    fields the first page of each partition shows that the metadata does not list."""

    metadata: str

    @override
    def builds_on(self) -> tuple[str, ...]:
        return (self.metadata,)

    @override
    def find(self, spec: StreamSpec, discovery: Discovery) -> Schema:
        def discover() -> Schema:
            with discovery.sample(spec) as customers:
                metadata = discovery.stream(self.metadata)
                try:
                    return discover_customer_schema(customers, metadata)
                finally:
                    metadata.close()

        return discovery.given_or_found(spec, spec.base_schema(), discover)

    @override
    def declares(self, field: str) -> bool:
        # The metadata and the first page show any field: discovery would find it.
        return True


@dataclass(frozen=True)
class Extends(SchemaSource):
    """Another stream's schema plus `properties`, and the fields each partition's first
    page shows besides (call-flow rows are customers plus where each stands)."""

    stream: str
    properties: Mapping[str, dict[str, t.Any]]

    @override
    def builds_on(self) -> tuple[str, ...]:
        return (self.stream,)

    @override
    def find(self, spec: StreamSpec, discovery: Discovery) -> Schema:
        def discover() -> Schema:
            with discovery.sample(spec) as stream:
                return extend_schema(discovery.schema(self.stream), stream, dict(self.properties))

        return discovery.given_or_found(spec, spec.base_schema(), discover)

    @override
    def declares(self, field: str) -> bool:
        return True


@dataclass(frozen=True)
class FromWindows(SchemaSource):
    """Rows about customers' calls carry customer fields: those the customers of
    `custom_fields_of` have (the offered ones), and those the rows of each partition's
    latest day window show."""

    reader = DayWindowStream
    custom_fields_of: tuple[str, ...]

    @override
    def carries(self) -> tuple[str, ...]:
        return self.custom_fields_of

    @override
    def find(self, spec: StreamSpec, discovery: Discovery) -> Schema:
        base = spec.base_schema()
        carried: dict[str, t.Any] = {}
        for name in self.custom_fields_of:
            if discovery.offers(name):
                carried = merge_properties(carried, custom_properties(discovery.schema(name)))
        base["properties"].update(carried)

        def discover() -> Schema:
            with discovery.sample(spec, base) as stream:
                return discover_window_schema(t.cast("DayWindowStream", stream), base)

        return discovery.given_or_found(spec, base, discover)

    @override
    def declares(self, field: str) -> bool:
        # Only the custom fields come from discovery (of customers); the rest is fixed.
        return field.startswith(CUSTOM_FIELD_PREFIX)


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
            self._schemas[name] = spec.schema_source.find(spec, self)
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
        return stream.fetch_page(context, None).records
    except InaccessibleError as exc:
        if not stream.skips_inaccessible:
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
            listed = types.add_metadata(custom_fields.fetch_page(context, None).records)
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
