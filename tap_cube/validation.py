"""What is wrong in the settings and input files, said in words that tell what to change.

The SDK checks settings against their JSON schema only, and fails on a malformed input
file with a bare JSONDecodeError or TypeError; these checks name the setting, the file or
the variable, and the fix.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import json
import os
import re
import ssl
import typing as t
import unicodedata
from datetime import UTC, date, datetime
from decimal import Decimal
from urllib.parse import urlsplit

from singer_sdk.configuration._dict_config import parse_environment_config
from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE
from singer_sdk.typing import DEFAULT_JSONSCHEMA_VALIDATOR

from tap_cube.errors import ConfigError, scrubber
from tap_cube.records.converters import parse_bookmark
from tap_cube.settings import SETTINGS, Settings, zone_of
from tap_cube.streams.directory import describe_needs, discovers_crms

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Iterable

    from singer_sdk.singerlib import Catalog

    from tap_cube.streams.cube_stream import CubeStream
    from tap_cube.streams.directory import Need


def check_settings(config: t.Mapping[str, t.Any]) -> list[str]:
    """The rules the SDK's check against the JSON schema does not say in words that tell
    what to change, or cannot say at all; each message says what to change."""
    settings = Settings(config)
    _register_secrets(settings)
    return [
        *_api_url_errors(settings.given("api_url")),
        *_credential_errors(settings),
        *_auth_errors(settings),
        *_partition_errors(settings, config),
        *_range_errors(settings),
        *_start_date_errors(settings.given("start_date")),
        *_timezone_errors(settings.given("timezone")),
        *_ca_bundle_errors(settings.given("ca_bundle")),
        *_sdk_feature_errors(settings),
        *_resend_before_errors(settings.given("resend_before")),
    ]


def _register_secrets(settings: Settings) -> None:
    """Before any message could show them, even one about the credentials themselves."""
    token, username, password = (
        settings.given("auth_token"),
        settings.given("username"),
        settings.given("password"),
    )
    # A shorter one is refused before any use, and would garble the very message that
    # refuses it; no message shows a credential's value.
    if isinstance(token, str) and len(token) >= MIN_SECRET_LENGTH:
        scrubber.add(token)
    if isinstance(password, str) and len(password) >= MIN_SECRET_LENGTH:
        scrubber.add_basic(str(username or ""), password)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_url_errors(api_url: object) -> list[str]:
    errors: list[str] = []
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
    return errors


#: Shorter secrets would be scrubbed out of ordinary words in every message ("***ssignment").
#: DRF tokens have 40 characters, and Django refuses passwords under 8 by default.
MIN_SECRET_LENGTH = 8


def _credential_errors(settings: Settings) -> list[str]:
    """Credentials an HTTP header cannot carry as given; never shows their value."""
    errors: list[str] = []
    for key in ("auth_token", "username", "password"):
        value = settings.given(key)
        if not isinstance(value, str) or not value:
            continue
        if key != "username" and len(value) < MIN_SECRET_LENGTH:
            errors.append(
                f"{key} is shorter than {MIN_SECRET_LENGTH} characters; set the whole "
                "credential (Cube's tokens have 40)"
            )
        elif any(unicodedata.category(char) == "Cc" for char in value) or (
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


def _auth_errors(settings: Settings) -> list[str]:
    """One way to authenticate, given whole."""
    errors: list[str] = []
    token, username, password = (
        settings.given("auth_token"),
        settings.given("username"),
        settings.given("password"),
    )
    if token and (username or password):
        errors.append("set either auth_token or username and password, not both")
    elif not token:
        if username and not password:
            errors.append("password is missing: HTTP Basic needs username and password")
        elif password and not username:
            errors.append("username is missing: HTTP Basic needs username and password")
        elif not username:
            errors.append("no credentials: set auth_token, or username and password")
    return errors


def _partition_errors(settings: Settings, config: t.Mapping[str, t.Any]) -> list[str]:
    """The assignments and data owners to read: some, and each once."""
    errors: list[str] = []
    ids = settings.given("assignment_ids")
    crms = settings.given("crms")
    if not ids and not crms and not discovers_crms(config):
        errors.append(
            "nothing to extract: list assignment ids in assignment_ids, data owners in "
            "crms, or set discover_crms to true"
        )
    if crms and settings.given("discover_crms") is True:
        errors.append("set crms or discover_crms, not both")
    if isinstance(ids, list) and ids:
        if any(not isinstance(i, int) or i <= 0 for i in ids):
            errors.append("assignment_ids must be positive integers")
        elif len(set(ids)) != len(ids):
            errors.append("assignment_ids lists an assignment more than once")
    if isinstance(crms, list) and crms:
        pairs = [(c.get("data_owner_id"), c.get("crm_type")) for c in crms if isinstance(c, dict)]
        if len(set(pairs)) != len(pairs):
            errors.append("crms lists a data owner and CRM type more than once")
    return errors


def _range_errors(settings: Settings) -> list[str]:
    """Numbers outside the range the schema gives their setting (`minimum`, `maximum`,
    `exclusiveMinimum`); other types are the schema's to report."""
    errors: list[str] = []
    for name, prop in SETTINGS["properties"].items():
        value = settings.given(name)
        if _is_ranged_number(value, prop) and (problem := _out_of_range(name, value, prop)):
            errors.append(f"{name} {problem}")
    return errors


