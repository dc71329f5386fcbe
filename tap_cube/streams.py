"""Stream definitions for tap-cube.

Cube groups customers in two generations of containers: assignments (`assignment_ids`)
and, on current servers, a data owner's B2C or B2B CRM (`crms`, or discovered from
/campaigns). Each stream of customers, custom-field metadata and call-flow status exists
for both; the container mixin says how partitions are configured, keyed and named. Call
outcomes and product registrations are read per campaign or per data owner, in day
windows.
"""

from __future__ import annotations

import json
import typing as t
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from functools import cached_property

from singer_sdk import typing as th
from typing_extensions import override

from tap_cube.coercion import CATCH_ALL_PROPERTY
from tap_cube.cube_stream import CubeStream
from tap_cube.errors import ApiError, ConfigError, InaccessibleError
from tap_cube.schema import CUSTOM_FIELD_PREFIX, FieldTypes, customer_properties

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from singer_sdk.helpers.types import Context
    from singer_sdk.tap_base import Tap

    from tap_cube.fetch import RequestGate

CRM_TYPES = ("B2C", "B2B")


# --- what the run reads ---------------------------------------------------------------


def discovers_crms(config: Mapping[str, t.Any]) -> bool:
    """Whether the data owners to read are found in /campaigns rather than listed in crms.

    discover_crms says so; left out, it is on when nothing else says what to read, so
    that a URL and a token read everything the user may see on a current server.
    """
    setting = config.get("discover_crms")
    if setting is None:
        return not config.get("assignment_ids") and not config.get("crms")
    return bool(setting)


class Directory:
    """The campaigns this user can see, and the data owners' CRMs to read; looked up once."""

    def __init__(self, config: Mapping[str, t.Any], campaigns: CampaignsStream) -> None:
        self._config = config
        self._campaigns = campaigns
        self.discovering = discovers_crms(config)

    @property
    def reads_crms(self) -> bool:
        return self.discovering or bool(self._config.get("crms"))

    @cached_property
    def campaign_rows(self) -> list[dict[str, t.Any]]:
        return self._campaigns.client.fetch_page(None, None).records

    @cached_property
    def crms(self) -> list[dict[str, t.Any]]:
        """{"data_owner_id", "crm_type"} of every CRM to read, configured or discovered."""
        if not self.discovering:
            return [
                {"data_owner_id": int(crm["data_owner_id"]), "crm_type": str(crm["crm_type"])}
                for crm in self._config.get("crms") or []
            ]
        try:
            rows = self.campaign_rows
        except InaccessibleError as exc:
            msg = (
                f"cannot discover data owners: /campaigns answered {exc.status} to this "
                'user; list them in crms instead, e.g. [{"data_owner_id": 3, "crm_type": "B2C"}]'
            )
            raise ConfigError(msg) from None
        logger = self._campaigns.logger
        pairs: set[tuple[int, str]] = set()
        for row in rows:
            owner, crm_type = _owner_id(row), str(row.get("campaign__crm_type")).upper()
            if row.get("data_owner__id") in (None, ""):
                continue  # an assignment-era campaign
            if owner is None or crm_type not in CRM_TYPES:
                logger.warning(
                    "discover_crms: campaign %s names data owner %r with CRM type %r; it is "
                    "left out (list it in crms to read it)",
                    row.get("campaign__id"),
                    row.get("data_owner__id"),
                    row.get("campaign__crm_type"),
                )
                continue
            pairs.add((owner, crm_type))
        if not pairs:
            msg = (
                f"discover_crms: none of the {len(rows)} campaigns this user can see names a "
                "data owner and CRM type; on a server of the assignment era set "
                "assignment_ids, else ask Headshed for access to a data owner"
            )
            raise ConfigError(msg)
        found = [{"data_owner_id": owner, "crm_type": kind} for owner, kind in sorted(pairs)]
        logger.info(
            "discover_crms: /campaigns names %d data-owner CRMs; crms: %s",
            len(found),
            json.dumps(found),
        )
        return found

    def campaign_ids(self, *, of_assignments: bool) -> list[int]:
        """campaign_ids, or every campaign of the configured assignments and of the CRMs."""
        if self._config.get("campaign_ids"):
            return [int(i) for i in self._config["campaign_ids"]]
        assignments = (
            {int(i) for i in self._config.get("assignment_ids") or []} if of_assignments else set()
        )
        crms = {(crm["data_owner_id"], crm["crm_type"]) for crm in self.crms}
        owners = {owner for owner, _ in crms}
        ids: list[int] = []
        for row in self.campaign_rows:
            owner, crm_type = _owner_id(row), row.get("campaign__crm_type")
            ours = (
                (owner, str(crm_type).upper()) in crms if crm_type else owner in owners
            ) or row.get("assignment__id") in assignments
            if ours:
                ids.append(int(row["campaign__id"]))
        return ids


def _owner_id(campaign: dict[str, t.Any]) -> int | None:
    """A campaign row's data owner id, whether sent as a number or as digits."""
    owner = campaign.get("data_owner__id")
    return int(str(owner)) if str(owner).isdigit() else None


