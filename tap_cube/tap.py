"""tap-cube: the tap, its settings, and its command line."""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
import typing as t
from decimal import Decimal
from functools import partial
from importlib import metadata
from urllib.parse import urlsplit

from singer_sdk import Tap
from singer_sdk import typing as th
from typing_extensions import override

from tap_cube.errors import ConfigError, CubeError, install_scrubber, scrubber
from tap_cube.fetch import RequestGate
from tap_cube.output import BufferedRecordWriter
from tap_cube.schema import custom_properties, merge_properties
from tap_cube.streams import (
    CALLFLOW_PROPERTIES,
    CallflowBase,
    CallflowCustomersStream,
    CallOutcomesStream,
    CampaignsStream,
    CrmCallflowCustomersStream,
    CrmCustomersStream,
    CrmCustomFieldsStream,
    CustomerCustomFieldsStream,
    CustomersBase,
    CustomersStream,
    CustomFieldsBase,
    discover_customer_schema,
    extend_schema,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable

    import click
    from singer_sdk.streams import Stream

    from tap_cube.client import CubeStream


def _version() -> str:
    try:
        return metadata.version("tap-cube")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TapCube(Tap):
    """Singer tap for the Headshed Cube REST API."""

    name = "tap-cube"
    message_writer_class = BufferedRecordWriter

    config_jsonschema = th.PropertiesList(
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
                '[{"data_owner_id": 3, "crm_type": "B2C"}]. Set this, assignment_ids, or both.'
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
                "First day of call outcomes to read on the first run (YYYY-MM-DD); the "
                "call_outcomes stream is offered when it is set."
            ),
        ),
        th.Property(
            "campaign_ids",
            th.ArrayType(th.IntegerType),
            title="Campaign IDs",
            description=(
                "Campaigns whose call outcomes to read; default: every campaign of the "
                "configured assignments and data owners."
            ),
        ),
        th.Property(
            "call_outcomes_window_days",
            th.IntegerType,
            default=30,
            title="Call-outcome window",
            description="Days of call outcomes asked for in one request series.",
        ),
        th.Property(
            "call_outcomes_lookback_days",
            th.IntegerType,
            default=1,
            title="Call-outcome lookback",
            description="Days before the bookmark that every run reads again, for late edits.",
        ),
        th.Property(
            "request_timeout",
            th.NumberType,
            default=60,
            title="Request timeout",
            description="Seconds to wait for the server to answer one request.",
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
            th.IntegerType,
            default=8,
            title="Maximum retries",
            description=(
                "Retries of one request after a 429, a 5xx, a network error or a truncated "
                "page, before the run fails."
            ),
        ),
        th.Property(
            "max_retry_wait",
            th.NumberType,
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
            th.IntegerType,
            default=4,
            title="Maximum concurrent requests",
            description=(
                "Pages fetched in parallel, within and across assignments; 1 reads strictly "
                "one page after another."
            ),
        ),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.gate = RequestGate()
        super().__init__(*args, **kwargs)
        install_scrubber()

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        errors = super()._validate_config(raise_errors=False)
        errors += self._check_settings(self.config)
        if errors and raise_errors:
            msg = "invalid configuration: " + "; ".join(errors)
            raise ConfigError(msg)
        return errors

    @staticmethod
    def _check_settings(config: t.Mapping[str, t.Any]) -> list[str]:
        """The rules a JSON schema cannot say; each message says what to change."""
        scrubber.add(*(str(config[key]) for key in ("auth_token", "password") if config.get(key)))
        errors: list[str] = []
        api_url = config.get("api_url")
        if isinstance(api_url, str):
            parts = urlsplit(api_url)
            if parts.username or parts.password:
                errors.append("api_url must not contain a user name or password")
            if not parts.hostname:
                errors.append(
                    f"api_url {api_url!r} has no host; use https://<account>.headshed.com/api/v1"
                )
            elif parts.scheme != "https" and not (
                parts.scheme == "http" and is_loopback(parts.hostname)
            ):
                errors.append(
                    f"api_url must use https:// (http:// is only allowed for a loopback "
                    f"host), not {parts.scheme}://{parts.hostname}"
                )
            if parts.query or parts.fragment:
                errors.append("api_url must not carry a query or fragment")
        token = config.get("auth_token")
        username, password = config.get("username"), config.get("password")
        if token and (username or password):
            errors.append("set either auth_token or username and password, not both")
        elif not token:
            if username and not password:
                errors.append("password is missing: HTTP Basic needs username and password")
            elif password and not username:
                errors.append("username is missing: HTTP Basic needs username and password")
            elif not username:
                errors.append("no credentials: set auth_token, or username and password")
        ids = config.get("assignment_ids")
        crms = config.get("crms")
        if not ids and not crms:
            errors.append(
                "nothing to extract: list assignment ids in assignment_ids, data owners in "
                "crms, or both"
            )
        if isinstance(ids, list) and ids:
            if any(not isinstance(i, int) or i <= 0 for i in ids):
                errors.append("assignment_ids must be positive integers")
            elif len(set(ids)) != len(ids):
                errors.append("assignment_ids lists an assignment more than once")
        if isinstance(crms, list) and crms:
            pairs = [
                (c.get("data_owner_id"), c.get("crm_type")) for c in crms if isinstance(c, dict)
            ]
            if len(set(pairs)) != len(pairs):
                errors.append("crms lists a data owner and CRM type more than once")
        for key, minimum in (
            ("max_concurrent_requests", 1),
            ("max_retries", 0),
            ("call_outcomes_window_days", 1),
            ("call_outcomes_lookback_days", 0),
        ):
            value = config.get(key)
            if isinstance(value, int) and value < minimum:
                errors.append(f"{key} must be at least {minimum}")
        # JSON config numbers arrive as Decimal; other types are the schema's to report.
        timeout, wait = config.get("request_timeout"), config.get("max_retry_wait")
        if isinstance(timeout, int | float | Decimal) and timeout <= 0:
            errors.append("request_timeout must be greater than 0")
        if isinstance(wait, int | float | Decimal) and wait < 0:
            errors.append("max_retry_wait must not be negative")
        bundle = config.get("ca_bundle")
        if bundle and not os.path.isfile(bundle):
            errors.append(f"ca_bundle {bundle!r} is not a readable file")
        return errors

    @override
    def discover_streams(self) -> list[Stream]:
        """The streams the configuration has partitions for, with discovered schemas."""
        streams: list[CubeStream] = []
        custom_fields: dict[str, t.Any] = {}
        families: list[tuple[type[CustomersBase], type[CustomFieldsBase], type[CallflowBase]]] = []
        if self.config.get("assignment_ids"):
            families.append((CustomersStream, CustomerCustomFieldsStream, CallflowCustomersStream))
        if self.config.get("crms"):
            families.append((CrmCustomersStream, CrmCustomFieldsStream, CrmCallflowCustomersStream))
        for customers_class, fields_class, callflow_class in families:
            fields = fields_class(self, gate=self.gate)
            base = customers_class.base_schema()
            customers = customers_class(self, base, gate=self.gate)
            schema = self._schema(
                customers.name, base, partial(discover_customer_schema, customers, fields)
            )
            callflow = callflow_class(self, base, gate=self.gate)
            callflow_schema = self._schema(
                callflow.name, base, partial(extend_schema, schema, callflow, CALLFLOW_PROPERTIES)
            )
            for stream in (fields, customers, callflow):
                stream.close()
            streams += [
                customers_class(self, schema, gate=self.gate),
                fields,
                callflow_class(self, callflow_schema, gate=self.gate),
            ]
            custom_fields = merge_properties(custom_fields, custom_properties(schema))
        campaigns = CampaignsStream(self, gate=self.gate)
        streams.append(campaigns)
        if self.config.get("start_date"):
            outcomes_schema = CallOutcomesStream.base_schema()
            outcomes_schema["properties"].update(custom_fields)
            outcomes_schema = self._schema(
                CallOutcomesStream.name, outcomes_schema, partial(dict, outcomes_schema)
            )
            streams.append(
                CallOutcomesStream(self, outcomes_schema, gate=self.gate, campaigns=campaigns)
            )
        return list(streams)

    @classmethod
    @override
    def cb_discover(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        """`--discover`, closing the files click opened for the other options.

        Discovery runs in this callback, while click is still parsing the command line,
        and click closes the files it opened for options (`--state`, which Meltano passes
        to discovery too) only once parsing is done. Left to the garbage collector, they
        made Python print ResourceWarnings after the error line of a failed discovery.
        """
        if not value:
            return
        try:
            super().cb_discover(ctx, param, value)
        finally:
            ctx.close()

    def _schema(
        self, stream_name: str, base: dict[str, t.Any], discover: Callable[[], dict[str, t.Any]]
    ) -> dict[str, t.Any]:
        """A stream's schema: from the given catalog if there is one, else discovered.

        With a catalog no request is made; a stream the catalog leaves out is not
        selected, so its base schema will do.
        """
        catalog = self.input_catalog
        if catalog is None:
            return discover()
        entry = catalog.get_stream(stream_name)
        return entry.schema.to_dict() if entry is not None else base


def main() -> None:
    """The `tap-cube` command: the SDK's CLI, with errors as one line instead of a traceback."""
    try:
        TapCube.cli.main(prog_name="tap-cube")
    except CubeError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        print("tap-cube: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    except Exception as exc:
        _fail(f"unexpected {type(exc).__name__}: {exc}", unexpected=True)


def _fail(message: str, *, unexpected: bool = False) -> t.NoReturn:
    logger = logging.getLogger("tap-cube")
    if logger.isEnabledFor(logging.DEBUG) or logging.getLogger().isEnabledFor(logging.DEBUG):
        logger.debug("Traceback of the error below", exc_info=True)
    hint = " (set TAP_CUBE_LOGLEVEL=DEBUG for a traceback)" if unexpected else ""
    sys.stderr.flush()
    print(f"tap-cube: error: {scrubber.scrub(message)}{hint}", file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
