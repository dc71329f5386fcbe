"""tap-cube: the tap, its settings, and its command line."""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import os
import signal
import ssl
import sys
import threading
import typing as t
import unicodedata
from datetime import date
from decimal import Decimal
from functools import cached_property, partial
from urllib.parse import urlsplit

from singer_sdk import Tap
from typing_extensions import override

from tap_cube.errors import ConfigError, CubeError, Stopped, install_scrubber, scrubber
from tap_cube.fetch import RequestGate
from tap_cube.output import BufferedRecordWriter
from tap_cube.schema import custom_properties, merge_properties
from tap_cube.settings import MAX_CONCURRENCY, SETTINGS
from tap_cube.streams import (
    CALLFLOW_PROPERTIES,
    CallflowBase,
    CallflowCustomersStream,
    CallOutcomesStream,
    CampaignsStream,
    CrmCallflowCustomersStream,
    CrmCallOutcomesStream,
    CrmCustomersStream,
    CrmCustomFieldsStream,
    CrmProductRegistrationsStream,
    CustomerCustomFieldsStream,
    CustomersBase,
    CustomersStream,
    CustomFieldsBase,
    DayWindowStream,
    Directory,
    ProductRegistrationsStream,
    discover_customer_schema,
    discovers_crms,
    extend_schema,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    import click
    from singer_sdk.streams import Stream

    from tap_cube.client import CubeStream


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
    config_jsonschema = SETTINGS

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.gate = RequestGate()
        install_scrubber()  # before the SDK's constructor, which validates and discovers
        super().__init__(*args, **kwargs)

    #: The signals that stop a run: a scheduler's stop, Ctrl-C, a closed terminal.
    STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    @override
    def _setup_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in self.STOP_SIGNALS:
                signal.signal(signum, self._handle_termination)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """End the run as failed: the SDK would write a state and exit 0 on a partial run."""
        for other in self.STOP_SIGNALS:
            # A second signal must not interrupt the clean-up of the first.
            signal.signal(other, signal.SIG_IGN)
        self.gate.cancel()  # wake workers waiting to retry
        t.cast("BufferedRecordWriter", self.message_writer).stop(signum)

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        self._warn_unknown_settings()
        errors = super()._validate_config(raise_errors=False)
        errors += self._check_settings(self.config)
        if errors and raise_errors:
            msg = "invalid configuration: " + "; ".join(errors)
            raise ConfigError(msg)
        return errors

    def _warn_unknown_settings(self) -> None:
        """A misspelt setting would otherwise be ignored without a word."""
        known = list(self.config_jsonschema["properties"])
        for key in self.config:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.logger.warning("unknown setting %r is ignored%s", key, hint)

    def _warn_unoffered_streams(self, offered: list[str]) -> None:
        """Streams a catalog selects that this configuration has no partitions for."""
        catalog = self.input_catalog
        if catalog is None:
            return
        for entry in catalog.streams:
            root = entry.metadata.root
            selected = root.selected if root.selected is not None else root.selected_by_default
            if selected and entry.tap_stream_id not in offered:
                self.logger.warning(
                    "stream %r is selected but this configuration does not offer it (%s); "
                    "it is not extracted",
                    entry.tap_stream_id,
                    _WHY_NOT_OFFERED.get(entry.tap_stream_id, "no setting enables it"),
                )

    @staticmethod
    def _check_settings(config: t.Mapping[str, t.Any]) -> list[str]:
        """The rules a JSON schema cannot say; each message says what to change."""
        token, username, password = (
            config.get("auth_token"),
            config.get("username"),
            config.get("password"),
        )
        if isinstance(token, str) and token:
            scrubber.add(token)
        if isinstance(password, str) and password:
            scrubber.add_basic(str(username or ""), password)
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
        errors += _credential_errors(config)
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
        if not ids and not crms and not discovers_crms(config):
            errors.append(
                "nothing to extract: list assignment ids in assignment_ids, data owners in "
                "crms, or set discover_crms to true"
            )
        if crms and config.get("discover_crms") is True:
            errors.append("set crms or discover_crms, not both")
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
        concurrency = config.get("max_concurrent_requests")
        if isinstance(concurrency, int) and concurrency > MAX_CONCURRENCY:
            errors.append(
                f"max_concurrent_requests must be at most {MAX_CONCURRENCY}; more only "
                "invites throttling"
            )
        # JSON config numbers arrive as Decimal; other types are the schema's to report.
        timeout, wait = config.get("request_timeout"), config.get("max_retry_wait")
        if isinstance(timeout, int | float | Decimal) and timeout <= 0:
            errors.append("request_timeout must be greater than 0")
        if isinstance(wait, int | float | Decimal) and wait < 0:
            errors.append("max_retry_wait must not be negative")
        start_date = config.get("start_date")
        if start_date is not None and not _is_date(start_date):
            errors.append(f"start_date {start_date!r} is not a date; use YYYY-MM-DD")
        bundle = config.get("ca_bundle")
        if bundle and not os.path.isfile(bundle):
            errors.append(f"ca_bundle {bundle!r} is not a readable file")
        elif bundle:
            try:
                ssl.create_default_context(cafile=bundle)
            except (ssl.SSLError, ValueError):
                errors.append(f"ca_bundle {bundle!r} holds no PEM certificate")
        return errors

    @cached_property
    def directory(self) -> Directory:
        """The campaigns and data owners the streams read, looked up once per run."""
        return Directory(self.config, CampaignsStream(self, gate=self.gate))

    @override
    def discover_streams(self) -> list[Stream]:
        """The streams the configuration has partitions for, with discovered schemas."""
        streams: list[CubeStream] = []
        custom_fields: dict[str, t.Any] = {}
        crm_custom_fields: dict[str, t.Any] = {}
        families: list[tuple[type[CustomersBase], type[CustomFieldsBase], type[CallflowBase]]] = []
        if self.config.get("assignment_ids"):
            families.append((CustomersStream, CustomerCustomFieldsStream, CallflowCustomersStream))
        if self.directory.reads_crms:
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
            if customers_class is CrmCustomersStream:
                crm_custom_fields = custom_properties(schema)
        streams.append(CampaignsStream(self, gate=self.gate))
        if self.config.get("start_date"):
            streams.append(self._day_window_stream(CallOutcomesStream, custom_fields))
            if self.directory.reads_crms:
                streams += [
                    self._day_window_stream(stream_class, crm_custom_fields)
                    for stream_class in (
                        ProductRegistrationsStream,
                        CrmCallOutcomesStream,
                        CrmProductRegistrationsStream,
                    )
                ]
        self._warn_unoffered_streams([stream.name for stream in streams])
        return list(streams)

    def _day_window_stream(
        self, stream_class: type[DayWindowStream], custom_fields: dict[str, t.Any]
    ) -> DayWindowStream:
        """A call-outcome or product-registration stream: its rows carry customer fields."""
        base = stream_class.base_schema()
        base["properties"].update(custom_fields)
        name = stream_class(self, base, gate=self.gate).name
        return stream_class(self, self._schema(name, base, partial(dict, base)), gate=self.gate)

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


#: What a stream needs from the configuration to be offered.
_WHY_NOT_OFFERED = {
    "customers": "it needs assignment_ids",
    "customer_custom_fields": "it needs assignment_ids",
    "callflow_customers": "it needs assignment_ids",
    "crm_customers": "it needs crms or discover_crms",
    "crm_custom_fields": "it needs crms or discover_crms",
    "crm_callflow_customers": "it needs crms or discover_crms",
    "call_outcomes": "it needs start_date",
    "product_registrations": "it needs start_date, and crms or discover_crms",
    "crm_call_outcomes": "it needs start_date, and crms or discover_crms",
    "crm_product_registrations": "it needs start_date, and crms or discover_crms",
}


def _credential_errors(config: t.Mapping[str, t.Any]) -> list[str]:
    """Credentials an HTTP header cannot carry as given; never shows their value."""
    errors: list[str] = []
    for key in ("auth_token", "username", "password"):
        value = config.get(key)
        if not isinstance(value, str) or not value:
            continue
        if any(unicodedata.category(char) == "Cc" for char in value) or (
            key == "auth_token" and any(char.isspace() for char in value)
        ):
            errors.append(
                f"{key} contains whitespace or a control character (a stray newline from "
                "a secrets file?); set it without them"
            )
        elif value != value.strip():
            errors.append(f"{key} starts or ends with a space; set it without")
        elif not _is_latin1(value):
            errors.append(
                f"{key} contains characters an HTTP header cannot carry (only latin-1); "
                "check that it was copied whole"
            )
    return errors


def _is_date(value: object) -> bool:
    try:
        date.fromisoformat(str(value))
    except ValueError:
        return False
    return True


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


#: What each input file must hold, for the message when it does not.
_INPUT_SHAPES = {
    "--config": "a JSON object of settings",
    "--state": "a JSON object (the state a target emitted)",
    "--catalog": 'a JSON object with a "streams" list',
}


def check_inputs(argv: list[str], environ: t.Mapping[str, str]) -> None:
    """Check the files and environment the SDK will read, to name what is wrong in them.

    The SDK would fail on them with a bare JSONDecodeError or TypeError.
    """
    for option, path in _input_files(argv):
        if option == "--config" and path == "ENV":
            _check_environment(environ)
            continue
        try:
            with open(path, encoding="utf-8") as file:
                value = json.load(file)
        except OSError:
            continue  # the command line reports a missing file itself
        except UnicodeDecodeError:
            msg = f"{option} {path} is not UTF-8 text; it must hold {_INPUT_SHAPES[option]}"
            raise ConfigError(msg) from None
        except json.JSONDecodeError as exc:
            msg = (
                f"{option} {path} is not valid JSON ({exc.msg} at line {exc.lineno} column "
                f"{exc.colno}); it must hold {_INPUT_SHAPES[option]}"
            )
            raise ConfigError(msg) from None
        shaped = isinstance(value, dict) and (
            option != "--catalog" or isinstance(value.get("streams"), list)
        )
        if not shaped:
            msg = f"{option} {path} must hold {_INPUT_SHAPES[option]}"
            raise ConfigError(msg)


def _input_files(argv: list[str]) -> t.Iterator[tuple[str, str]]:
    for index, arg in enumerate(argv):
        option, equals, value = arg.partition("=")
        if option in _INPUT_SHAPES:
            if equals:
                yield option, value
            elif index + 1 < len(argv):
                yield option, argv[index + 1]


_ARRAY_EXAMPLES = {"crms": """'[{"data_owner_id": 3, "crm_type": "B2C"}]'"""}


def _check_environment(environ: t.Mapping[str, str]) -> None:
    """Array settings from the environment must be JSON arrays, as the SDK parses them."""
    for name, prop in TapCube.config_jsonschema["properties"].items():
        variable = f"TAP_CUBE_{name.upper()}"
        if "array" not in prop.get("type", []) or variable not in environ:
            continue
        try:
            value = json.loads(environ[variable])
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list):
            example = _ARRAY_EXAMPLES.get(name, "'[1, 2]'")
            msg = (
                f"{variable}={environ[variable]!r} is not a JSON array; write it as "
                f"{variable}={example}"
            )
            raise ConfigError(msg)


def main() -> None:
    """The `tap-cube` command: the SDK's CLI, with errors as one line instead of a traceback."""
    try:
        check_inputs(sys.argv[1:], os.environ)
        TapCube.cli.main(prog_name="tap-cube")
    except CubeError as exc:
        _fail(str(exc))
    except Stopped as exc:
        name = signal.Signals(exc.signum).name
        print(
            f"tap-cube: stopped by {name} after {BufferedRecordWriter.records_written} "
            "records; this run is incomplete",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        print("tap-cube: interrupted; this run is incomplete", file=sys.stderr, flush=True)
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
