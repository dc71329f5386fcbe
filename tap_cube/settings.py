"""The settings of tap-cube: their JSON schema, as `--about` and Meltano show it."""

from __future__ import annotations

import typing as t
from importlib import metadata
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from singer_sdk import typing as th

if t.TYPE_CHECKING:
    from collections.abc import Mapping


def _version() -> str:
    try:
        return metadata.version("tap-cube")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


#: The most pages fetched at once: more only invites throttling (and 429s pause all).
MAX_CONCURRENCY = 32
#: The most days a window, a lookback or a memory age may span (100 years): beyond it date
#: arithmetic overflows, and no run needs it.
MAX_DAYS = 36_500
#: The longest a request or a wait before a retry may take (a day).
MAX_SECONDS = 86_400


def zone_of(name: object) -> ZoneInfo:
    """The time zone a `timezone` setting names; ValueError when there is none such."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(name)
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a directory
        raise ValueError(name) from exc


#: The tap's `config_jsonschema`; the rules it cannot say are in `validation`.
SETTINGS: dict[str, t.Any] = th.PropertiesList(
    th.Property(
        "api_url",
        th.StringType,
        required=True,
        title="API URL",
        description=(
            "Base URL of your Cube API, e.g. https://acme.headshed.com/api/v1 (https "
            "required; http only for a loopback host such as a local simulator)."
        ),
    ),
    th.Property(
        "auth_token",
        th.StringType,
        secret=True,
        title="API token",
        description="Sends `Authorization: Token <auth_token>`. Use this or username/password.",
    ),
    th.Property(
        "username",
        th.StringType,
        title="Username",
        description="HTTP Basic username (usually an e-mail address), with password.",
    ),
    th.Property(
        "password",
        th.StringType,
        secret=True,
        title="Password",
        description="HTTP Basic password, with username.",
    ),
    th.Property(
        "assignment_ids",
        th.ArrayType(th.IntegerType),
        title="Assignment IDs",
        description=(
            "The assignments whose customers to extract, e.g. [1, 2]; from the "
            "environment as TAP_CUBE_ASSIGNMENT_IDS='[1, 2]'. Set this, crms, or both."
        ),
    ),
    th.Property(
        "crms",
        th.ArrayType(
            th.ObjectType(
                th.Property("data_owner_id", th.IntegerType, required=True),
                th.Property(
                    "crm_type", th.StringType, required=True, allowed_values=["B2C", "B2B"]
                ),
            )
        ),
        title="CRMs (data-owner era)",
        description=(
            "Data owners and CRM types to extract on current Cube servers, e.g. "
            '[{"data_owner_id": 3, "crm_type": "B2C"}]. Set this, assignment_ids, or '
            "both; or neither, to extract every data owner (see discover_crms)."
        ),
    ),
    th.Property(
        "discover_crms",
        th.BooleanType,
        title="Discover CRMs",
        description=(
            "Extract every data owner and CRM type this user can see, as /campaigns "
            "names them, instead of listing them in crms; inaccessible ones are skipped "
            "with a warning. Default: on when neither assignment_ids nor crms is set."
        ),
    ),
    th.Property(
        "callflow_call_state",
        th.StringType,
        title="Call-flow call state",
        description="Only call-flow rows in this call state (sent as `call_state`).",
    ),
    th.Property(
        "start_date",
        th.DateType,
        title="Start date",
        description=(
            "First day of call outcomes and product registrations to read (YYYY-MM-DD); "
            "no run reads before it. Those streams are offered when it is set."
        ),
    ),
    th.Property(
        "campaign_ids",
        th.ArrayType(th.IntegerType),
        title="Campaign IDs",
        description=(
            "Campaigns whose call outcomes and product registrations to read; default: "
            "every campaign of the configured assignments and data owners."
        ),
    ),
    th.Property(
        "timezone",
        th.StringType,
        # Cube is Norwegian: its local times are Oslo's unless the tenant says otherwise.
        default="Europe/Oslo",
        title="Time zone",
        description=(
            "IANA time zone of the local times Cube sends without an offset (a row's "
            "submitted_when minute, a timestamp without offset), e.g. Europe/Oslo."
        ),
    ),
    th.Property(
        "call_outcomes_window_days",
        th.IntegerType(minimum=1, maximum=MAX_DAYS),
        default=30,
        title="Call-outcome window",
        description=(
            "Days of call outcomes or product registrations asked for in one request series."
        ),
    ),
    th.Property(
        "call_outcomes_lookback_days",
        th.IntegerType(minimum=0, maximum=MAX_DAYS),
        default=1,
        title="Call-outcome lookback",
        description="Days before the bookmark that every run reads again, for late edits.",
    ),
    th.Property(
        "request_timeout",
        th.NumberType(exclusive_minimum=0, maximum=MAX_SECONDS),
        default=60,
        title="Request timeout",
        description=(
            "Seconds one request may take, from sending it to the last byte of its answer."
        ),
    ),
    th.Property(
        "user_agent",
        th.StringType,
        default=f"tap-cube/{_version()}",
        title="User agent",
        description="The User-Agent header sent with every request.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        default=8,
        title="Maximum retries",
        description=(
            "Retries of one request after a 429, a 5xx, a network error or a truncated "
            "page, before the run fails."
        ),
    ),
    th.Property(
        "max_retry_wait",
        th.NumberType(minimum=0, maximum=MAX_SECONDS),
        default=300,
        title="Maximum retry wait",
        description="Seconds; the longest single wait before a retry (caps Retry-After too).",
    ),
    th.Property(
        "skip_inaccessible_assignments",
        th.BooleanType,
        default=False,
        title="Skip inaccessible assignments",
        description=(
            "Skip, with a warning, an assignment that answers 403 or 404 instead of "
            "failing the run."
        ),
    ),
    th.Property(
        "detect_deletions",
        th.BooleanType,
        default=False,
        title="Detect deletions",
        description=(
            "After an assignment or data owner was read completely, emit a record with "
            "_sdc_deleted_at for each customer (or custom field) it served last time "
            "but not now. Needs a target that keeps _sdc_deleted_at (record metadata)."
        ),
    ),
    th.Property(
        "max_deletion_share",
        th.NumberType(minimum=0, maximum=1),
        default=0.5,
        title="Maximum deletion share",
        description=(
            "With detect_deletions: the share (0 to 1) of the rows a partition delivered "
            "before that one run may mark deleted. A partition that would lose more (an "
            "empty answer, say) deletes nothing and the run fails; set 1 to allow it."
        ),
    ),
    th.Property(
        "skip_unchanged",
        th.BooleanType,
        default=False,
        title="Skip unchanged",
        description=(
            "Send a customer, custom field or campaign only when it is new or changed "
            "since the last complete read of its assignment or data owner (the state "
            "keeps a 64-bit hash per record). Only for a target that keeps earlier rows, "
            "such as target-postgres; not for one that writes each run afresh."
        ),
    ),
    th.Property(
        "max_memory_age_days",
        th.NumberType(exclusive_minimum=0, maximum=MAX_DAYS),
        default=7,
        title="Maximum memory age",
        description=(
            "With skip_unchanged: days after which a partition is sent whole again, its "
            "delivered ids kept, so that a row the target lost or holds stale heals; each "
            "partition's own limit is between half this and this, to spread the refreshes."
        ),
    ),
    th.Property(
        "resend_before",
        th.DateTimeType,
        title="Resend before",
        description=(
            "With skip_unchanged: send whole every partition last sent whole before this "
            "time (ISO 8601, e.g. 2026-12-06T05:00:00Z), keeping its delivered ids; after "
            "a TRUNCATE, a restore, a new target schema or a failed load, set it to when "
            "the target lost its rows. Runs that fail carry on until every partition was "
            "sent after it; it may then stay."
        ),
    ),
    th.Property(
        "ca_bundle",
        th.StringType,
        title="CA bundle",
        description=(
            "Path to a PEM file of certificate authorities to trust instead of the "
            "default ones (for a corporate TLS proxy). Verification is never turned off."
        ),
    ),
    th.Property(
        "max_concurrent_requests",
        th.IntegerType(minimum=1, maximum=MAX_CONCURRENCY),
        default=16,
        title="Maximum concurrent requests",
        description=(
            f"The most pages fetched in parallel, within and across assignments (1 to "
            f"{MAX_CONCURRENCY}); 1 reads strictly one page after another."
        ),
    ),
    th.Property(
        "adaptive_concurrency",
        th.BooleanType,
        default=True,
        title="Adaptive concurrency",
        description=(
            "Fetch as many pages at once as the server answers without queueing or "
            "throttling, up to max_concurrent_requests; off: always that many."
        ),
    ),
).to_dict()


class Settings:
    """The one way to read a setting: a typed property per setting of `SETTINGS`, its
    default from there when it is left out or null.

    The SDK fills these defaults into the tap's config, but only for settings left out:
    a null one is there, and means the default too. The checks of `validation`, which
    run before the values are known to have their types, read `given` instead.
    """

    def __init__(self, config: Mapping[str, t.Any]) -> None:
        self._config = config

    def given(self, name: str) -> object:
        """A setting (the SDK's built-in ones too) as given, None when left out or null."""
        return self._config.get(name)

    def _value(self, name: str) -> t.Any:
        """The setting's value, or its default in `SETTINGS` when left out or null."""
        value = self._config.get(name)
        return SETTINGS["properties"][name].get("default") if value is None else value

    def _ids(self, name: str) -> list[int]:
        return [int(i) for i in self._value(name) or []]

    def _text(self, name: str) -> str | None:
        value = self._value(name)
        return None if value is None else str(value)

    @property
    def api_url(self) -> str:
        return str(self._value("api_url"))

    @property
    def auth_token(self) -> str | None:
        return self._text("auth_token")

    @property
    def username(self) -> str | None:
        return self._text("username")

    @property
    def password(self) -> str | None:
        return self._text("password")

    @property
    def assignment_ids(self) -> list[int]:
        return self._ids("assignment_ids")

    @property
    def crms(self) -> list[dict[str, t.Any]]:
        return list(self._value("crms") or [])

    @property
    def discover_crms(self) -> bool | None:
        """None when not set: then on when neither assignment_ids nor crms is set."""
        value = self._value("discover_crms")
        return None if value is None else bool(value)

    @property
    def callflow_call_state(self) -> str | None:
        return self._text("callflow_call_state")

    @property
    def start_date(self) -> str | None:
        return self._text("start_date")

    @property
    def campaign_ids(self) -> list[int]:
        return self._ids("campaign_ids")

    @property
    def timezone(self) -> str:
        return str(self._value("timezone"))

    @property
    def call_outcomes_window_days(self) -> int:
        return int(self._value("call_outcomes_window_days"))

    @property
    def call_outcomes_lookback_days(self) -> int:
        return int(self._value("call_outcomes_lookback_days"))

    @property
    def request_timeout(self) -> float:
        return float(self._value("request_timeout"))

    @property
    def user_agent(self) -> str:
        return str(self._value("user_agent"))

    @property
    def max_retries(self) -> int:
        return int(self._value("max_retries"))

    @property
    def max_retry_wait(self) -> float:
        return float(self._value("max_retry_wait"))

    @property
    def skip_inaccessible_assignments(self) -> bool:
        return bool(self._value("skip_inaccessible_assignments"))

    @property
    def detect_deletions(self) -> bool:
        return bool(self._value("detect_deletions"))

    @property
    def max_deletion_share(self) -> float:
        return float(self._value("max_deletion_share"))

    @property
    def skip_unchanged(self) -> bool:
        return bool(self._value("skip_unchanged"))

    @property
    def max_memory_age_days(self) -> float:
        return float(self._value("max_memory_age_days"))

    @property
    def resend_before(self) -> str | None:
        return self._text("resend_before")

    @property
    def ca_bundle(self) -> str | None:
        return self._text("ca_bundle")

    @property
    def max_concurrent_requests(self) -> int:
        return int(self._value("max_concurrent_requests"))

    @property
    def adaptive_concurrency(self) -> bool:
        return bool(self._value("adaptive_concurrency"))