def _is_ranged_number(value: object, prop: t.Mapping[str, t.Any]) -> t.TypeGuard[Number]:
    """`value` (an int, float or Decimal: JSON config numbers arrive as Decimal) is of the
    number type of a setting with a range."""
    if not any(key in prop for key in _RANGE_KEYWORDS) or isinstance(value, bool):
        return False
    whole = "integer" in prop.get("type", [])
    return isinstance(value, int) if whole else isinstance(value, int | float | Decimal)


#: A number as a config holds it: JSON config files give fractions as Decimal.
Number: t.TypeAlias = int | float | Decimal
_RANGE_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum")
#: Why a range ends where it does, said after the range of a value beyond it.
_RANGE_REASONS = {
    "max_concurrent_requests": "; more only invites throttling",
    "max_deletion_share": " (1 allows any deletion)",
}
#: Settings whose range is said whole: a share, between 0 and 1.
_SHARES = ("max_deletion_share",)
#: Settings in seconds, for the messages; those in days end in `_days`.
_IN_SECONDS = ("request_timeout", "max_retry_wait")


def _out_of_range(name: str, value: Number, prop: t.Mapping[str, t.Any]) -> str | None:
    """What to say of `value` of setting `name`, if it is outside its range."""
    low, high, above = prop.get("minimum"), prop.get("maximum"), prop.get("exclusiveMinimum")
    reason = _RANGE_REASONS.get(name, "")
    if name in _SHARES and not prop["minimum"] <= value <= prop["maximum"]:
        return f"must be between {low} and {high}{reason}"
    if above is not None and value <= above:
        return f"must be greater than {above}"
    if low is not None and value < low:
        fraction = "integer" not in prop.get("type", [])
        return "must not be negative" if fraction and low == 0 else f"must be at least {low}"
    if high is not None and value > high:
        return f"must be at most {high}{_unit(name, high)}{reason}"
    return None


def _unit(name: str, high: int) -> str:
    """The unit of a setting's maximum, with the span it makes, for a message."""
    if name.endswith("_days"):
        return f" days ({high // 365} years)"
    if name in _IN_SECONDS:
        days = high // _SECONDS_PER_DAY
        return f" seconds ({'a day' if days == 1 else f'{days} days'})"
    return ""


_SECONDS_PER_DAY = 86_400


def without_range_errors(schema_errors: list[str], config: t.Mapping[str, t.Any]) -> list[str]:
    """The SDK's schema errors, less those of the range keywords: `check_settings` says
    them in its own words. The SDK words an error as the validator does, then names the
    setting (` in config['<setting>']`)."""
    settings = Settings(config)
    said_here: set[str] = set()
    for name, prop in SETTINGS["properties"].items():
        value = settings.given(name)
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            continue
        ranges = {key: prop[key] for key in _RANGE_KEYWORDS if key in prop}
        said_here |= {
            f"{error.message} in config[{name!r}]"
            for error in DEFAULT_JSONSCHEMA_VALIDATOR(ranges).iter_errors(value)
        }
    return [error for error in schema_errors if error not in said_here]


