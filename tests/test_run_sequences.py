"""Sequences of runs, explored rather than listed: after any sequence of server changes,
setting changes, stopped runs and handed-back states, a run that exits 0 leaves the
target equal to the server.

A hypothesis state machine drives the simulator, the settings and `tap-cube` runs (the
command, in this process); each run's output goes to `ModelTarget`, which loads Singer
messages as target-postgres does. After every run that exits 0, in the table the current
settings name:

- every live customer has a row, not marked deleted, with the values a fresh run sends;
- after a run that can verify deletions (detect_deletions on, pages with `count`), every
  row the tap answers for whose customer is gone is marked deleted.

The tap answers for a row of its current table once its state has been through a run
with detect_deletions on since that table became the destination: then for every row
loaded since (in runs with deletions on or off, complete or stopped), and every row live
at the end of a run that verified deletions. So a customer loaded while deletions were
off and removed before deletions are on again must be marked deleted by that next run;
the tap cannot report a deletion while it is off, or while a read cannot be checked
(pages without `count`), so a deletion then is owed, not lost. Rows a table got before it
last became the destination (an alias map turned on, off, on) are not answered for: the
tap's memory is of where it sends now.
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import logging
import os
import signal
import sys
import tempfile
import typing as t
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from cube_simulator import CubeSimulator
from tests.conftest import TOKEN, config_for, examples, plain_assignment

#: Customers per assignment at the start; each stays between 1 and MOST (an emptied
#: assignment is refused by the deletion guard, and more pages cost time, not cases).
ASSIGNMENTS = {7: 9, 8: 4}
MOST = 14
PAGE_SIZE = 4
#: Values a customer is changed to: "12" and 12 are one value once typed.
CHANGES = (
    ("crm__standard_info__name", "Åse Ødegård"),
    ("crm__standard_info__name", "Kari Nordmann"),
    ("crm__custom_info__70", 12),
    ("crm__custom_info__70", "12"),
)
TABLE = "customers"
ALIAS = "cube_customers"
ZONES = ("Europe/Oslo", "UTC", "America/St_Johns")

Key = tuple[t.Any, ...]
Message = dict[str, t.Any]


# --- the tap, run as a command in this process ---------------------------------------------


class _Output:
    """The tap's stdout: bytes kept; with `records` set, the reader goes away after that
    many RECORD messages (a target that stopped), and later writes get a broken pipe."""

    def __init__(self, records: int | None) -> None:
        self.data = bytearray()
        self.buffer = self
        self.encoding = "utf-8"
        self._records = records
        #: Whether the reader went away before the tap stopped writing.
        self.gone = False
        self._devnull = os.open(os.devnull, os.O_WRONLY)  # what fileno() may be pointed to

    def write(self, chunk: bytes | str) -> int:
        if self.gone:
            raise BrokenPipeError(32, "Broken pipe")
        data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        if self._records is None:
            self.data += data
            return len(chunk)
        taken = 0
        for line in data.splitlines(keepends=True):
            if self._records == 0:
                self.gone = True
                break
            self.data += line
            taken += len(line)
            if line.startswith(b'{"type":"RECORD"'):
                self._records -= 1
        return taken

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self._devnull

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        os.close(self._devnull)


@dataclass
class TapRun:
    exit_code: int
    #: What the target read.
    messages: list[Message]
    stderr: str
    #: Whether the target stopped reading before the tap stopped writing.
    output_closed: bool

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def run_tap_in_process(
    config: dict[str, t.Any],
    catalog: dict[str, t.Any] | None,
    state: dict[str, t.Any] | None,
    *,
    records: int | None = None,
) -> TapRun:
    """`tap-cube --config … --catalog … [--state …]`, as the installed command runs it."""
    with tempfile.TemporaryDirectory() as directory:
        args = ["--config", _write(Path(directory, "config.json"), config)]
        if catalog is not None:
            args += ["--catalog", _write(Path(directory, "catalog.json"), catalog)]
        if state is not None:
            args += ["--state", _write(Path(directory, "state.json"), state)]
        output = _Output(records)
        exit_code, stderr = run_command(args, output)
    lines = bytes(output.data).decode().splitlines()
    messages = [json.loads(line) for line in lines if line.strip()]
    return TapRun(exit_code, messages, stderr, output.gone)


def run_command(args: list[str], output: _Output) -> tuple[int, str]:
    """The `tap-cube` command in this process, writing to `output`: its exit status and
    stderr, the end of the process included (what it flushes at exit). What it sets up in
    the process (handlers of logs and signals) is put back afterwards."""
    from tap_cube import cli

    stderr = io.StringIO()
    at_exit: list[t.Callable[[], object]] = []
    saved = _Saved.take()

    def register(function: t.Callable[..., object], *given: object, **named: object) -> object:
        at_exit.append(functools.partial(function, *given, **named))
        return function

    sys.stdout, sys.stderr, sys.argv = output, stderr, ["tap-cube", *args]
    atexit.register = register  # type: ignore[assignment]
    exit_code = 0
    try:
        try:
            cli.run(cli._tap_class)
        except SystemExit as exc:
            exit_code = exc.code if isinstance(exc.code, int) else 1
        for function in at_exit:
            try:
                function()
            except Exception as exc:  # as Python does at exit: said, the status kept
                print(f"Exception ignored in atexit callback: {exc!r}", file=stderr)
    finally:
        saved.restore()
        output.close()
    return exit_code, stderr.getvalue()


def _write(path: Path, value: object) -> str:
    path.write_text(json.dumps(value))
    return str(path)


@dataclass
class _Saved:
    """What a run of the command changes in this process, to put back."""

    stdout: t.Any
    stderr: t.Any
    argv: list[str]
    register: t.Any
    loggers: dict[str, tuple[list[logging.Handler], int, bool, bool]]
    signals: dict[int, t.Any]

    @classmethod
    def take(cls) -> _Saved:
        from tap_cube import stopping

        return cls(
            sys.stdout,
            sys.stderr,
            sys.argv,
            atexit.register,
            {name: _logger_settings(logger) for name, logger in _loggers()},
            {signum: signal.getsignal(signum) for signum in stopping.STOP_SIGNALS},
        )

    def restore(self) -> None:
        from tap_cube import stopping

        sys.stdout, sys.stderr, sys.argv = self.stdout, self.stderr, self.argv
        atexit.register = self.register
        for signum in stopping.STOP_SIGNALS:
            signal.signal(signum, self.signals[signum])
        for name, logger in _loggers():
            handlers, level, disabled, propagate = self.loggers.get(name, ([], 0, False, True))
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.disabled, logger.propagate = disabled, propagate


def _loggers() -> list[tuple[str, logging.Logger]]:
    found = [(name, logger) for name, logger in logging.root.manager.loggerDict.items()]
    return [("", logging.root)] + [(n, lg) for n, lg in found if isinstance(lg, logging.Logger)]


def _logger_settings(logger: logging.Logger) -> tuple[list[logging.Handler], int, bool, bool]:
    return list(logger.handlers), logger.level, logger.disabled, logger.propagate


# --- the target -----------------------------------------------------------------------------


@dataclass
class Row:
    record: dict[str, t.Any]
    deleted_at: str | None
    #: The run whose RECORD wrote it, when the RECORD had a version (ACTIVATE_VERSION).
    version: int | None
    #: Whether the tap answers for this row's deletion (see the module's docstring).
    tracked: bool


@dataclass
class Table:
    rows: dict[Key, Row] = field(default_factory=dict)
    #: The run from which the tap answers for rows loaded here (None: not yet).
    tracked_from: int | None = None


class ModelTarget:
    """Singer messages loaded as target-postgres loads them: a table per stream name,
    upsert on the key properties, `_sdc_deleted_at` kept (a soft delete), and
    ACTIVATE_VERSION marking the rows of older versions deleted. Versions are taken as
    the run that sent them: real runs are seconds apart, so each has a newer one."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}
        self.destination: str | None = None

    def table(self, name: str) -> Table:
        return self.tables.setdefault(name, Table())

    def begin_run(self, name: str) -> Table:
        """The table a run sends to; a new destination answers for nothing yet."""
        table = self.table(name)
        if name != self.destination:
            table.tracked_from = None
            for row in table.rows.values():
                row.tracked = False
            self.destination = name
        return table

    def load(self, messages: list[Message], run: int) -> None:
        keys: dict[str, list[str]] = {}
        for message in messages:
            kind = message["type"]
            if kind == "SCHEMA":
                keys[message["stream"]] = message["key_properties"]
            elif kind == "RECORD":
                self._upsert(message, keys[message["stream"]], run)
            elif kind == "ACTIVATE_VERSION":
                for row in self.table(message["stream"]).rows.values():
                    if row.version is not None and row.version < run and row.deleted_at is None:
                        row.deleted_at = "ACTIVATE_VERSION"

    def _upsert(self, message: Message, key_properties: list[str], run: int) -> None:
        table = self.table(message["stream"])
        record = dict(message["record"])
        deleted_at = record.pop("_sdc_deleted_at", None)
        table.rows[tuple(record[name] for name in key_properties)] = Row(
            record,
            deleted_at,
            run if message.get("version") is not None else None,
            tracked=table.tracked_from is not None,
        )


