"""The private names of the SDK (and requests) that tap-cube relies on, in one place.

Each is used for a reason the public API does not cover (`PRIVATE_SDK_NAMES` says which);
the tests here pin what tap-cube relies on, so an upgrade that changes it fails here, not
in a user's run, and a use of a private SDK name the register does not list fails too.
Beside the SDK's: `requests.Response._content` (responses.py), a body read within
request_timeout, then decoded as requests would.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import typing as t
from pathlib import Path

import requests
import singer_sdk
from singer_sdk import Stream
from singer_sdk.plugin_base import PluginBase

import tap_cube
from tap_cube.tap import TapCube
from tests.conftest import config_for, plain_assignment

#: Every private name of the SDK that tap-cube uses (an attribute or method as the tap
#: writes it, or a name imported from a private module), with where and why.
PRIVATE_SDK_NAMES = {
    "_generate_record_messages": (
        "Stream (cube_stream.py): skip the per-field selection walk when every property "
        "is selected, the largest per-record cost"
    ),
    "_stream_version": "Stream (cube_stream.py): the version the SDK's own records carry",
    "_write_state_message": (
        "Stream, with state_manager.is_flushed (cube_stream.py): a STATE without a "
        "partition's record hashes before its first change (skip_unchanged)"
    ),
    "_sync_records": (
        "Stream (cube_stream.py): the one frame around a stream's records, their messages "
        "and its last STATE (`sync` is final); a sync that fails there, wherever, writes "
        "the STATE its reads leave on the way out"
    ),
    "_write_activate_version_message": (
        "Stream (cube_stream.py): the ACTIVATE_VERSION the SDK writes as a sync begins, "
        "held back until the stream was sent whole"
    ),
    "_increment_stream_state": (
        "Stream (call_outcomes.py): bookmarks compared as UTC text of one width, so that "
        "the SDK's text comparison orders them as the instants"
    ),
    "singer_sdk.helpers._state.PROGRESS_MARKERS": (
        "call_outcomes.py: where the SDK keeps a partition's latest bookmark until the "
        "stream is done, clamped to the run's clock"
    ),
    "_state_writer": (
        "Tap (tap.py): the STATE writer, replaced by one that remembers the last STATE by "
        "a digest, not by a copy of megabytes"
    ),
    "singer_sdk.helpers._state.StateWriter": "output.py: the base of that writer",
    "_message_writer": "StateWriter (output.py): where that writer writes its STATE",
    "_setup_signal_handlers": "PluginBase (tap.py): add SIGHUP to the signals that stop a run",
    "_handle_termination": "PluginBase (tap.py): the SDK's handler exits 0 on a partial run",
    "_validate_config": (
        "PluginBase (tap.py): the rules a JSON schema cannot say, in the same one-line error"
    ),
    "_set_compatible_replication_methods": (
        "Tap (tap.py): the step of sync_all before any message, where what the selected "
        "streams cannot honour is refused"
    ),
    "_env_var_config": "PluginBase (tap.py): `--config ENV` read by each setting's type",
    "_env_var_prefix": "PluginBase (tap.py): the prefix of those variables, TAP_CUBE_",
    "singer_sdk.helpers._classproperty.classproperty": (
        "tap.py: `_env_var_config` is a class property in the SDK, so its override is too"
    ),
    "singer_sdk.configuration._dict_config.parse_environment_config": (
        "validation.py: the variables of the settings not read by type here"
    ),
    "singer_sdk.configuration._dict_config.merge_missing_config_jsonschema": (
        "tap.py: emit_activate_version_messages declared among the built-in settings"
    ),
}

TAP_CUBE = Path(tap_cube.__file__).parent


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _sdk_private_names(classes: t.Iterable[type]) -> set[str]:
    """The private names `classes` (the SDK's) define or set on their instances."""
    names: set[str] = set()
    for cls in classes:
        names |= {name for name in vars(cls) if _is_private(name)}
        with_source = inspect.getsource(cls)
        names |= set(re.findall(r"(?:self|cls)\.(_[A-Za-z]\w*)", with_source))
    return names


def _every_sdk_private_name() -> set[str]:
    root = Path(singer_sdk.__file__).parent
    return {
        name
        for path in root.rglob("*.py")
        for name in re.findall(r"(?:\.|def )(_[A-Za-z]\w*)", path.read_text(encoding="utf-8"))
    }


def _private_module_imports(tree: ast.Module) -> t.Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("singer_sdk"):
            if any(_is_private(part) for part in (node.module or "").split(".")):
                yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (
                alias.name
                for alias in node.names
                if alias.name.startswith("singer_sdk")
                and any(_is_private(part) for part in alias.name.split("."))
            )


def _is_own(receiver: ast.expr) -> bool:
    """`self`, `cls` or `super()`: the object of the class being defined."""
    if isinstance(receiver, ast.Name):
        return receiver.id in ("self", "cls")
    return (
        isinstance(receiver, ast.Call)
        and isinstance(receiver.func, ast.Name)
        and receiver.func.id == "super"
    )


def _class_uses(node: ast.ClassDef, cls: type, anywhere: set[str]) -> t.Iterator[str]:
    """The SDK's private names a class of the tap overrides or reads on itself (or, on
    other objects, any private name the SDK has)."""
    sdk_bases = [base for base in cls.__mro__ if base.__module__.startswith("singer_sdk")]
    inherited = _sdk_private_names(sdk_bases)
    for inner in ast.walk(node):
        if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef) and inner.name in inherited:
            yield inner.name
        elif isinstance(inner, ast.Attribute) and _is_private(inner.attr):
            known = inherited if _is_own(inner.value) else anywhere
            if inner.attr in known:
                yield inner.attr


