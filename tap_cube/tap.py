"""tap-cube: the SDK's Tap, with its settings, discovery and streams."""

from __future__ import annotations

import copy
import typing as t
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import click
from singer_sdk import Tap
from singer_sdk.configuration._dict_config import merge_missing_config_jsonschema
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.helpers.capabilities import EMIT_ACTIVATE_VERSION_CONFIG, TapCapabilities
from singer_sdk.tap_base import CliTestOptionValue
from typing_extensions import override

from tap_cube import stopping
from tap_cube.api.concurrency import ConcurrencyLimit
from tap_cube.api.fetch import RequestGate
from tap_cube.connection_test import check_streams
from tap_cube.errors import ConfigError, install_scrubber
from tap_cube.output import BufferedRecordWriter, DigestStateWriter, write_output
from tap_cube.probe import probe
from tap_cube.settings import SETTINGS, Settings
from tap_cube.state import check_state, singer_state
from tap_cube.streams.catalog import refuse_other_keys
from tap_cube.streams.cube_stream import CubeStream
from tap_cube.streams.directory import Directory, meets
from tap_cube.streams.discovery import Discovery, reader_class, state_shape
from tap_cube.streams.specs import CAMPAIGNS_SPEC, STREAM_SPECS, StreamSpec
from tap_cube.validation import (
    check_settings,
    read_environment,
    refuse_partial_versions,
    warn_future_start_date,
    warn_nothing_selected,
    warn_unknown_settings,
    warn_unoffered_streams,
    without_range_errors,
)

if t.TYPE_CHECKING:
    from types import FrameType

    from singer_sdk.helpers.capabilities import CapabilitiesEnum
    from singer_sdk.streams import Stream