class DirectoryOwner(t.Protocol):
    """The tap, as the streams see it: the owner of the run's Directory."""

    directory: Directory


def directory_of(stream: CubeStream) -> Directory:
    return t.cast("DirectoryOwner", stream._tap).directory


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
    """A list read once per data owner and CRM type, configured or discovered.

    A discovered CRM the user may not read (403 or 404) is skipped with a warning: the
    user did not name it, and /campaigns lists CRMs whose data the user cannot see.
    """

    partition_label = "data owner"
    partition_setting = "crms"
    key_schema: t.ClassVar[dict[str, t.Any]] = {
        "data_owner_id": {"type": "integer"},
        "crm_type": {"type": "string"},
    }

    @override
    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        if directory_of(self).discovering:
            self.partition_setting = "crms (found in /campaigns; set crms to choose)"

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]]:
        return [dict(crm) for crm in directory_of(self).crms]

    @property
    @override
    def skips_inaccessible(self) -> bool:
        return super().skips_inaccessible or directory_of(self).discovering


class CampaignStream(CubeStream):
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
    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        if directory_of(self).discovering and not self.config.get("campaign_ids"):
            self.partition_setting = "campaign_ids (found in /campaigns; set it to choose)"

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]]:
        ids = directory_of(self).campaign_ids(of_assignments=self.of_assignments)
        return [{"campaign_id": i} for i in ids]

    @property
    @override
    def skips_inaccessible(self) -> bool:
        found = directory_of(self).discovering and not self.config.get("campaign_ids")
        return super().skips_inaccessible or found


# --- customers ----------------------------------------------------------------------


class CustomersBase(CubeStream):
    """Customers of each container: standard fields plus the containers' custom fields."""

    record_id_field: str | None = "crm__customer_id"
    tracks_deletions = True
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
    tracks_deletions = True
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


# --- campaigns, call outcomes and product registrations --------------------------------


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
CALL_OUTCOME_SUBMITTED_WHEN = "call_outcome__report_as__submitted_when"
CALL_OUTCOME_EXTRA = "call_outcome__extra"
PRODUCT_EXTRA = "product__extra"
SUBMISSION_SEQ = "submission_seq"
CALL_OUTCOME_PROPERTIES: dict[str, t.Any] = {
    "call_outcome__type": {"type": ["string", "null"]},
    "call_outcome__subtype": {"type": ["string", "null"]},
    "call_outcome__comment": {"type": ["string", "null"]},
    "call_outcome__report_as__submitted_by": {"type": ["string", "null"]},
    "call_outcome__report_as__submitted_in_department": {"type": ["string", "null"]},
    CALL_OUTCOME_SUBMITTED_WHEN: {"type": ["string", "null"]},
    CALL_OUTCOME_TIMESTAMP: {"type": "string", "format": "date-time"},
    "call_outcome__additional_input_text": {"type": ["string", "null"]},
    "campaign__name": {"type": ["string", "null"]},
    "campaign__crm_type": {"type": ["string", "null"]},
    "data_owner__name": {"type": ["string", "null"]},
    "segment__name": {"type": ["string", "null"]},
    CALL_OUTCOME_EXTRA: {
        "type": ["object", "null"],
        "additionalProperties": True,
        "description": "The free-form call_outcome__extra__<label> fields, keyed by label",
    },
    SUBMISSION_SEQ: {
        "type": "integer",
        "description": (
            "1 for the first row of this customer submitted in this second, 2 for the "
            "next: part of the key, so that rows sharing both (anonymized customers all "
            'have crm__customer_id "") are all kept'
        ),
    },
}
PRODUCT_PROPERTIES: dict[str, t.Any] = {
    "product__code": {"type": ["string", "null"]},
    "product__title": {"type": ["string", "null"]},
    "product__price": {"type": ["number", "null"]},
    PRODUCT_EXTRA: {
        "type": ["object", "null"],
        "additionalProperties": True,
        "description": "The free-form product__extra__<label> fields, keyed by label",
    },
}


def _api_date(day: date) -> str:
    return day.strftime("%Y%m%d")