def _sdk_feature_errors(settings: Settings) -> list[str]:
    """SDK features that would act wrongly together with a setting, refused by name
    rather than let them lose rows.

    The stream-level ones (a version of a stream read in day windows, or whose partition
    was skipped) are refused as the streams know them (CubeStream.partial_send).
    """
    errors: list[str] = []
    if settings.given("emit_activate_version_messages") and settings.given("skip_unchanged"):
        errors.append(
            "emit_activate_version_messages cannot be used with skip_unchanged: "
            "ACTIVATE_VERSION tells the target that a run sent the whole table, so it "
            "would mark every unchanged row deleted (and remove it with hard_delete); turn "
            "one of them off (detect_deletions marks removed customers deleted without it)"
        )
    mapped = [key for key in ("stream_maps", "flattening_enabled") if settings.given(key)]
    if settings.given("batch_config") and mapped:
        errors.append(
            f"batch_config cannot be used with {' or '.join(mapped)}: the SDK writes BATCH "
            "files of the records as read, without the maps or flattening; remove "
            "batch_config to have them applied"
        )
    return errors


def _start_date_errors(start_date: object) -> list[str]:
    if start_date is not None and not _is_date(start_date):
        return [f"start_date {start_date!r} is not a date; use YYYY-MM-DD"]
    return []


def _resend_before_errors(value: object) -> list[str]:
    if value is None:
        return []
    when = parse_bookmark(value)
    if when is None:
        return [
            f"resend_before {value!r} is not an ISO 8601 timestamp; use e.g. 2026-12-06T05:00:00Z"
        ]
    if when > datetime.now(UTC):
        return [
            f"resend_before {value} is in the future, so every run would send everything "
            "until then; use the time the target lost its rows"
        ]
    return []


def _timezone_errors(name: object) -> list[str]:
    if name is None:
        return []
    try:
        zone_of(name)
    except ValueError:
        return [
            f"timezone {name!r} is not a known IANA time zone; use a name such as "
            "Europe/Oslo or UTC"
        ]
    return []


def _ca_bundle_errors(bundle: t.Any) -> list[str]:
    if bundle and not os.path.isfile(bundle):
        return [f"ca_bundle {bundle!r} is not a readable file"]
    if bundle:
        try:
            ssl.create_default_context(cafile=bundle)
        except (ssl.SSLError, ValueError):
            return [f"ca_bundle {bundle!r} holds no PEM certificate"]
    return []


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


def warn_unknown_settings(
    config: t.Mapping[str, t.Any], schema: t.Mapping[str, t.Any], logger: logging.Logger
) -> None:
    """A misspelt setting would otherwise be ignored without a word.

    `schema`: every setting the tap reads, the SDK's built-in ones included.
    """
    known = list(schema["properties"])
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            logger.warning("unknown setting %r is ignored%s", key, hint)


def warn_future_start_date(
    config: t.Mapping[str, t.Any], logger: logging.Logger, now: datetime
) -> None:
    """A start_date after Cube's today reads nothing until then: say so, in case it is a
    typo. Cube's today is `now` in the `timezone` setting's zone, as its windows are."""
    settings = Settings(config)
    start_date = settings.given("start_date")
    if not _is_date(start_date):
        return
    try:
        today = now.astimezone(zone_of(settings.timezone)).date()
    except ValueError:  # not a zone: check_settings says so
        return
    if date.fromisoformat(str(start_date)) > today:
        logger.warning(
            "start_date %s is in the future: call outcomes and product registrations are "
            "read from that day on, nothing before",
            start_date,
        )


def warn_unoffered_streams(
    catalog: Catalog | None,
    offered: list[str],
    needs: t.Mapping[str, tuple[Need, ...]],
    logger: logging.Logger,
) -> None:
    """Streams a catalog selects that this configuration does not offer, with what each
    `needs` (by stream name) that the configuration does not set."""
    if catalog is None:
        return
    for entry in catalog.streams:
        root = entry.metadata.root
        selected = root.selected if root.selected is not None else root.selected_by_default
        if selected and entry.tap_stream_id not in offered:
            wanted = needs.get(entry.tap_stream_id)
            logger.warning(
                "stream %r is selected but this configuration does not offer it (%s); "
                "it is not extracted",
                entry.tap_stream_id,
                f"it needs {describe_needs(wanted)}" if wanted else "no setting enables it",
            )


