"""Stream definitions for tap-cube.

Cube groups customers in two generations of containers: assignments (`assignment_ids`)
and, on current servers, a data owner's B2C or B2B CRM (`crms`). Each stream of
customers, custom-field metadata and call-flow status exists for both; the container
mixin says how partitions are configured, keyed and named.
"""

from __future__ import annotations

import typing as t
from datetime import UTC, date, datetime, timedelta
from functools import cached_property

from singer_sdk import typing as th
from typing_extensions import override

from tap_cube.client import CubeStream
from tap_cube.coercion import CATCH_ALL_PROPERTY
from tap_cube.errors import ConfigError, InaccessibleError
from tap_cube.schema import CUSTOM_FIELD_PREFIX, FieldTypes, customer_properties

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from singer_sdk.helpers.types import Context
    from singer_sdk.tap_base import Tap

    from tap_cube.fetch import RequestGate


# --- containers ---------------------------------------------------------------------


class AssignmentStream(CubeStream):
    """A list read once per configured assignment."""

    partition_label = "assignment"
    partition_setting = "assignment_ids"
    key_schema: t.ClassVar[dict[str, t.Any]] = {"assignment_id": {"type": "integer"}}

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]]:
        return [{"assignment_id": int(i)} for i in self.config.get("assignment_ids") or []]


class CrmStream(CubeStream):
    """A list read once per configured data owner and CRM type."""

    partition_label = "data owner"
    partition_setting = "crms"
    key_schema: t.ClassVar[dict[str, t.Any]] = {
        "data_owner_id": {"type": "integer"},
        "crm_type": {"type": "string"},
    }

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]]:
        return [
            {"data_owner_id": int(crm["data_owner_id"]), "crm_type": str(crm["crm_type"])}
            for crm in self.config.get("crms") or []
        ]


# --- customers ----------------------------------------------------------------------


class CustomersBase(CubeStream):
    """Customers of each container: standard fields plus the containers' custom fields."""

    record_id_field: str | None = "crm__customer_id"
    key_schema: t.ClassVar[dict[str, t.Any]]

    @override
    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.primary_keys = [*self.key_schema, "crm__customer_id"]

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
    th.Property("max_length", th.IntegerType),
    th.Property("hint", th.StringType),
    th.Property("lookup__id", th.StringType, description="The customer field it describes"),
).to_dict()["properties"]


class CustomFieldsBase(CubeStream):
    """The custom-field metadata of each container: labels for `crm__custom_info__<id>`."""

    record_id_field = "id"
    paginated = False
    # Some users may not read the metadata; their customers are still extracted.
    optional = True
    key_schema: t.ClassVar[dict[str, t.Any]]

    @override
    def __init__(self, tap: Tap, *, gate: RequestGate) -> None:
        schema = {
            "type": "object",
            "properties": {**self.key_schema, **CUSTOM_FIELD_PROPERTIES, **CATCH_ALL_PROPERTY},
            "required": [*self.key_schema, "id"],
        }
        super().__init__(tap, schema, gate=gate)
        self.primary_keys = [*self.key_schema, "id"]

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


# --- campaigns and call outcomes --------------------------------------------------------


class CampaignsStream(CubeStream):
    """Every campaign the user can see (a plain list, not paged)."""

    name = "campaigns"
    path = "/campaigns"
    primary_keys = ("campaign__id",)
    record_id_field = "campaign__id"
    paginated = False
    schema = th.PropertiesList(
        th.Property("campaign__id", th.IntegerType, required=True),
        th.Property("campaign__name", th.StringType),
        th.Property("campaign__crm_type", th.StringType, description="B2C or B2B"),
        th.Property("campaign__start_date", th.DateType, description="Deprecated since 2022"),
        th.Property("campaign__end_date", th.DateType, description="Deprecated since 2022"),
        th.Property("campaign__archived_date", th.DateType),
        th.Property("campaign__is_active", th.BooleanType),
        th.Property("assignment__id", th.IntegerType, description="Assignment era"),
        th.Property("assignment__name", th.StringType),
        th.Property("client__id", th.IntegerType),
        th.Property("client__short_name", th.StringType),
        th.Property("data_owner__id", th.IntegerType, description="Data-owner era"),
        th.Property("data_owner__name", th.StringType),
        th.Property("service__id", th.IntegerType),
        th.Property("service__name", th.StringType),
    ).to_dict()
    schema["properties"].update(CATCH_ALL_PROPERTY)


CALL_OUTCOME_TIMESTAMP = "call_outcome__report_as__submitted_when_timestamp"
CALL_OUTCOME_EXTRA = "call_outcome__extra"
_EXTRA_PREFIX = CALL_OUTCOME_EXTRA + "__"
CALL_OUTCOME_PROPERTIES: dict[str, t.Any] = {
    "call_outcome__type": {"type": ["string", "null"]},
    "call_outcome__subtype": {"type": ["string", "null"]},
    "call_outcome__comment": {"type": ["string", "null"]},
    "call_outcome__report_as__submitted_when": {"type": ["string", "null"]},
    CALL_OUTCOME_TIMESTAMP: {"type": "string", "format": "date-time"},
    "campaign__name": {"type": ["string", "null"]},
    "segment__name": {"type": ["string", "null"]},
    CALL_OUTCOME_EXTRA: {
        "type": ["object", "null"],
        "additionalProperties": True,
        "description": "The free-form call_outcome__extra__<label> fields, keyed by label",
    },
}


