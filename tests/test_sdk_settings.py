"""The SDK's own settings: known by name, read from the environment by type, and
refused with one line where the tap cannot honour them, never ignored while they act."""

from __future__ import annotations

import json
import time
import typing as t

import pytest
from singer_sdk.helpers import capabilities

from cube_simulator import Assignment
from tests.conftest import config_for, plain_assignment, run_tap
from tests.meltano_support import FIELDS, SIM_TOKEN, customers_only_env, tail
from tests.test_errors import assert_fails_with
from tests.test_meltano_e2e import keys_of, table_contents

if t.TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import TapRun

ACTIVATE = {"emit_activate_version_messages": True}


def activate_versions(run: TapRun, stream: str = "customers") -> list[int]:
    return [
        m["version"]
        for m in run.messages
        if m["type"] == "ACTIVATE_VERSION" and m["stream"] == stream
    ]


def last_state(run: TapRun) -> dict[str, t.Any]:
    states: list[dict[str, t.Any]] = [m["value"] for m in run.messages if m["type"] == "STATE"]
    return states[-1]


def run_with_state(
    config: dict, tmp_path: Path, state: dict, *args: str, env: dict[str, str] | None = None
) -> TapRun:
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    return run_tap(config, tmp_path, "--state", str(state_file), *args, env=env)


def discovered_catalog(config: dict, tmp_path: Path) -> dict[str, t.Any]:
    run = run_tap(config, tmp_path, "--discover")
    assert run.returncode == 0, run.stderr
    return t.cast("dict[str, t.Any]", json.loads(run.stdout))


def root(entry: dict[str, t.Any]) -> dict[str, t.Any]:
    return next(m["metadata"] for m in entry["metadata"] if m["breadcrumb"] == [])


def write_catalog(catalog: dict[str, t.Any], tmp_path: Path) -> str:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    return str(path)


class ModelTable:
    """A table as target-postgres keeps it: upserts on the key, ACTIVATE_VERSION marking
    every row of an older (or no) version deleted."""

    def __init__(self, *key: str) -> None:
        self.key = key
        self.rows: dict[tuple[t.Any, ...], dict[str, t.Any]] = {}

    def load(self, run: TapRun, stream: str = "customers") -> None:
        for message in run.messages:
            if message.get("stream") != stream:
                continue
            if message["type"] == "RECORD":
                row = {**message["record"], "_version": message.get("version")}
                row.setdefault("_sdc_deleted_at", None)
                self.rows[tuple(row[name] for name in self.key)] = row
            elif message["type"] == "ACTIVATE_VERSION":
                for row in self.rows.values():
                    older = row["_version"] is None or row["_version"] < message["version"]
                    if older and row["_sdc_deleted_at"] is None:
                        row["_sdc_deleted_at"] = "activated away"

    def live(self) -> set[tuple[t.Any, ...]]:
        return {key for key, row in self.rows.items() if row["_sdc_deleted_at"] is None}


# --- ACTIVATE_VERSION ---------------------------------------------------------------


def test_activate_version_with_skip_unchanged_is_refused(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 30)])
    config = config_for(sim, [7], skip_unchanged=True, **ACTIVATE)
    run = run_tap(config, tmp_path)
    assert_fails_with(run, "emit_activate_version_messages", "skip_unchanged")
    assert not [m for m in run.messages if m["type"] in {"RECORD", "ACTIVATE_VERSION"}]


def test_activate_version_of_a_stream_read_in_day_windows_is_refused(simulator, tmp_path):
    """Forced to FULL_TABLE by a catalog, call outcomes would still send only the days
    after their bookmark, and the version would mark every earlier row deleted."""
    sim = simulator([plain_assignment(7, 5)])
    config = config_for(sim, [7], start_date=sim.today().isoformat(), **ACTIVATE)
    catalog = discovered_catalog(config, tmp_path)
    for entry in catalog["streams"]:
        chosen = entry["tap_stream_id"] == "call_outcomes"
        root(entry)["selected"] = chosen
        if chosen:
            entry["replication_method"] = "FULL_TABLE"
            root(entry)["forced-replication-method"] = "FULL_TABLE"
    run = run_tap(config, tmp_path, "--catalog", write_catalog(catalog, tmp_path))
    assert_fails_with(run, "emit_activate_version_messages", "call_outcomes", "day windows")
    assert activate_versions(run, "call_outcomes") == []