def refuse_partial_versions(streams: Iterable[CubeStream]) -> None:
    """ACTIVATE_VERSION tells the target that a version holds the whole table: refused
    for a stream whose run never sends it whole."""
    for stream in streams:
        if stream.partial_send and _activates_version(stream):
            msg = (
                f"emit_activate_version_messages cannot be honoured for stream "
                f"{stream.name!r}: {stream.partial_send}, so ACTIVATE_VERSION would mark "
                "every row it did not send deleted; turn it off, or leave the stream's "
                "replication method as discovery gives it"
            )
            raise ConfigError(msg)


def _activates_version(stream: CubeStream) -> bool:
    """Whether the SDK gives the stream's records a version to activate, as its `sync`
    decides it."""
    return (
        stream.selected
        and stream.replication_method == REPLICATION_FULL_TABLE
        and stream.emit_activate_version_messages
    )


def warn_nothing_selected(
    catalog: Catalog | None, streams: Iterable[CubeStream], logger: logging.Logger
) -> None:
    """A run that extracts nothing succeeds: a scheduler would never notice it."""
    if catalog is not None and not any(stream.selected for stream in streams):
        logger.warning(
            "the catalog selects no stream this configuration offers, so this run extracts "
            "nothing; select streams (meltano select tap-cube customers '*'), or make a "
            "catalog with tap-cube --discover"
        )


#: What each input file must hold, for the message when it does not.
_INPUT_SHAPES = {
    "--config": "a JSON object of settings",
    "--state": "a JSON object (the state a target emitted)",
    "--catalog": 'a JSON object with a "streams" list',
}


def check_inputs(argv: list[str], environ: t.Mapping[str, str]) -> None:
    """Check the files and environment the SDK will read, to name what is wrong in them.

    The SDK would fail on them with a bare JSONDecodeError, TypeError or KeyError.
    """
    for option, path in _input_files(argv):
        if option == "--config" and path == "ENV":
            _check_environment(environ)
            continue
        try:
            with open(path, encoding="utf-8") as file:
                value = json.load(file)
        except OSError as exc:
            msg = (
                f"{option} {path} cannot be read ({exc.strerror}); it must name a file of "
                + (_INPUT_SHAPES[option])
            )
            raise ConfigError(msg) from None
        except UnicodeDecodeError:
            msg = f"{option} {path} is not UTF-8 text; it must hold {_INPUT_SHAPES[option]}"
            raise ConfigError(msg) from None
        except (json.JSONDecodeError, RecursionError) as exc:
            where = (
                f" ({exc.msg} at line {exc.lineno} column {exc.colno})"
                if isinstance(exc, json.JSONDecodeError)
                else " (nested too deeply)"
            )
            msg = f"{option} {path} is not valid JSON{where}; it must hold {_INPUT_SHAPES[option]}"
            raise ConfigError(msg) from None
        shaped = isinstance(value, dict) and (
            option != "--catalog" or isinstance(value.get("streams"), list)
        )
        if not shaped:
            msg = f"{option} {path} must hold {_INPUT_SHAPES[option]}"
            raise ConfigError(msg)
        problem = {"--state": _state_problem, "--catalog": _catalog_problem}.get(option)
        if problem is not None and (found := problem(value)):
            raise ConfigError(f"{option} {path}: {found}")


def _state_problem(state: dict[str, t.Any]) -> str | None:
    """What the SDK cannot read in a state file's structure (its values are the streams')."""
    bookmarks = state.get("bookmarks", {})
    advice = (
        "; it is not a state this tap wrote: fix the file, or start afresh without it "
        "(with Meltano: meltano state clear <state id>)"
    )
    if not isinstance(bookmarks, dict):
        return f'"bookmarks" must be a JSON object of streams{advice}'
    for stream, bookmark in bookmarks.items():
        if not isinstance(bookmark, dict):
            return f'the bookmarks of "{stream}" must be a JSON object{advice}'
    return None