# --- the sequences ----------------------------------------------------------------------------

ASSIGNMENT = st.sampled_from(sorted(ASSIGNMENTS))
END = st.sampled_from(["end", "start"])
#: Changes on the server before a run: customers added or removed after the last one or
#: before the first one (removed and added again at the same end, a customer comes back
#: as it was); the customer at a position changed, or changed back to what it was at
#: first; pages served with `count` or without it.
SERVER_CHANGES = st.lists(
    st.one_of(
        st.tuples(st.just("add"), ASSIGNMENT, st.integers(1, 3), END),
        st.tuples(st.just("remove"), ASSIGNMENT, st.integers(1, 3), END),
        st.tuples(
            st.just("change"), ASSIGNMENT, st.integers(0, MOST - 1), st.sampled_from(CHANGES)
        ),
        st.tuples(st.just("change back"), ASSIGNMENT, st.integers(0, MOST - 1)),
        st.tuples(st.just("pages with count"), st.booleans()),
    ),
    max_size=3,
)
#: Settings changed before a run (the others stay as they were).
SETTING_CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "detect_deletions": st.booleans(),
        "skip_unchanged": st.booleans(),
        "alias": st.booleans(),
        "timezone": st.sampled_from(ZONES),
        "activate_versions": st.booleans(),
    },
)
#: How a run is stopped: not; a 400 on page N of an assignment; the output closed after N
#: records (the target stopped).
STOPS = st.one_of(
    st.none(),
    st.none(),
    st.tuples(st.just("fault"), ASSIGNMENT, st.integers(1, 4)),
    st.tuples(st.just("output"), st.integers(0, 2 * MOST)),
)
_catalog: dict[str, t.Any] = {}