def test_a_whole_send_activates_its_version_after_its_records(simulator, tmp_path):
    """A run that sent every customer: the target marks deleted exactly those it no
    longer sent, and only once every record of the version is in."""
    sim = simulator([plain_assignment(7, 40), plain_assignment(8, 25)])
    config = config_for(sim, [7, 8], **ACTIVATE)
    table = ModelTable("assignment_id", "crm__customer_id")
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    table.load(first)
    sim.set_count(7, 35, at="start")
    # The SDK's versions are whole seconds: a run begun in the first's second would
    # share its version, and a target marks deleted only the rows of older versions.
    (first_version,) = activate_versions(first)
    time.sleep(max(0.0, first_version + 1 - time.time()))
    second = run_with_state(config, tmp_path, last_state(first))
    assert second.returncode == 0, second.stderr
    table.load(second)
    served = {(i, r["crm__customer_id"]) for i in (7, 8) for r in sim.customers(i)}
    assert table.live() == served
    assert len(table.rows) == 65
    for run in (first, second):
        (version,) = activate_versions(run)
        kinds = [m["type"] for m in run.messages if m.get("stream") == "customers"]
        assert kinds.index("ACTIVATE_VERSION") > max(
            i for i, kind in enumerate(kinds) if kind == "RECORD"
        )
        assert {r["version"] for r in run.messages if r["type"] == "RECORD"} == {version}


def test_a_version_a_skipped_assignment_left_incomplete_is_not_activated(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 20), plain_assignment(8, 20)])
    sim.set_access(8, "forbidden")
    config = config_for(sim, [7, 8], skip_inaccessible_assignments=True, **ACTIVATE)
    run = run_tap(config, tmp_path)
    assert_fails_with(run, "customers", "ACTIVATE_VERSION", "assignment 8")
    assert activate_versions(run) == []


def test_a_read_that_cannot_be_checked_as_complete_activates_no_version(simulator, tmp_path):
    """Pages without a count whose links end after 2 of 3 pages: ACTIVATE_VERSION would
    have the target mark the 100 live customers of page 3 deleted."""
    sim = simulator([plain_assignment(7, 300)], page_size=100, next_style="same")
    customers = sim.customers(7)
    path = "/assignments/7/customers/"
    body = {"next": f"{sim.url}{path}?page=2", "previous": None, "results": customers[:100]}
    sim.fail_next(path, 200, json.dumps(body), times=2)  # discovery's sample, the sync
    last = {"next": None, "previous": None, "results": customers[100:200]}
    sim.fail_next(f"{path}?page=2", 200, json.dumps(last))
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1, **ACTIVATE), tmp_path)
    assert_fails_with(run, "customers", "ACTIVATE_VERSION", "assignment 7", "no count")
    assert len(run.records()) == 200
    assert activate_versions(run) == []


def test_a_read_that_fails_part_way_activates_no_version(simulator, tmp_path):
    """The target would keep every row the run had not sent again marked deleted."""
    sim = simulator([plain_assignment(7, 1200)])
    sim.fail_next("/customers/?page=2", 400, json.dumps({"detail": "Ugyldig forespørsel."}))
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1, **ACTIVATE), tmp_path)
    assert_fails_with(run, "assignment 7", "400")
    assert run.records()
    assert activate_versions(run) == []


@pytest.mark.slow
def test_activate_version_with_skip_unchanged_leaves_the_table_whole_through_meltano(
    simulator, meltano, pg_database, tmp_path
):
    """meltano.yml turns skip_unchanged on; a re-run with ACTIVATE_VERSION sent no
    unchanged customer and the version, and target-postgres marked every one deleted."""
    sim = simulator([Assignment(81, 700, custom_fields=FIELDS)], token=SIM_TOKEN)
    env = customers_only_env(sim, pg_database, [81])
    job = meltano("a")
    args = ("run", "--state-id-suffix", f"activate-{tmp_path.name}", "tap-cube", "target-postgres")
    job.run(*args, env=env, log=tmp_path / "first.log")
    log = tmp_path / "activate.log"
    activate_env = {**env, "TAP_CUBE_EMIT_ACTIVATE_VERSION_MESSAGES": "true"}
    lines = job.run_failing(*args, env=activate_env, log=log)
    assert lines[-1].startswith(
        "tap-cube: error: invalid configuration: emit_activate_version_messages cannot be "
        "used with skip_unchanged"
    ), tail(log)
    rows = table_contents(pg_database.dsn)
    assert {(a, str(c)) for a, c in rows} == keys_of(sim, 81)
    assert not [key for key, row in rows.items() if row["deleted"]]


# --- BATCH ------------------------------------------------------------------------

BATCH = {
    "encoding": {"format": "jsonl", "compression": "gzip"},
    "storage": {"root": "file:///tmp"},
}