class DayWindowStream(CustomersBase):
    """Rows about customers' calls, read incrementally in windows of whole days.

    The API gives call outcomes and product registrations no id. The key is the
    partition, the customer, the second the row was submitted and `submission_seq`
    (which of the rows sharing those it is, in the server's order): stable under edits
    of a row's other fields, so re-reading the lookback window updates rows instead of
    adding them, and rows that share customer and second (several products in one
    sale; anonymized customers, whose id is "") are all kept.
    """

    replication_key = CALL_OUTCOME_TIMESTAMP
    is_sorted = False
    # Rows repeat customers; identity is the key above, not the customer id alone.
    record_id_field = None
    # Incremental: a row missing from a window is not known to be gone.
    tracks_deletions = False
    #: The object columns gathering free-form `<column>__<label>` fields by label.
    extra_columns: t.ClassVar[tuple[str, ...]] = (CALL_OUTCOME_EXTRA,)
    extra_properties: t.ClassVar[dict[str, t.Any]] = {}

    @override
    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.primary_keys = [
            *self.key_schema,
            "crm__customer_id",
            CALL_OUTCOME_TIMESTAMP,
            SUBMISSION_SEQ,
        ]

    @override
    def record_identity(self) -> Callable[[dict[str, t.Any]], object]:
        # Windows are whole days, so rows sharing a customer and a second always arrive
        # in the same window, and are numbered the same way on every run and every read.
        numbered: Counter[tuple[object, object]] = Counter()

        def identify(record: dict[str, t.Any]) -> object:
            customer = record.get("crm__customer_id")
            submitted = record.get(CALL_OUTCOME_TIMESTAMP) or record.get(
                CALL_OUTCOME_SUBMITTED_WHEN
            )
            if customer is None or not submitted:
                return None
            same = (customer, submitted)
            numbered[same] += 1
            record[SUBMISSION_SEQ] = numbered[same]
            return (customer, submitted, numbered[same])

        return identify

    @classmethod
    @override
    def base_schema(cls) -> dict[str, t.Any]:
        schema = super().base_schema()
        schema["properties"].update(CALL_OUTCOME_PROPERTIES)
        schema["properties"].update(cls.extra_properties)
        schema["required"] = [*schema["required"], CALL_OUTCOME_TIMESTAMP, SUBMISSION_SEQ]
        return schema

    @override
    def planned_partitions(self) -> list[dict[str, t.Any]]:
        # Windows are planned as they are read: each depends on the partition's bookmark.
        return []

    @override
    def first_page_params(self, context: Context | None) -> dict[str, t.Any]:
        context = context or {}
        return {"from_date": context["from_date"], "to_date": context["to_date"]}

    @override
    def describe_partition(self, context: Context | None) -> str:
        if context and "from_date" in context:
            partition = {k: v for k, v in context.items() if k not in ("from_date", "to_date")}
            return (
                f"{super().describe_partition(partition)} "
                f"({context['from_date']}-{context['to_date']})"
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
            msg = f"{self.name} needs start_date (the first day to read), e.g. 2024-01-01"
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
        for column in self.extra_columns:
            prefix = column + "__"
            extras = {
                name[len(prefix) :]: record.pop(name)
                for name in [name for name in record if name.startswith(prefix)]
            }
            record[column] = extras or None
        if not record.get(CALL_OUTCOME_TIMESTAMP):
            # The notes' examples carry only the local minute; it still orders and keys.
            when = record.get(CALL_OUTCOME_SUBMITTED_WHEN)
            if not when:
                msg = (
                    f"{self.name}: the server sent a row without {CALL_OUTCOME_TIMESTAMP} "
                    "or its submitted_when; it cannot be keyed. Report it to Headshed."
                )
                raise ApiError(msg)
            record[CALL_OUTCOME_TIMESTAMP] = datetime.fromisoformat(str(when)).isoformat()
        return super().coerce(record)

    @override
    def read_partition(self, context: Context | None) -> Iterator[dict[str, t.Any]]:
        started = datetime.now(UTC).isoformat(timespec="seconds")
        for start, end in self.windows(context):
            window = {**(context or {}), "from_date": _api_date(start), "to_date": _api_date(end)}
            yield from super().read_partition(window)
        state = self.get_context_state(context)
        if not state.get("replication_key_value"):
            # A partition without rows still has been read up to now; without this
            # bookmark every run would read it again from start_date. Records found
            # later replace it with their own latest timestamp.
            state["replication_key"] = CALL_OUTCOME_TIMESTAMP
            state["replication_key_value"] = started


class CallOutcomesStream(CampaignStream, DayWindowStream):
    """What happened on each call, per campaign."""

    name = "call_outcomes"
    path = "/campaigns/{campaign_id}/call_outcomes/"


class CrmCallOutcomesStream(CrmStream, DayWindowStream):
    """What happened on each call, per data owner and CRM type (every campaign of it)."""

    name = "crm_call_outcomes"
    path = "/data_owners/{data_owner_id}/crm/{crm_type}/call_outcomes/"


class ProductRegistrationsBase(DayWindowStream):
    """The products sold: a sale's call outcome, once per product registered."""

    extra_columns = (CALL_OUTCOME_EXTRA, PRODUCT_EXTRA)
    extra_properties = PRODUCT_PROPERTIES


class ProductRegistrationsStream(CampaignStream, ProductRegistrationsBase):
    """Product registrations per campaign; only data owners' campaigns have them."""

    name = "product_registrations"
    path = "/campaigns/{campaign_id}/product_registrations/"
    of_assignments = False


class CrmProductRegistrationsStream(CrmStream, ProductRegistrationsBase):
    """Product registrations per data owner and CRM type."""

    name = "crm_product_registrations"
    path = "/data_owners/{data_owner_id}/crm/{crm_type}/product_registrations/"


# --- discovery ------------------------------------------------------------------------


def first_page_sample(stream: CubeStream, context: Context) -> list[dict[str, t.Any]]:
    """The records of a partition's first page, or none when it may be skipped."""
    try:
        return stream.client.fetch_page(context, None).records
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
            listed = types.add_metadata(custom_fields.client.fetch_page(context, None).records)
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