def _tap_modules() -> t.Iterator[tuple[str, ast.Module]]:
    for path in sorted(TAP_CUBE.rglob("*.py")):
        if path.name == "__main__.py":  # runs the command when imported; it defines nothing
            continue
        name = ".".join(path.relative_to(TAP_CUBE.parent).with_suffix("").parts)
        yield name.removesuffix(".__init__"), ast.parse(path.read_text(encoding="utf-8"))


def _own_private_names(modules: list[tuple[str, ast.Module]]) -> set[str]:
    """The private names tap-cube's classes without an SDK base define for themselves."""
    own: set[str] = set()
    for name, tree in modules:
        module = importlib.import_module(name)
        for node in tree.body:
            cls = getattr(module, node.name, None) if isinstance(node, ast.ClassDef) else None
            if cls is None or any(b.__module__.startswith("singer_sdk") for b in cls.__mro__):
                continue
            own |= {
                inner.name if isinstance(inner, ast.FunctionDef) else inner.attr
                for inner in ast.walk(node)
                if (isinstance(inner, ast.FunctionDef) and _is_private(inner.name))
                or (
                    isinstance(inner, ast.Attribute)
                    and _is_own(inner.value)
                    and _is_private(inner.attr)
                )
            }
    return own


def private_sdk_uses() -> dict[str, set[str]]:
    """Each private SDK name tap-cube's source uses, with the modules using it.

    Within a class, `self._x` counts when one of the class's SDK bases has `_x`; elsewhere
    `thing._x` counts when any part of the SDK has `_x` and no class of the tap's own does.
    """
    modules = list(_tap_modules())
    anywhere = _every_sdk_private_name() - _own_private_names(modules)
    uses: dict[str, set[str]] = {}
    for name, tree in modules:
        module = importlib.import_module(name)
        found = set(_private_module_imports(tree))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                found |= set(_class_uses(node, getattr(module, node.name), anywhere))
                continue
            found |= {
                inner.attr
                for inner in ast.walk(node)
                if isinstance(inner, ast.Attribute)
                and _is_private(inner.attr)
                and inner.attr in anywhere
            }
        for used in found:
            uses.setdefault(used, set()).add(name)
    return uses


def test_the_register_lists_every_private_sdk_name_the_tap_uses():
    uses = private_sdk_uses()
    unlisted = {name: sorted(modules) for name, modules in uses.items()}
    unlisted = {name: where for name, where in unlisted.items() if name not in PRIVATE_SDK_NAMES}
    assert not unlisted, f"private SDK names used but not in PRIVATE_SDK_NAMES: {unlisted}"
    unused = set(PRIVATE_SDK_NAMES) - set(uses)
    assert not unused, f"PRIVATE_SDK_NAMES lists names the tap no longer uses: {unused}"


def test_the_scan_finds_a_private_sdk_name():
    """The scan itself: an override of a private SDK method is found."""
    uses = private_sdk_uses()
    assert "tap_cube.streams.call_outcomes" in uses["_increment_stream_state"]
    assert "tap_cube.streams.call_outcomes" in uses["singer_sdk.helpers._state.PROGRESS_MARKERS"]


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


def test_a_same_record_transform_gives_the_record_itself_unless_it_flattens():
    """What `map_steps` (records/record_messages.py) relies on to take a record as it is
    where a stream has no stream maps, rather than call the SDK's transform."""
    from singer_sdk.helpers._flattening import FlatteningOptions
    from singer_sdk.mapper import SameRecordTransform

    from tap_cube.records.record_messages import map_steps

    schema = {"properties": {"id": {"type": "integer"}, "o": {"type": "object"}}}
    record = {"id": 1, "o": {"a": 1}}
    plain = SameRecordTransform("s", schema, ["id"], None)
    assert plain.transform(record) is record
    off = SameRecordTransform("s", schema, ["id"], FlatteningOptions(enabled=False))
    assert off.transform(record) is record
    flattens = SameRecordTransform(
        "s", schema, ["id"], FlatteningOptions(enabled=True, max_level=1)
    )
    assert flattens.transform(record) is not record  # flattened, as a new record
    assert map_steps([plain, off]) == [("s", None), ("s", None)]
    assert map_steps([flattens]) == [("s", flattens.transform)]


def test_signal_hooks_exist_with_the_shape_tap_cube_overrides():
    assert parameters(PluginBase._setup_signal_handlers) == ["self"]
    assert parameters(PluginBase._handle_termination) == ["self", "signum", "frame"]
    assert "raise_errors" in parameters(PluginBase._validate_config)


def test_a_streams_sync_runs_its_records_and_last_state_in_sync_records():
    """What the override of `_sync_records` relies on: `sync` (final) iterates it, and it
    writes the records' messages and the stream's last STATE itself."""
    assert parameters(Stream._sync_records) == ["self", "context", "write_messages"]
    assert inspect.isgeneratorfunction(Stream._sync_records)
    assert "self._sync_records(context=context)" in inspect.getsource(Stream.sync)
    source = inspect.getsource(Stream._sync_records)
    assert "self._write_record_message(record)" in source
    assert source.rstrip().endswith("self._write_state_message()")


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