class TapCube(Tap):
    """Singer tap for the Headshed Cube REST API."""

    name = "tap-cube"
    message_writer_class = BufferedRecordWriter
    # Discovery reads the server (custom fields, data owners), so it validates the
    # settings first, as a sync does, instead of failing later on what is wrong in them.
    dynamic_catalog = True
    config_jsonschema = SETTINGS
    #: Every stream the tap may offer (tap_cube/streams/specs.py); each is offered when
    #: the settings it `needs` are set.
    stream_specs: t.ClassVar[tuple[StreamSpec, ...]] = STREAM_SPECS
    # The SDK's, less ACTIVATE_VERSION (deletions arrive as records, see detect_deletions;
    # none is ever sent), and with `--test` (see connection_test.py).
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        *Tap.capabilities,
        TapCapabilities.TEST,
    ]

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        install_scrubber()  # before the SDK's constructor, which validates and discovers
        super().__init__(*args, **kwargs)
        self._state_writer = DigestStateWriter(self.message_writer)

    @cached_property
    def gate(self) -> RequestGate:
        """Shared by every stream's requests, with the run's concurrency limit; cancelled
        on a stop (the settings are read before the stop signals are handled)."""
        return RequestGate(ConcurrencyLimit.of(self.config))

    @override
    def _setup_signal_handlers(self) -> None:
        """Add SIGHUP to the signals that stop a run."""
        stopping.handle_stop_signals(self._handle_termination)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """End the run as failed: the SDK would write a state and exit 0 on a partial run."""
        stopping.stop_run(signum, self.gate, t.cast("BufferedRecordWriter", self.message_writer))

    @classmethod
    @override
    def append_builtin_config(cls, config_jsonschema: dict[str, t.Any]) -> None:
        """The SDK's built-in settings, with `emit_activate_version_messages`: the SDK's
        streams act on it, yet only targets declare it (capabilities.py)."""
        super().append_builtin_config(config_jsonschema)
        if TapCapabilities.ACTIVATE_VERSION in cls.capabilities:
            merge_missing_config_jsonschema(EMIT_ACTIVATE_VERSION_CONFIG, config_jsonschema)

    @classmethod
    def settings_schema(cls) -> dict[str, t.Any]:
        """Every setting a run reads: the tap's own and the SDK's built-in ones."""
        schema = copy.deepcopy(cls.config_jsonschema)
        cls.append_builtin_config(schema)
        return schema

    @classproperty
    def _env_var_config(cls) -> dict[str, t.Any]:
        """`--config ENV`: the TAP_CUBE_* variables, each read by its setting's type."""
        return read_environment(cls.settings_schema(), cls._env_var_prefix)

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        warn_unknown_settings(self.config, self.settings_schema(), self.logger)
        warn_future_start_date(self.config, self.logger, datetime.now(UTC))
        errors = without_range_errors(super()._validate_config(raise_errors=False), self.config)
        errors += check_settings(self.config)
        if errors and raise_errors:
            msg = "invalid configuration: " + "; ".join(errors)
            raise ConfigError(msg)
        return errors

    @override
    def setup_mapper(self) -> None:
        """The mapper, given the catalog once every stream has reconciled its entry with
        what its records carry (CubeStream.apply_catalog), so that SCHEMA messages do too."""
        if self.input_catalog is not None:
            _ = self.streams  # builds the streams, which apply the catalog
        super().setup_mapper()

    @override
    def _set_compatible_replication_methods(self) -> None:
        """Before a sync writes anything: what the selected streams cannot honour is
        refused, and a catalog that selects nothing is said."""
        super()._set_compatible_replication_methods()
        streams = [t.cast("CubeStream", stream) for stream in self.streams.values()]
        refuse_partial_versions(streams)
        refuse_other_keys(streams)
        warn_nothing_selected(self.input_catalog, streams, self.logger)

    @override
    def load_state(self, state: dict[str, t.Any]) -> None:
        """Check the given state whole first: what cannot be trusted stops the run."""
        state = singer_state(state)
        check_state(state, [state_shape(spec) for spec in self.stream_specs])
        super().load_state(state)

    @cached_property
    def directory(self) -> Directory:
        """The campaigns and data owners the streams read, looked up once per run."""
        campaigns = CubeStream(self, CAMPAIGNS_SPEC, gate=self.gate)
        return Directory(
            self.config, lambda: campaigns.requests.fetch_page(None, None).records, campaigns.logger
        )

    @override
    def discover_streams(self) -> list[Stream]:
        """The streams whose needs the configuration meets, with discovered schemas."""
        offered = [spec for spec in self.stream_specs if meets(self.config, spec.needs)]
        streams = Discovery(offered, self._make_stream, self.input_catalog).streams()
        warn_unoffered_streams(
            self.input_catalog,
            [stream.name for stream in streams],
            {spec.name: spec.needs for spec in self.stream_specs},
            self.logger,
        )
        return list(streams)

    def _make_stream(self, spec: StreamSpec, schema: dict[str, t.Any]) -> CubeStream:
        """A stream of `spec`, read by its reader, with the run's gate and directory."""
        reader = reader_class(spec.reader)
        return reader(self, spec, schema, gate=self.gate, directory=self.directory)

    @override
    def run_discovery(self) -> str:
        """Write the catalog as the SDK does, with a closed or full output as one line."""
        catalog_text = self.catalog_json_text
        write_output(f"{catalog_text}\n".encode())
        return catalog_text

    @classmethod
    @override
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """`--test`: one line per stream checked, and no ERROR for the SDK's own stop.

        The SDK's connection test cannot be overridden (it is final), its callback can.
        """
        if value != CliTestOptionValue.All.value:  # off, or `--test=schema`
            super().cb_test(ctx, param, value)
            return
        config = ctx.params["config"]  # parsed first: --config is an eager option
        tap = cls(config=config.config, parse_env_config=config.parse_env, validate_config=True)
        check_streams(tap.streams.values(), tap.logger)
        ctx.exit()

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

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        """The SDK's command line, plus `--probe[=DIR]`."""
        command = super().get_singer_command()
        command.params.append(
            click.Option(
                ["--probe"],
                is_flag=False,
                flag_value="",
                default=None,
                metavar="[DIR]",
                help=(
                    "Describe what the server sends (per endpoint: era, next links, each "
                    "field's JSON type and format class, never a value) and exit. With "
                    "--probe=DIR, also write a redacted fixture per endpoint into DIR."
                ),
                callback=cls.cb_probe,
                expose_value=False,
            )
        )
        return command

    @classmethod
    def cb_probe(cls, ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        """`--probe`: read the first pages the configuration reaches, print their shapes."""
        if value is None:
            return
        config = ctx.params.get("config")
        try:
            tap = cls(
                config=getattr(config, "config", None) or {},
                parse_env_config=bool(getattr(config, "parse_env", False)),
                validate_config=True,
                setup_mapper=False,
            )
            fixture_dir = Path(value) if value else None
            text = probe(tap.streams.values(), Settings(tap.config).api_url, fixture_dir)
        finally:
            ctx.close()
        click.echo(text)
        ctx.exit()
