"""Stream definitions for tap-cube.

Cube groups customers in two generations of containers: assignments (`assignment_ids`)
and, on current servers, a data owner's B2C or B2B CRM (`crms`, or discovered from
/campaigns). Each stream of customers, custom-field metadata and call-flow status exists
for both; the container mixin says how partitions are configured, keyed and named. Call
outcomes and product registrations (tap_cube/streams/call_outcomes.py) are read per campaign or
per data owner, in day windows.
"""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th
from typing_extensions import override

from tap_cube.errors import InaccessibleError
from tap_cube.records.coercion import CATCH_ALL_PROPERTY
from tap_cube.streams.cube_stream import CubeStream
from tap_cube.streams.schema import CUSTOMER_ID_SCHEMA, FieldTypes, customer_properties

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from singer_sdk.helpers.types import Context
    from singer_sdk.tap_base import Tap

    from tap_cube.api.fetch import RequestGate
    from tap_cube.streams.directory import Directory, Need


# --- containers ---------------------------------------------------------------------


class CatalogStream(CubeStream):
    """A stream the tap offers when the configuration sets what it `needs`.

    Discovery offers it, and a catalog selecting it without them is warned about, from
    this declaration alone (tap_cube/streams/directory.py says when a need is met).
    """

    needs: t.ClassVar[tuple[Need, ...]] = ()


class AssignmentStream(CatalogStream):
    """A list read once per configured assignment."""

    needs: t.ClassVar[tuple[Need, ...]] = ("assignment_ids",)
    partition_label = "assignment"
    partition_setting = "assignment_ids"
    key_schema: t.ClassVar[dict[str, t.Any]] = {"assignment_id": {"type": "integer"}}

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]]:
        return [{"assignment_id": int(i)} for i in self.config.get("assignment_ids") or []]


class CrmStream(CatalogStream):
    """A list read once per data owner and CRM type, configured or discovered.

    A discovered CRM the user may not read (403 or 404) is skipped with a warning: the
    user did not name it, and /campaigns lists CRMs whose data the user cannot see.
    """

    needs: t.ClassVar[tuple[Need, ...]] = ("crms",)
    partition_label = "data owner"
    partition_setting = "crms"
    key_schema: t.ClassVar[dict[str, t.Any]] = {
        "data_owner_id": {"type": "integer"},
        "crm_type": {"type": "string"},
    }

    @override
    def __init__(self, *args: t.Any, directory: Directory, **kwargs: t.Any) -> None:
        # Before the client is made, whose messages name the setting too.
        if directory.discovering:
            self.partition_setting = "crms (found in /campaigns; set crms to choose)"
        super().__init__(*args, directory=directory, **kwargs)

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]]:
        return [dict(crm) for crm in self.directory.crms]

    @override
    def planned_partitions(self) -> list[dict[str, t.Any]]:
        # When the stream starts to read: data owners the state knows, now not found.
        self.directory.warn_vanished(self.tap_state.get("bookmarks") or {})
        return super().planned_partitions()

    @property
    @override
    def skips_inaccessible(self) -> bool:
        return super().skips_inaccessible or self.directory.discovering


class CampaignStream(CatalogStream):
    """A list read once per campaign: campaign_ids, or the campaigns of what is read.

    Campaigns found for discovered CRMs are skipped with a warning when inaccessible,
    like the CRMs themselves.
    """

    partition_label = "campaign"
    partition_setting = "campaign_ids"
    key_schema: t.ClassVar[dict[str, t.Any]] = {"campaign_id": {"type": "integer"}}
    #: Whether the campaigns of assignment_ids are read too, not only those of data owners.
    of_assignments: t.ClassVar[bool] = True

    @override
    def __init__(self, *args: t.Any, directory: Directory, **kwargs: t.Any) -> None:
        # Before the client is made, whose messages name the setting too.
        if directory.finds_campaigns:
            self.partition_setting = "campaign_ids (found in /campaigns; set it to choose)"
        super().__init__(*args, directory=directory, **kwargs)

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]]:
        ids = self.directory.campaign_ids(of_assignments=self.of_assignments)
        return [{"campaign_id": i} for i in ids]

    @property
    @override
    def skips_inaccessible(self) -> bool:
        return super().skips_inaccessible or self.directory.finds_campaigns


# --- customers ----------------------------------------------------------------------


class CustomersBase(CubeStream):
    """Customers of each container: standard fields plus the containers' custom fields."""

    record_id_field: str | None = "crm__customer_id"
    id_schema: t.ClassVar[dict[str, t.Any]] = {"crm__customer_id": CUSTOMER_ID_SCHEMA}
    tracks_deletions = True
    tracks_changes = True
    key_schema: t.ClassVar[dict[str, t.Any]]

    @classmethod
    def base_schema(cls) -> dict[str, t.Any]:
        """The schema before custom fields are known."""
        return {
            "type": "object",
            "properties": customer_properties(cls.key_schema),
            "required": [*cls.key_schema, "crm__customer_id"],
        }

    @override
    def discovery_declares(self, field: str) -> bool:
        # Discovery reads the metadata and the first page: it finds any field they show.
        return True


class CustomersStream(AssignmentStream, CustomersBase):
    """Every customer of every configured assignment."""

    name = "customers"
    path = "/assignments/{assignment_id}/customers/"


class CrmCustomersStream(CrmStream, CustomersBase):
    """Every customer of every configured data owner and CRM type."""

    name = "crm_customers"
    path = "/data_owners/{data_owner_id}/{crm_type}/customers/"


# --- custom-field metadata ----------------------------------------------------------