def _api_date(day: date) -> str:
    return day.strftime("%Y%m%d")


class CallOutcomesStream(CustomersBase):
    """What happened on each call, per campaign, read incrementally in date windows.

    The API gives call outcomes no id. The key is the campaign, the customer and the
    second the outcome was submitted: stable under edits of an outcome's other fields, so
    re-reading the lookback window updates rows instead of adding them.
    """

    name = "call_outcomes"
    path = "/campaigns/{campaign_id}/call_outcomes/"
    partition_label = "campaign"
    partition_setting = "campaign_ids"
    key_schema: t.ClassVar[dict[str, t.Any]] = {"campaign_id": {"type": "integer"}}
    replication_key = CALL_OUTCOME_TIMESTAMP
    is_sorted = False
    # Outcomes repeat customers; identity is the key below, not the customer id alone.
    record_id_field = None

    @override
    def __init__(self, *args: t.Any, campaigns: CampaignsStream, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.primary_keys = ["campaign_id", "crm__customer_id", CALL_OUTCOME_TIMESTAMP]
        self._campaigns = campaigns

    @classmethod
    @override
    def base_schema(cls) -> dict[str, t.Any]:
        schema = super().base_schema()
        schema["properties"].update(CALL_OUTCOME_PROPERTIES)
        schema["required"] = [*schema["required"], CALL_OUTCOME_TIMESTAMP]
        return schema

    @cached_property
    def _campaign_ids(self) -> list[int]:
        """`campaign_ids`, or every campaign of the configured assignments and data owners."""
        if self.config.get("campaign_ids"):
            return [int(i) for i in self.config["campaign_ids"]]
        assignments = {int(i) for i in self.config.get("assignment_ids") or []}
        owners = {int(crm["data_owner_id"]) for crm in self.config.get("crms") or []}
        return [
            int(row["campaign__id"])
            for row in self._campaigns.fetch_page(None, None).records
            if row.get("assignment__id") in assignments or row.get("data_owner__id") in owners
        ]

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]]:
        return [{"campaign_id": i} for i in self._campaign_ids]

    @override
    def planned_partitions(self) -> list[dict[str, t.Any]]:
        # Windows are planned as they are read: each depends on the campaign's bookmark.
        return []

    @override
    def first_page_params(self, context: Context | None) -> dict[str, t.Any]:
        context = context or {}
        return {"from_date": context["from_date"], "to_date": context["to_date"]}

    @override
    def describe_partition(self, context: Context | None) -> str:
        if context and "from_date" in context:
            return (
                f"campaign {context['campaign_id']} ({context['from_date']}-{context['to_date']})"
            )
        return super().describe_partition(context)

    def windows(self, context: Context | None) -> Iterator[tuple[date, date]]:
        """Date windows from the bookmark (less the lookback) or start_date, up to today."""
        bookmark = self.get_context_state(context).get("replication_key_value")
        lookback = timedelta(days=int(self.config.get("call_outcomes_lookback_days", 1)))
        span = timedelta(days=int(self.config.get("call_outcomes_window_days", 30)) - 1)
        if bookmark:
            start = datetime.fromisoformat(str(bookmark)).date() - lookback
        elif self.config.get("start_date"):
            start = datetime.fromisoformat(str(self.config["start_date"])).date()
        else:
            msg = "call_outcomes needs start_date (the first day to read), e.g. 2024-01-01"
            raise ConfigError(msg)
        today = date.today()
        while start <= today:
            end = min(start + span, today)
            yield start, end
            start = end + timedelta(days=1)

    @override
    def discovery_declares(self, field: str) -> bool:
        # Only the custom fields come from discovery (of customers); the rest is fixed.
        return field.startswith(CUSTOM_FIELD_PREFIX)

    @override
    def coerce(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        # Labels are free text that differ per campaign: one object column holds them all.
        extras = {
            name[len(_EXTRA_PREFIX) :]: record.pop(name)
            for name in [name for name in record if name.startswith(_EXTRA_PREFIX)]
        }
        record[CALL_OUTCOME_EXTRA] = extras or None
        return super().coerce(record)

    @override
    def read_partition(self, context: Context | None) -> Iterator[dict[str, t.Any]]:
        started = datetime.now(UTC).isoformat(timespec="seconds")
        for start, end in self.windows(context):
            window = {**(context or {}), "from_date": _api_date(start), "to_date": _api_date(end)}
            yield from super().read_partition(window)
        state = self.get_context_state(context)
        if not state.get("replication_key_value"):
            # A campaign without outcomes still has been read up to now; without this
            # bookmark every run would read it again from start_date. Records found
            # later replace it with their own latest timestamp.
            state["replication_key"] = CALL_OUTCOME_TIMESTAMP
            state["replication_key_value"] = started


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
    base: dict[str, t.Any], stream: CubeStream, extra_properties: dict[str, t.Any]
) -> dict[str, t.Any]:
    """`base` plus `extra_properties`, plus whatever each partition's first page shows."""
    schema = {**base, "properties": {**base["properties"], **extra_properties}}
    types = FieldTypes()
    for context in stream.partitions or []:
        types.add_sample(first_page_sample(stream, context), set(schema["properties"]))
    schema["properties"].update(types.properties())
    return schema
