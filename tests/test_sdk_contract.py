"""The private names of the SDK (and requests) that tap-cube relies on, in one place.

Each is used for a reason the public API does not cover; each test here pins what tap-cube
relies on, so an upgrade that changes it fails here, not in a user's run.

- `Stream._generate_record_messages` (cube_stream.py): skip the per-field selection walk when
  every property is selected, the largest per-record cost.
- `Stream._stream_version` (cube_stream.py): the version the SDK's own record messages carry.
- `Stream._write_state_message` and `state_manager.is_flushed` (cube_stream.py): a STATE
  without a partition's record hashes before its first change (skip_unchanged).
- `Tap._state_writer` and `singer_sdk.helpers._state.StateWriter` (tap.py, output.py): a
  STATE writer that remembers the last STATE by a digest, not by a copy of megabytes.
- `PluginBase._setup_signal_handlers` (tap.py): add SIGHUP to the signals that stop a run.
- `PluginBase._handle_termination` (tap.py): the SDK's handler exits 0 on a partial run.
- `PluginBase._validate_config` (tap.py): the rules a JSON schema cannot say, in the same
  one-line error.
- `Stream._write_activate_version_message` (cube_stream.py): the ACTIVATE_VERSION the SDK
  writes as a sync begins, held back until the stream was sent whole.
- `Tap._set_compatible_replication_methods` (tap.py): the step of `sync_all` before any
  message, where what the selected streams cannot honour is refused.
- `PluginBase._env_var_config` and `singer_sdk.configuration._dict_config`
  (`parse_environment_config`, `merge_missing_config_jsonschema`; tap.py, validation.py):
  `--config ENV` read by each setting's type, and `emit_activate_version_messages` declared.
- `requests.Response._content` (responses.py): a body read within request_timeout, then
  decoded as requests would.
"""

from __future__ import annotations

import inspect

import requests
from singer_sdk import Stream
from singer_sdk.plugin_base import PluginBase

from tap_cube.tap import TapCube
from tests.conftest import config_for, plain_assignment


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_record_message_hook_is_what_the_sdk_calls_per_record(simulator, monkeypatch):
    assert parameters(Stream._generate_record_messages) == ["self", "record"]
    calls: list[str] = []
    original = Stream._generate_record_messages

    def spy(self, record):
        calls.append(record["crm__customer_id"])
        return original(self, record)

    sim = simulator([plain_assignment(7, 40)])
    tap = TapCube(config=config_for(sim, [7]))
    stream = tap.streams["customers"]
    stream._every_property_selected = False  # type: ignore[attr-defined]  # the SDK's path
    monkeypatch.setattr(Stream, "_generate_record_messages", spy)
    stream.sync()
    assert len(calls) == 40
    assert isinstance(stream._stream_version, int | None)


def test_signal_hooks_exist_with_the_shape_tap_cube_overrides():
    assert parameters(PluginBase._setup_signal_handlers) == ["self"]
    assert parameters(PluginBase._handle_termination) == ["self", "signum", "frame"]
    assert "raise_errors" in parameters(PluginBase._validate_config)


def test_requests_serves_content_it_was_given():
    response = requests.Response()
    response._content = b'{"count": 0}'
    response.status_code = 200
    assert response.content == b'{"count": 0}'
    assert response.json() == {"count": 0}


def test_a_state_message_is_written_on_demand_when_unflushed(simulator, capsys):
    assert parameters(Stream._write_state_message) == ["self"]
    sim = simulator([plain_assignment(7, 1)])
    tap = TapCube(config=config_for(sim, [7]))
    stream = tap.streams["customers"]
    stream.state_manager.is_flushed = False
    stream._write_state_message()
    assert '"type":"STATE"' in capsys.readouterr().out.replace(" ", "")
    assert stream.state_manager.is_flushed is True


def test_the_tap_writes_every_state_through_its_digest_writer(simulator, capsys):
    from singer_sdk.helpers._state import StateWriter

    from tap_cube.output import DigestStateWriter

    sim = simulator([plain_assignment(7, 1)])
    tap = TapCube(config=config_for(sim, [7]))
    assert isinstance(tap._state_writer, StateWriter)
    assert tap.state_writer is tap._state_writer
    assert isinstance(tap.state_writer, DigestStateWriter)
    tap.sync_all()
    states = [line for line in capsys.readouterr().out.splitlines() if '"STATE"' in line]
    assert states


def test_activate_version_and_sync_hooks_exist_with_the_shape_tap_cube_overrides():
    from singer_sdk import Tap
    from singer_sdk.configuration._dict_config import (
        merge_missing_config_jsonschema,
        parse_environment_config,
    )

    assert parameters(Stream._write_activate_version_message) == ["self", "full_table_version"]
    assert parameters(Tap._set_compatible_replication_methods) == ["self"]
    assert parameters(parse_environment_config)[:2] == ["config_schema", "prefix"]
    assert parameters(merge_missing_config_jsonschema) == [
        "source_jsonschema",
        "target_jsonschema",
    ]
    assert isinstance(inspect.getattr_static(PluginBase, "_env_var_config"), property)