def _catalog_problem(catalog: dict[str, t.Any]) -> str | None:
    """The first part of a catalog the SDK would trip over, named by its path."""
    advice = "; make a catalog with tap-cube --discover"
    for index, entry in enumerate(catalog["streams"]):
        where = f"streams[{index}]"
        if not isinstance(entry, dict):
            return f"{where} must be a JSON object{advice}"
        if not isinstance(entry.get("tap_stream_id"), str):
            return f'{where} must name its stream in "tap_stream_id"{advice}'
        schema = entry.get("schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
            return f'{where}.schema must be a JSON object with "properties"{advice}'
        for name, prop in schema["properties"].items():
            if not isinstance(prop, dict):
                return f"{where}.schema.properties.{name} must be a JSON object{advice}"
        metadata = entry.get("metadata", [])
        if not isinstance(metadata, list):
            return f"{where}.metadata must be a JSON list{advice}"
        for number, item in enumerate(metadata):
            at = f"{where}.metadata[{number}]"
            if not isinstance(item, dict):
                return f"{at} must be a JSON object{advice}"
            if not isinstance(item.get("breadcrumb"), list):
                return f"{at}.breadcrumb must be a JSON list{advice}"
            if not isinstance(item.get("metadata"), dict):
                return f"{at}.metadata must be a JSON object{advice}"
    return None


def _input_files(argv: list[str]) -> t.Iterator[tuple[str, str]]:
    for index, arg in enumerate(argv):
        option, equals, value = arg.partition("=")
        if option in _INPUT_SHAPES:
            if equals:
                yield option, value
            elif index + 1 < len(argv):
                yield option, argv[index + 1]


_ARRAY_EXAMPLES = {"crms": """'[{"data_owner_id": 3, "crm_type": "B2C"}]'"""}

#: The JSON types read from a variable's text here rather than by the SDK, and how
#: messages name them.
_SCALAR_KINDS = {"integer": "a whole number", "number": "a number", "boolean": "true or false"}
_TRUE_WORDS = ("true", "1", "yes", "on")  # the SDK's, for true
_FALSE_WORDS = ("false", "0", "no", "off")


def read_environment(schema: t.Mapping[str, t.Any], prefix: str) -> dict[str, t.Any]:
    """The settings given as `<prefix><NAME>` variables, by the type `schema` gives them.

    The SDK's parse_environment_config reads the rest; it leaves a number as text, which
    validation then refuses (`'1' is not of type 'number'`), and ends on a malformed whole
    number with a bare ValueError. A variable set empty counts as unset.
    """
    properties: dict[str, t.Any] = schema["properties"]
    scalars = {name: kind for name, prop in properties.items() if (kind := _scalar_kind(prop))}
    others = {name: prop for name, prop in properties.items() if name not in scalars}
    # It also loads a .env file into the environment, so it runs first.
    config = parse_environment_config({**schema, "properties": others}, prefix)
    for name, kind in scalars.items():
        variable = prefix + name.upper().replace("-", "_")
        text = os.environ.get(variable, "").strip()
        if text:
            config[name] = _scalar_from_text(variable, text, kind, properties[name])
    return config


def _scalar_kind(prop: t.Mapping[str, t.Any]) -> str | None:
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else types
    return next((kind for kind in _SCALAR_KINDS if kind in types), None)


def _scalar_from_text(variable: str, text: str, kind: str, prop: t.Mapping[str, t.Any]) -> t.Any:
    if kind == "boolean" and text.lower() in (*_TRUE_WORDS, *_FALSE_WORDS):
        return text.lower() in _TRUE_WORDS
    if kind == "integer" and re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text)
    if kind == "number":
        with contextlib.suppress(json.JSONDecodeError):
            # As a JSON config file gives numbers: whole ones as int, others as Decimal.
            value = json.loads(text, parse_float=Decimal)
            if isinstance(value, int | Decimal) and not isinstance(value, bool):
                return value
    example = "true" if kind == "boolean" else prop.get("default", 1)
    msg = f"{variable}={text!r} is not {_SCALAR_KINDS[kind]}; write it as {variable}={example}"
    raise ConfigError(msg)


def _check_environment(environ: t.Mapping[str, str]) -> None:
    """Array settings from the environment must be JSON arrays, as the SDK parses them."""
    for name, prop in SETTINGS["properties"].items():
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