@dataclass(frozen=True)
class Settings:
    detect_deletions: bool = True
    skip_unchanged: bool = False
    #: Whether an alias map loads `customers` as `cube_customers`.
    alias: bool = False
    timezone: str = ZONES[0]
    #: The SDK's emit_activate_version_messages.
    activate_versions: bool = False

    @property
    def table(self) -> str:
        return ALIAS if self.alias else TABLE

    def config(self, sim: CubeSimulator) -> dict[str, t.Any]:
        return config_for(
            sim,
            sorted(ASSIGNMENTS),
            max_deletion_share=1,
            detect_deletions=self.detect_deletions,
            skip_unchanged=self.skip_unchanged,
            timezone=self.timezone,
            stream_maps={TABLE: {"__alias__": ALIAS}} if self.alias else None,
            emit_activate_version_messages=self.activate_versions or None,
        )


class RunSequences(RuleBasedStateMachine):
    """Each step: changes on the server and in the settings, then a run, stopped or
    not, given the state Meltano kept (or that state wrapped, as `meltano state get`
    prints it)."""

    def __init__(self) -> None:
        super().__init__()
        assignments = [plain_assignment(a, count) for a, count in ASSIGNMENTS.items()]
        self.sim = CubeSimulator(
            assignments, token=TOKEN, page_size=PAGE_SIZE, next_style="same"
        ).start()
        self.settings = Settings()
        self.target = ModelTarget()
        self.state: dict[str, t.Any] | None = None
        self.runs = 0
        self.originals: dict[tuple[int, str], dict[str, t.Any]] = {}
        self._expected: dict[str, dict[Key, dict[str, t.Any]]] = {}

    def teardown(self) -> None:
        self.sim.stop()

    @rule(server=SERVER_CHANGES, settings=SETTING_CHANGES, stop=STOPS, wrapped=st.booleans())
    def run(
        self,
        server: list[tuple[t.Any, ...]],
        settings: dict[str, t.Any],
        stop: tuple[t.Any, ...] | None,
        wrapped: bool,
    ) -> None:
        for change in server:
            self._change_server(*change)
        self.settings = replace(self.settings, **settings)
        self.runs += 1
        table = self.target.begin_run(self.settings.table)
        given = {"singer_state": self.state} if wrapped and self.state else self.state
        records = None
        if stop is not None and stop[0] == "fault":
            self._fail_page(stop[1], stop[2])
        elif stop is not None:
            records = stop[1]
        done = run_tap_in_process(
            self.settings.config(self.sim), self.catalog(), given, records=records
        )
        self.sim.forget_scripted_faults()
        loaded = done.messages
        if done.output_closed:
            # The target stopped: it loaded what it confirmed, up to the last STATE it
            # read, and the pipeline failed, whatever the tap's exit status.
            confirmed = [i for i, m in enumerate(loaded) if m["type"] == "STATE"]
            loaded = loaded[: confirmed[-1] + 1] if confirmed else []
        states = [m["value"] for m in loaded if m["type"] == "STATE"]
        if states and self.settings.detect_deletions and table.tracked_from is None:
            table.tracked_from = self.runs  # the state has been through deletions on
        self.target.load(loaded, self.runs)
        if states:
            self.state = states[-1]  # what Meltano keeps: the last STATE the target read
        if done.output_closed:
            return
        if done.exit_code != 0:
            if stop is None:  # a refusal, never a crash
                assert done.last_line.startswith("tap-cube: error: "), done.stderr
                assert "unexpected" not in done.last_line, done.stderr
            return
        self._check(wrapped=wrapped and given is not None)

    def _change_server(self, kind: str, *change: t.Any) -> None:
        if kind == "pages with count":
            self.sim.counts = change[0]
            return
        assignment = change[0]
        ids = [str(c["crm__customer_id"]) for c in self.sim.customers(assignment)]
        if kind in ("add", "remove"):
            by, at = change[1:]
            count = len(ids) + (by if kind == "add" else -by)
            self.sim.set_count(assignment, min(MOST, max(1, count)), at=at)
            return
        customer = ids[change[1] % len(ids)]
        originals = self.originals.setdefault((assignment, customer), {})
        if kind == "change back":
            self.sim.update_customer(assignment, customer, originals)
            return
        name, value = change[2]
        served = self.sim.customers(assignment)[change[1] % len(ids)]
        originals.setdefault(name, served[name])
        self.sim.update_customer(assignment, customer, {name: value})

    def _fail_page(self, assignment: int, page: int) -> None:
        pages = -(-len(self.sim.customers(assignment)) // PAGE_SIZE)
        page = min(page, pages)
        path = f"/assignments/{assignment}/customers/"
        self.sim.fail_next(path if page == 1 else f"{path}?page={page}", 400, '{"detail": "Bad"}')

    def _check(self, *, wrapped: bool) -> None:
        """The target equals the server, as far as the tap answers for it (see the
        module's docstring)."""
        name = self.settings.table
        expected = self.expected()
        rows = self.target.table(name).rows
        for key, record in expected.items():
            row = rows.get(key)
            assert row is not None, f"{name}: live customer {key} was never loaded"
            assert row.deleted_at is None, f"{name}: live customer {key} is marked deleted"
            assert row.record == record, f"{name}: customer {key} has old values"
        if not (self.settings.detect_deletions and self.sim.counts):
            return
        gone = sorted(
            key
            for key, row in rows.items()
            if row.tracked and row.deleted_at is None and key not in expected
        )
        # One line each, so that hypothesis reports the two as separate failures.
        if wrapped:
            assert not gone, f"{name}: removed customers not marked deleted: {gone} (state wrapped)"
        assert not gone, f"{name}: removed customers not marked deleted: {gone}"
        for key in expected:
            rows[key].tracked = True

    # what the target must hold

    def expected(self) -> dict[Key, dict[str, t.Any]]:
        """The customers as a first run with these settings sends them, by key."""
        served = json.dumps(
            [self.sim.customers(a) for a in sorted(ASSIGNMENTS)] + [self.settings.timezone]
        )
        if served not in self._expected:
            config = Settings(detect_deletions=False, timezone=self.settings.timezone)
            fresh = run_tap_in_process(config.config(self.sim), self.catalog(), None)
            assert fresh.exit_code == 0, fresh.stderr
            self._expected = {served: _records(fresh.messages)}
        return self._expected[served]

    def catalog(self) -> dict[str, t.Any]:
        """The discovered catalog (the same for every machine), customers selected."""
        if not _catalog:
            discovered = _discover(Settings().config(self.sim))
            for entry in discovered["streams"]:
                for item in entry["metadata"]:
                    if item["breadcrumb"] == []:
                        item["metadata"]["selected"] = entry["tap_stream_id"] == TABLE
            _catalog.update(discovered)
        return _catalog


def _records(messages: list[Message]) -> dict[Key, dict[str, t.Any]]:
    target = ModelTarget()
    target.load(messages, 1)
    return {key: row.record for key, row in target.table(TABLE).rows.items()}


def _discover(config: dict[str, t.Any]) -> dict[str, t.Any]:
    with tempfile.TemporaryDirectory() as directory:
        args = ["--config", _write(Path(directory, "config.json"), config), "--discover"]
        output = _Output(None)
        exit_code, stderr = run_command(args, output)
    assert exit_code == 0, stderr
    return t.cast("dict[str, t.Any]", json.loads(bytes(output.data)))


RunSequences.TestCase.settings = settings(
    max_examples=examples(dev=6, ci=40),
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_run_sequences = RunSequences.TestCase


# --- sequences the machine found, kept as explicit cases --------------------------------------


def step(
    server: list[tuple[t.Any, ...]] | None = None,
    stop: tuple[t.Any, ...] | None = None,
    *,
    wrapped: bool = False,
    **settings: t.Any,
) -> dict[str, t.Any]:
    return {"server": server or [], "settings": settings, "stop": stop, "wrapped": wrapped}


FOUND = {
    # After a skip_unchanged run, an alias map sent 0 records to the new table.
    "an alias map after skip_unchanged": [step(skip_unchanged=True), step(alias=True)],
    # And taken away again: the old table missed what changed meanwhile.
    "an alias map taken away after skip_unchanged": [
        step(skip_unchanged=True, alias=True),
        step([("add", 7, 1, "start")], alias=False),
    ],
    # A customer loaded while deletions were off, and removed before they were on again.
    "a run with detect_deletions off": [
        step(),
        step([("add", 8, 2, "end")], detect_deletions=False),
        step([("remove", 8, 2, "end")], detect_deletions=True),
    ],
    # The SDK's ACTIVATE_VERSION with skip_unchanged: every unchanged row marked deleted.
    "emit_activate_version_messages with skip_unchanged": [
        step(skip_unchanged=True, activate_versions=True),
        step(),
    ],
    # The state as `meltano state get` prints it, taken as empty.
    "the state wrapped as meltano state get prints it": [
        step(),
        step([("remove", 7, 2, "end")], wrapped=True),
    ],
}


@pytest.mark.parametrize("steps", FOUND.values(), ids=FOUND.keys())
def test_a_sequence_the_machine_found(steps: list[dict[str, t.Any]]) -> None:
    machine = RunSequences()
    try:
        for arguments in steps:
            machine.run(**arguments)
    finally:
        machine.teardown()