# The refusal of batch_config with stream maps is tested in tests/test_batch.py.


# --- built-in settings --------------------------------------------------------------

#: A valid value of each setting the SDK builds into a tap; the test below checks that
#: these are exactly the SDK's.
BUILTIN_VALUES: dict[str, t.Any] = {
    "stream_maps": {},
    "stream_map_config": {},
    "faker_config": {"seed": 1},
    "flattening_enabled": False,
    "flattening_max_depth": 1,
    "flattening_max_key_length": 255,
    "flattening_separator": "__",
    "batch_config": BATCH,
    "emit_activate_version_messages": False,
}


def test_builtin_settings_listed_here_are_the_sdks():
    declared = {
        name
        for schema in (
            capabilities.STREAM_MAPS_CONFIG,
            capabilities.FLATTENING_CONFIG,
            capabilities.BATCH_CONFIG,
            capabilities.EMIT_ACTIVATE_VERSION_CONFIG,
        )
        for name in schema["properties"]
    }
    assert set(BUILTIN_VALUES) == declared


def test_builtin_sdk_settings_are_not_called_unknown(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 5)])
    run = run_tap(config_for(sim, [7], **BUILTIN_VALUES), tmp_path, "--discover")
    assert run.returncode == 0, run.stderr
    assert "unknown setting" not in run.stderr


def test_about_lists_emit_activate_version_messages(tmp_path):
    run = run_tap({}, tmp_path, "--about", "--format", "json")
    assert run.returncode == 0, run.stderr
    assert "emit_activate_version_messages" in json.loads(run.stdout)["settings"]["properties"]


# --- settings from the environment --------------------------------------------------


def test_numbers_from_the_environment_are_read_as_numbers(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 5)])
    env = {
        "TAP_CUBE_MAX_DELETION_SHARE": "1",
        "TAP_CUBE_REQUEST_TIMEOUT": "30",
        "TAP_CUBE_MAX_RETRY_WAIT": "0.01",
        "TAP_CUBE_MAX_RETRIES": "2",
        "TAP_CUBE_DETECT_DELETIONS": "true",
    }
    run = run_tap(config_for(sim, [7]), tmp_path, "--config", "ENV", env=env)
    assert run.returncode == 0, run.stderr
    assert len(run.records()) == 5
    assert "_sdc_deleted_at" in run.schema()["properties"]  # detect_deletions is on


def test_the_guards_remedy_from_the_environment_deletes(simulator, tmp_path):
    """The deletion guard's message says TAP_CUBE_MAX_DELETION_SHARE=1: it must work."""
    sim = simulator([plain_assignment(7, 10)])
    config = config_for(sim, [7], detect_deletions=True)
    first = run_tap(config, tmp_path)
    assert first.returncode == 0, first.stderr
    sim.set_count(7, 2, at="start")
    env = {"TAP_CUBE_MAX_DELETION_SHARE": "1"}
    second = run_with_state(config, tmp_path, last_state(first), "--config", "ENV", env=env)
    assert second.returncode == 0, second.stderr
    assert len([r for r in second.records() if r.get("_sdc_deleted_at")]) == 8


@pytest.mark.parametrize(
    ("variable", "value", "kind"),
    [
        ("TAP_CUBE_REQUEST_TIMEOUT", "thirty", "a number"),
        ("TAP_CUBE_MAX_DELETION_SHARE", "NaN", "a number"),
        ("TAP_CUBE_MAX_RETRIES", "2.5", "a whole number"),
        ("TAP_CUBE_MAX_RETRIES", "two", "a whole number"),
        ("TAP_CUBE_DETECT_DELETIONS", "ture", "true or false"),
    ],
)
def test_a_setting_from_the_environment_of_the_wrong_type_is_named(
    simulator, tmp_path, variable, value, kind
):
    sim = simulator([plain_assignment(7, 5)])
    run = run_tap(config_for(sim, [7]), tmp_path, "--config", "ENV", env={variable: value})
    assert_fails_with(run, f"{variable}={value!r} is not {kind}")


# --- a catalog that selects nothing ---------------------------------------------------


def test_a_catalog_that_selects_nothing_warns(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 5)])
    config = config_for(sim, [7])
    catalog = discovered_catalog(config, tmp_path)
    for entry in catalog["streams"]:
        root(entry)["selected"] = False
    run = run_tap(config, tmp_path, "--catalog", write_catalog(catalog, tmp_path))
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "selects no stream" in line]
    assert len(warnings) == 1, run.stderr
    assert "WARNING" in warnings[0]
    assert not [m for m in run.messages if m["type"] == "RECORD"]