CUSTOM_FIELD_PROPERTIES = th.PropertiesList(
    th.Property("id", th.IntegerType, required=True),
    th.Property("key", th.StringType, description="The field's label"),
    th.Property("type", th.StringType, description="text, integer, date, boolean, ..."),
    th.Property("data__type", th.StringType, description="type, as some 2021 servers name it"),
    th.Property("max_length", th.IntegerType),
    th.Property("hint", th.StringType),
    th.Property("lookup__id", th.StringType, description="The customer field it describes"),
).to_dict()["properties"]


class CustomFieldsBase(CubeStream):
    """The custom-field metadata of each container: labels for `crm__custom_info__<id>`."""

    record_id_field = "id"
    id_schema: t.ClassVar[dict[str, t.Any]] = {"id": CUSTOM_FIELD_PROPERTIES["id"]}
    tracks_deletions = True
    tracks_changes = True
    paginated = False
    # Some users may not read the metadata; their customers are still extracted.
    optional = True
    key_schema: t.ClassVar[dict[str, t.Any]]

    @override
    def __init__(self, tap: Tap, *, gate: RequestGate, directory: Directory) -> None:
        schema = {
            "type": "object",
            "properties": {**self.key_schema, **CUSTOM_FIELD_PROPERTIES, **CATCH_ALL_PROPERTY},
            "required": [*self.key_schema, "id"],
        }
        super().__init__(tap, schema, gate=gate, directory=directory)

    @override
    def describe_partition(self, context: Context | None) -> str:
        return f"custom-field metadata of {super().describe_partition(context)}"


class CustomerCustomFieldsStream(AssignmentStream, CustomFieldsBase):
    name = "customer_custom_fields"
    path = "/assignments/{assignment_id}/crm_custom_fields/"


class CrmCustomFieldsStream(CrmStream, CustomFieldsBase):
    name = "crm_custom_fields"
    path = "/data_owners/{data_owner_id}/{crm_type}/crm_custom_fields/"


# --- call-flow status -----------------------------------------------------------------

CALLFLOW_PROPERTIES: dict[str, t.Any] = {
    "callflow__callstate__name": {"type": ["string", "null"]},
    "callflow__attempts_status__attempts": {"type": ["integer", "null"]},
    "callflow__last_change__when": {"type": ["string", "null"]},
}


class CallflowBase(CustomersBase):
    """Where each customer stands in the call flow: customer fields plus call-flow fields."""

    @override
    def first_page_params(self, context: Context | None) -> dict[str, t.Any]:
        state = self.config.get("callflow_call_state")
        return {"call_state": state} if state else {}


class CallflowCustomersStream(AssignmentStream, CallflowBase):
    name = "callflow_customers"
    path = "/assignments/{assignment_id}/callflow_customers/"


class CrmCallflowCustomersStream(CrmStream, CallflowBase):
    name = "crm_callflow_customers"
    path = "/data_owners/{data_owner_id}/crm/{crm_type}/callflow_customers/"


# --- campaigns ------------------------------------------------------------------------


class CampaignsStream(CatalogStream):
    """Every campaign the user can see (a plain list, not paged)."""

    name = "campaigns"
    path = "/campaigns"
    record_id_field = "campaign__id"
    paginated = False
    tracks_changes = True
    schema = th.PropertiesList(
        th.Property("campaign__id", th.IntegerType, required=True),
        th.Property("campaign__name", th.StringType),
        th.Property("campaign__crm_type", th.StringType, description="B2C or B2B"),
        th.Property("campaign__type", th.StringType, description="Booking, Sales, ... (2018)"),
        th.Property("campaign__description", th.StringType),
        th.Property("campaign__start_date", th.DateType, description="Deprecated since 2022"),
        th.Property("campaign__end_date", th.DateType, description="Deprecated since 2022"),
        th.Property("campaign__archived_date", th.DateType),
        th.Property("campaign__is_active", th.BooleanType),
        th.Property("assignment__id", th.IntegerType, description="Assignment era"),
        th.Property("assignment__name", th.StringType),
        th.Property("client__id", th.IntegerType),
        th.Property("assignment__description", th.StringType),
        th.Property("client__short_name", th.StringType),
        th.Property("client__full_name", th.StringType),
        th.Property("crm_type__id", th.IntegerType, description="2019 notes"),
        th.Property("crm_type__name", th.StringType, description="2019 notes"),
        th.Property("data_owner__id", th.IntegerType, description="Data-owner era"),
        th.Property("data_owner__name", th.StringType),
        th.Property("service__id", th.IntegerType),
        th.Property("service__name", th.StringType),
    ).to_dict()
    schema["properties"].update(CATCH_ALL_PROPERTY)
    id_schema: t.ClassVar[dict[str, t.Any]] = {"campaign__id": schema["properties"]["campaign__id"]}


# --- discovery ------------------------------------------------------------------------


def first_page_sample(stream: CubeStream, context: Context) -> list[dict[str, t.Any]]:
    """The records of a partition's first page, or none when it may be skipped."""
    try:
        return stream.fetch_page(context, None).records
    except InaccessibleError as exc:
        if not stream.skips_inaccessible:
            raise
        stream.logger.warning("%s; leaving its fields out of the schema", exc)
        return []


def discover_customer_schema(
    customers: CustomersBase, custom_fields: CustomFieldsBase
) -> dict[str, t.Any]:
    """A customers schema from each container's metadata and first page.

    Two requests per container: the custom-field metadata types the fields it lists, and
    the first page of `customers` shows any field the metadata does not list (or all of
    them, when the metadata is forbidden or missing), so no field is dropped.
    """
    schema = customers.base_schema()
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
    base: dict[str, t.Any],
    stream: CubeStream,
    extra_properties: dict[str, t.Any],
    contexts: Iterable[Context] | None = None,
    prefix: str = "",
) -> dict[str, t.Any]:
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
