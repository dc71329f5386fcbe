"""End to end: the project's `meltano run tap-cube target-postgres` against the same tap
piped into the same loader with the loader's default settings.

Run by hand, not in CI, from the project root, with PostgreSQL on 127.0.0.1:5432::

    uv run python benchmarks/e2e.py              # 200,000 customers, each pipeline once
    uv run python benchmarks/e2e.py --repeat 3   # the median of three runs each
    uv run python benchmarks/e2e.py --profile    # also: CPU and memory per process
    uv run python benchmarks/e2e.py --set batch_size_rows=10000   # try another setting
    uv run python benchmarks/e2e.py --combinations   # also: several loader settings
    uv run python benchmarks/e2e.py --per-stream     # also: each stream `cube` loads
    uv run python benchmarks/e2e.py --loader-alone   # also: the loader alone, same settings

The two pipelines, run one after the other in each round (their order alternating from
round to round), each into a fresh database, each against a fresh simulator:

- `meltano run`: `meltano run tap-cube target-postgres` in the `simulator` environment
  of this project's meltano.yml, i.e. with its loader settings, selecting the
  `customers` stream (`TAP_CUBE__SELECT`). Meltano's discovery run is part of it.
- `pipe, loader defaults`: `tap-cube --catalog ... | target-postgres` with a loader
  config that holds the connection and nothing else. The catalog (customers only) comes
  from an untimed `--discover` run beforehand.

Both use the executables that `meltano install` put in `benchmarks/.meltano/` (installed
and compiled to bytecode by this script, untimed), so the tap, the loader and their
versions are the same: what differs is Meltano and the loader's settings. The data: 4
assignments x 50,000 customers with text, integer, date and boolean custom fields (`""`
among them) from the project's Cube simulator, running in this script's process with no
latency.

After each run the script checks, in PostgreSQL, that the table holds every customer
once, and that the two pipelines loaded identical rows: the same columns with the same
types, and the same checksum over all customer columns (the loader's `_sdc_*` columns
aside, which hold times). It also checks that `_sdc_extracted_at` and `_sdc_batched_at`
are set on every row. Wall time runs from starting the pipeline to its exit; CPU is that
of the pipeline's processes (PostgreSQL's server processes not included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from common import CLEARED_ENV, ROOT, progress, tail_lines
from machine import cpu_count, cpu_model
from measurement import measure
from provenance import source_state, version_of
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tap_cube.simulator import Assignment, CubeSimulator, CustomField

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

HERE = Path(__file__).resolve().parent
MELTANO_HOME = HERE / ".meltano"  # the plugins, installed once (ignored by git)
MELTANO = Path(sys.executable).with_name("meltano")
TOKEN = "sim-token"  # noqa: S105  # what the `simulator` environment sends; not a secret
SCHEMA = "cube"  # default_target_schema in meltano.yml
DEFAULT_SCHEMA = "melty"  # the loader's own default
STREAM = "customers"
#: The streams tap-cube offers when only assignment_ids is set, as in the `cube`
#: environment: a plain `meltano run` loads them all.
CUBE_STREAMS = ("customers", "callflow_customers", "customer_custom_fields", "campaigns")
ASSIGNMENT_IDS = [1, 2, 3, 4]
PER_ASSIGNMENT = 50_000
FIELDS = [
    CustomField(64, "Adresse", "text"),
    CustomField(70, "Antall i husstanden", "integer"),
    CustomField(71, "Fødselsdato", "date"),
    CustomField(72, "Reservert mot telefonsalg", "boolean"),
]
TARGET_RATIO = 2.5  # the pipe's wall time over meltano run's
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: The loader settings that change its speed, shown in the report.
SPEED_SETTINGS = ("use_copy", "validate_records", "batch_size_rows")
#: Settings a developer may have exported for their own runs; none reach a pipeline.
FOREIGN_PREFIXES = ("MELTANO_", "TAP_CUBE_", "TARGET_POSTGRES_", "TARGET_CSV_")

MELTANO_RUN = "meltano run"
POSTGRES = "PostgreSQL server (all sessions)"
PIPE = "pipe, loader defaults"


# --------------------------------------------------------------------------- setup


def base_env() -> dict[str, str]:
    """This environment without Python flags that slow start-up or foreign settings."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in CLEARED_ENV and not key.startswith(FOREIGN_PREFIXES)
    }


def meltano_env(extra: dict[str, str]) -> dict[str, str]:
    env = base_env()
    env.update(
        MELTANO_PROJECT_ROOT=str(ROOT),
        MELTANO_SYS_DIR_ROOT=str(MELTANO_HOME),
        MELTANO_ENVIRONMENT="simulator",
        MELTANO_CLI_LOG_LEVEL="info",
    )
    env.update(extra)
    return env


def install_plugins(workdir: Path) -> None:
    """`meltano install` into benchmarks/.meltano; cheap when the plugins are there."""
    if not MELTANO.exists():
        sys.exit(f"{MELTANO} not found: run `uv sync` first (meltano is in the dev group)")
    progress(f"meltano install into {MELTANO_HOME} (untimed)")
    log = workdir / "install.log"
    with log.open("wb") as out:
        done = subprocess.run(  # noqa: S603  # argv built here
            [str(MELTANO), "install"],
            cwd=ROOT,
            env=meltano_env({}),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        sys.exit("meltano install failed:\n" + "\n".join(tail_lines(log, 30)))
    # The installers write no bytecode; compiled now (a no-op once done), it does not
    # fall on whichever timed run happens to be the first.
    pythons = [plugin_python("extractors", "tap-cube"), plugin_python("loaders", "target-postgres")]
    for python in [*pythons, Path(sys.executable)]:
        subprocess.run(  # noqa: S603  # argv built here
            [str(python), "-m", "compileall", "-q", "-j", "0", str(python.parent.parent / "lib")],
            env=base_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )


def plugin_python(kind: str, name: str) -> Path:
    return MELTANO_HOME / kind / name / "venv" / "bin" / "python"


def plugin_executable(kind: str, name: str) -> Path:
    return MELTANO_HOME / kind / name / "venv" / "bin" / name


def plugin_version(kind: str, name: str, package: str) -> str:
    python = plugin_python(kind, name)
    found = subprocess.run(  # noqa: S603  # argv built here
        [
            str(python),
            "-c",
            f"from importlib import metadata; print(metadata.version({package!r}))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or "?"


@dataclass(frozen=True)
class Postgres:
    """The server the pipelines load into, and a way to make and drop databases there."""

    dsn: str

    def connection_settings(self, database: str) -> dict[str, str]:
        """target-postgres's connection settings (it insists on a password, even "")."""
        params = conninfo_to_dict(self.dsn)
        return {
            "host": str(params.get("host") or "127.0.0.1"),
            "port": str(params.get("port") or 5432),
            "user": str(params.get("user") or "postgres"),
            "password": str(params.get("password") or ""),
            "database": database,
        }

    def create(self) -> str:
        name = f"tap_cube_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop(self, name: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def connect(self, database: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(make_conninfo(self.dsn, dbname=database))


@contextlib.contextmanager
def simulator(per_assignment: int) -> Iterator[CubeSimulator]:
    """A fresh simulator for one run, so that no run finds pages rendered by another."""
    sim = CubeSimulator(
        [Assignment(a, per_assignment, custom_fields=FIELDS) for a in ASSIGNMENT_IDS],
        token=TOKEN,
        next_style="same",
    )
    with sim:
        yield sim


def discover_catalog(tap: Path, config: Path, workdir: Path) -> Path:
    """A catalog of the tap's streams with only customers selected, as Meltano makes it."""
    found = subprocess.run(  # noqa: S603  # argv built here
        [str(tap), "--config", str(config), "--discover"],
        env=base_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        sys.exit(f"tap-cube --discover failed:\n{found.stderr.decode(errors='replace')}")
    catalog = json.loads(found.stdout)
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] == STREAM
    path = workdir / "catalog.json"
    path.write_text(json.dumps(catalog))
    return path


# --------------------------------------------------------------------------- pipelines


@dataclass
class Pipeline:
    name: str
    argv: list[str]
    env: dict[str, str]
    schema: str


def meltano_pipeline(
    sim: CubeSimulator,
    pg: Postgres,
    database: str,
    overrides: dict[str, str],
    streams: Sequence[str] | None = (STREAM,),
) -> Pipeline:
    """`meltano run` selecting `streams`; None selects nothing, so every stream loads."""
    env = {
        "TAP_CUBE_API_URL": sim.url,
        "TAP_CUBE_ASSIGNMENT_IDS": json.dumps(ASSIGNMENT_IDS),
        **{f"TARGET_POSTGRES_{k.upper()}": v for k, v in pg.connection_settings(database).items()},
        **{f"TARGET_POSTGRES_{k.upper()}": v for k, v in overrides.items()},
    }
    if streams is not None:
        env["TAP_CUBE__SELECT"] = json.dumps([f"{stream}.*" for stream in streams])
    argv = [str(MELTANO), "run", "tap-cube", "target-postgres"]
    return Pipeline(MELTANO_RUN, argv, meltano_env(env), SCHEMA)


def pipe_pipeline(sim: CubeSimulator, pg: Postgres, database: str, workdir: Path) -> Pipeline:
    tap = plugin_executable("extractors", "tap-cube")
    target = plugin_executable("loaders", "target-postgres")
    tap_config = workdir / "tap-config.json"
    tap_config.write_text(
        json.dumps({"api_url": sim.url, "auth_token": TOKEN, "assignment_ids": ASSIGNMENT_IDS})
    )
    catalog = discover_catalog(tap, tap_config, workdir)
    target_config = workdir / "target-config.json"
    settings: dict[str, object] = dict(pg.connection_settings(database))
    settings["port"] = int(str(settings["port"]))
    target_config.write_text(json.dumps(settings))
    script = 'set -o pipefail; "$0" --config "$1" --catalog "$2" | "$3" --config "$4"'
    argv = ["bash", "-c", script, str(tap), str(tap_config), str(catalog)]
    argv += [str(target), str(target_config)]
    return Pipeline(PIPE, argv, base_env(), DEFAULT_SCHEMA)


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class Loaded:
    """What one pipeline left in its database."""

    rows: int
    distinct_keys: int
    without_metadata: int  # rows lacking _sdc_extracted_at or _sdc_batched_at
    columns: tuple[tuple[str, str], ...]  # customer columns and their types, by name
    checksum: str


def count_rows(pg: Postgres, database: str, table: str) -> int:
    with pg.connect(database) as conn:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCHEMA, table))
        found = conn.execute(query).fetchone()
    return 0 if found is None else int(str(found[0]))


def loaded(pg: Postgres, database: str, schema: str) -> Loaded:
    with pg.connect(database) as conn:
        columns = tuple(
            (str(name), str(kind))
            for name, kind in conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s "
                "AND column_name NOT LIKE '\\_sdc\\_%%' "
                "ORDER BY column_name",
                (schema, STREAM),
            )
        )
        table = sql.Identifier(schema, STREAM)
        names = sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns)
        query = sql.SQL(
            "SELECT count(*), count(DISTINCT (assignment_id, crm__customer_id)), "
            "count(*) FILTER (WHERE _sdc_extracted_at IS NULL OR _sdc_batched_at IS NULL), "
            "md5(string_agg(ROW({names})::text, E'\\n' "
            "ORDER BY assignment_id, crm__customer_id)) FROM {table}"
        ).format(names=names, table=table)
        found = conn.execute(query).fetchone()
    assert found is not None
    rows, keys, bare, checksum = found
    return Loaded(int(str(rows)), int(str(keys)), int(str(bare)), columns, str(checksum))


# --------------------------------------------------------------------------- measuring


@dataclass
class Timing:
    wall: float
    cpu: float
    peak_rss_kib: int
    #: CPU seconds and peak RSS (MiB) per kind of process, with --profile.
    cpu_by_process: dict[str, float] = field(default_factory=dict)
    peak_mib_by_process: dict[str, float] = field(default_factory=dict)


class ProcessSampler:
    """CPU seconds and peak RSS of every process below one, by kind, sampled from /proc.

    A process's figures are from its samples, so up to one interval of its work (and a
    peak shorter than that) may be missed.
    """

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self._root = root
        self._interval = interval
        self._last: dict[int, tuple[str, float]] = {}
        self._peak_pages: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._postgres_start = 0.0

    def start(self) -> None:
        self._postgres_start = postgres_cpu()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> tuple[dict[str, float], dict[str, float]]:
        """CPU seconds by kind of process, and the peak RSS (MiB) of any one of a kind."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        totals: dict[str, float] = {}
        for kind, seconds in self._last.values():
            totals[kind] = totals.get(kind, 0.0) + seconds
        totals[POSTGRES] = postgres_cpu() - self._postgres_start
        page_mib = os.sysconf("SC_PAGE_SIZE") / (1 << 20)
        peaks = {kind: pages * page_mib for kind, pages in self._peak_pages.items()}
        return totals, peaks

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            for pid in descendants(self._root):
                if pid == self._root:
                    continue
                sample = process_sample(pid)
                if sample is not None:
                    kind, cpu, rss_pages = sample
                    self._last[pid] = (kind, cpu)
                    self._peak_pages[kind] = max(self._peak_pages.get(kind, 0), rss_pages)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def process_sample(pid: int) -> tuple[str, float, int] | None:
    """(name, CPU seconds, RSS pages) of a process; the name is its command's, as `ps`
    shows it."""
    try:
        name, rest = Path(f"/proc/{pid}/stat").read_text().split(" (", 1)[1].rsplit(")", 1)
    except (OSError, IndexError, ValueError):
        return None
    fields = rest.split()  # fields[0] is the stat file's field 3
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return name, cpu, int(fields[21])


def postgres_cpu() -> float:
    """CPU seconds of all PostgreSQL processes so far (ended sessions counted by the
    postmaster's children totals)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            name, rest = (entry / "stat").read_text().split(" (", 1)[1].rsplit(")", 1)
            if not name.startswith("postgres"):
                continue
            fields = rest.split()
            # utime, stime, and cutime, cstime: sessions that ended are in the latter.
            total += sum(int(f) for f in fields[11:15]) / ticks
    return total


def time_pipeline(pipeline: Pipeline, log: Path, *, timeout: float, profile: bool) -> Timing:
    # The simulator runs in threads of this process, so every child process of this
    # process is the pipeline's.
    sampler = ProcessSampler(os.getpid()) if profile else None
    if sampler is not None:
        sampler.start()
    try:
        sample = measure(
            pipeline.argv, read=None, timeout=timeout, log=log, env=pipeline.env, server_pid=None
        )
    finally:
        by_process, peaks = sampler.stop() if sampler is not None else ({}, {})
    if sample.returncode != 0:
        sys.exit(
            f"{pipeline.name} failed (exit {sample.returncode}); the last lines of {log}:\n"
            + "\n".join(tail_lines(log, 30))
        )
    return Timing(sample.wall, sample.cpu, sample.peak_rss_kib, by_process, peaks)


# --------------------------------------------------------------------------- the runs


@dataclass
class Outcome:
    """Every round's timing of one pipeline, and what each run loaded."""

    pipeline: str
    timings: list[Timing] = field(default_factory=list)
    loads: list[Loaded] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(t.wall for t in self.timings)

    @property
    def cpu(self) -> float:
        return statistics.median(t.cpu for t in self.timings)

    @property
    def peak_mib(self) -> float:
        return max(t.peak_rss_kib for t in self.timings) / 1024

    def cpu_by_process(self) -> dict[str, float]:
        kinds = {kind for t in self.timings for kind in t.cpu_by_process}
        return {
            kind: statistics.median(t.cpu_by_process.get(kind, 0.0) for t in self.timings)
            for kind in sorted(kinds)
        }

    def peak_mib_by_process(self) -> dict[str, float]:
        kinds = {kind for t in self.timings for kind in t.peak_mib_by_process}
        return {
            kind: max(t.peak_mib_by_process.get(kind, 0.0) for t in self.timings)
            for kind in sorted(kinds)
        }


def run_rounds(
    pg: Postgres,
    workdir: Path,
    *,
    per_assignment: int,
    repeat: int,
    overrides: dict[str, str],
    timeout: float,
    profile: bool,
) -> dict[str, Outcome]:
    outcomes = {name: Outcome(name) for name in (MELTANO_RUN, PIPE)}
    for attempt in range(repeat):
        # Alternating the order spreads a slow spell of a shared machine over both.
        order = [MELTANO_RUN, PIPE] if attempt % 2 == 0 else [PIPE, MELTANO_RUN]
        for name in order:
            database = pg.create()
            try:
                with simulator(per_assignment) as sim:
                    pipeline = (
                        meltano_pipeline(sim, pg, database, overrides)
                        if name == MELTANO_RUN
                        else pipe_pipeline(sim, pg, database, workdir)
                    )
                    log = workdir / f"{name.split(',')[0].replace(' ', '-')}-{attempt + 1}.log"
                    timing = time_pipeline(pipeline, log, timeout=timeout, profile=profile)
                result = loaded(pg, database, pipeline.schema)
            finally:
                pg.drop(database)
            outcomes[name].timings.append(timing)
            outcomes[name].loads.append(result)
            progress(
                f"round {attempt + 1} of {repeat}: {name}: {timing.wall:.2f} s, "
                f"{result.rows:,} rows, CPU {timing.cpu:.1f} s"
            )
    return outcomes


@dataclass(frozen=True)
class StreamCost:
    streams: str  # what was selected
    rows: dict[str, int]  # rows loaded, per table
    wall: float


def run_per_stream(
    pg: Postgres,
    workdir: Path,
    *,
    per_assignment: int,
    overrides: dict[str, str],
    timeout: float,
) -> list[StreamCost]:
    """`meltano run` with each stream the `cube` environment loads alone, then all."""
    costs = []
    selections: list[tuple[str, Sequence[str] | None]] = [(s, [s]) for s in CUBE_STREAMS]
    selections.append(("all (no selection)", None))
    for title, streams in selections:
        database = pg.create()
        try:
            with simulator(per_assignment) as sim:
                pipeline = meltano_pipeline(sim, pg, database, overrides, streams)
                log = workdir / f"per-stream-{title.split()[0]}.log"
                timing = time_pipeline(pipeline, log, timeout=timeout, profile=False)
            rows = {table: count_rows(pg, database, table) for table in streams or CUBE_STREAMS}
        finally:
            pg.drop(database)
        costs.append(StreamCost(title, rows, timing.wall))
        progress(f"per stream: {title}: {timing.wall:.2f} s, {sum(rows.values()):,} rows")
    return costs


def per_stream_table(costs: list[StreamCost]) -> list[str]:
    lines = [
        "#### `meltano run` per stream (the streams the `cube` environment loads)",
        "",
        "| Streams selected | Rows loaded | Wall (s) |",
        "|---|---:|---:|",
    ]
    for cost in costs:
        rows = ", ".join(f"{table} {count:,}" for table, count in cost.rows.items())
        lines.append(f"| {cost.streams} | {rows} | {cost.wall:.2f} |")
    return lines


#: Loader settings tried by --combinations: the loader's defaults spelled out, each
#: change alone, and together with growing batches (meltano.yml's choice among them).
COMBINATIONS: tuple[dict[str, str], ...] = (
    {"use_copy": "false", "validate_records": "true", "batch_size_rows": "10000"},
    {"use_copy": "true", "validate_records": "true", "batch_size_rows": "10000"},
    {"use_copy": "false", "validate_records": "false", "batch_size_rows": "10000"},
    {"use_copy": "true", "validate_records": "false", "batch_size_rows": "10000"},
    {"use_copy": "true", "validate_records": "false", "batch_size_rows": "50000"},
    {"use_copy": "true", "validate_records": "false", "batch_size_rows": "100000"},
)


@dataclass
class CombinationCost:
    settings: dict[str, str]
    rows: list[int] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(t.wall for t in self.timings)

    @property
    def loader_peak_mib(self) -> float | None:
        """The loader's own peak RSS, when sampled (--profile)."""
        peaks = [t.peak_mib_by_process.get("target-postgres") for t in self.timings]
        found = [peak for peak in peaks if peak is not None]
        return max(found) if found else None


def run_combinations(
    pg: Postgres,
    workdir: Path,
    *,
    per_assignment: int,
    repeat: int,
    timeout: float,
    profile: bool,
) -> list[CombinationCost]:
    """`meltano run` (customers only) with each combination of loader settings."""
    costs = [CombinationCost(settings) for settings in COMBINATIONS]
    for attempt in range(repeat):
        for number, cost in enumerate(costs, 1):
            database = pg.create()
            try:
                with simulator(per_assignment) as sim:
                    pipeline = meltano_pipeline(sim, pg, database, cost.settings)
                    log = workdir / f"combination-{number}-{attempt + 1}.log"
                    timing = time_pipeline(pipeline, log, timeout=timeout, profile=profile)
                rows = count_rows(pg, database, STREAM)
            finally:
                pg.drop(database)
            cost.rows.append(rows)
            cost.timings.append(timing)
            shown = ", ".join(f"{k}={v}" for k, v in cost.settings.items())
            progress(
                f"round {attempt + 1} of {repeat}: combination {shown}: "
                f"{timing.wall:.2f} s, {rows:,} rows"
            )
    return costs


def run_loader_alone(
    pg: Postgres,
    workdir: Path,
    *,
    per_assignment: int,
    repeat: int,
    timeout: float,
    profile: bool,
) -> list[CombinationCost]:
    """target-postgres alone, reading the tap's output from a file, with each combination.

    Without Meltano and the tap competing for the CPUs, what a setting saves the loader
    stands out of the noise of a shared machine.
    """
    output = workdir / "tap-output.jsonl"
    tap = plugin_executable("extractors", "tap-cube")
    with simulator(per_assignment) as sim:
        tap_config = workdir / "tap-config.json"
        tap_config.write_text(
            json.dumps({"api_url": sim.url, "auth_token": TOKEN, "assignment_ids": ASSIGNMENT_IDS})
        )
        catalog = discover_catalog(tap, tap_config, workdir)
        with output.open("wb") as out:
            subprocess.run(  # noqa: S603  # argv built here
                [str(tap), "--config", str(tap_config), "--catalog", str(catalog)],
                env=base_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.DEVNULL,
                check=True,
            )
    target = plugin_executable("loaders", "target-postgres")
    costs = [CombinationCost(settings) for settings in COMBINATIONS]
    for attempt in range(repeat):
        for number, cost in enumerate(costs, 1):
            database = pg.create()
            try:
                config: dict[str, object] = dict(pg.connection_settings(database))
                config["port"] = int(str(config["port"]))
                config["default_target_schema"] = SCHEMA
                config["use_copy"] = cost.settings["use_copy"] == "true"
                config["validate_records"] = cost.settings["validate_records"] == "true"
                config["batch_size_rows"] = int(cost.settings["batch_size_rows"])
                target_config = workdir / "loader-alone-config.json"
                target_config.write_text(json.dumps(config))
                argv = ["bash", "-c", '"$0" --config "$1" < "$2"', str(target)]
                argv += [str(target_config), str(output)]
                log = workdir / f"loader-alone-{number}-{attempt + 1}.log"
                pipeline = Pipeline("loader alone", argv, base_env(), SCHEMA)
                timing = time_pipeline(pipeline, log, timeout=timeout, profile=profile)
                # The loader is the largest process here (beside a shell).
                timing.peak_mib_by_process.setdefault("target-postgres", timing.peak_rss_kib / 1024)
                rows = count_rows(pg, database, STREAM)
            finally:
                pg.drop(database)
            cost.rows.append(rows)
            cost.timings.append(timing)
            shown = ", ".join(f"{k}={v}" for k, v in cost.settings.items())
            progress(
                f"round {attempt + 1} of {repeat}: loader alone, {shown}: "
                f"{timing.wall:.2f} s, {rows:,} rows"
            )
    return costs


def combinations_table(costs: list[CombinationCost], title: str) -> list[str]:
    lines = [
        f"#### {title} with other loader settings (median wall time)",
        "",
        "| use_copy | validate_records | batch_size_rows | Rows loaded | Wall (s) "
        "| Wall of every run (s) | Loader's peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for cost in costs:
        s = cost.settings
        peak = cost.loader_peak_mib
        lines.append(
            f"| {s['use_copy']} | {s['validate_records']} | {int(s['batch_size_rows']):,} "
            f"| {min(cost.rows):,} | {cost.wall:.2f} "
            f"| {', '.join(f'{t.wall:.1f}' for t in cost.timings)} "
            f"| {'-' if peak is None else f'{peak:.0f}'} |"
        )
    return lines


def problems(outcomes: dict[str, Outcome], total: int) -> list[str]:
    """What is wrong with what the pipelines loaded; empty when all is as it should be."""
    found: list[str] = []
    runs = [(o.pipeline, load) for o in outcomes.values() for load in o.loads]
    for name, load in runs:
        if load.rows != total or load.distinct_keys != total:
            found.append(f"{name} loaded {load.rows:,} rows ({load.distinct_keys:,} keys)")
        if load.without_metadata:
            found.append(f"{name}: {load.without_metadata:,} rows lack _sdc_ metadata")
    first_name, first = runs[0]
    for name, load in runs[1:]:
        if load.columns != first.columns:
            found.append(f"{name} and {first_name} loaded different columns or types")
        elif load.checksum != first.checksum:
            found.append(f"{name} and {first_name} loaded different rows")
    return found


def loader_settings(overrides: dict[str, str], workdir: Path) -> dict[str, object]:
    """The speed settings meltano.yml (with --set) gives target-postgres."""
    env = meltano_env({f"TARGET_POSTGRES_{k.upper()}": v for k, v in overrides.items()})
    env["MELTANO_CLI_LOG_LEVEL"] = "warning"
    found = subprocess.run(  # noqa: S603  # argv built here
        [str(MELTANO), "config", "print", "target-postgres"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        (workdir / "config.log").write_text(found.stderr)
        sys.exit(f"meltano config print target-postgres failed:\n{found.stderr[-2000:]}")
    config = json.loads(found.stdout)
    return {key: config[key] for key in SPEED_SETTINGS if config.get(key) is not None}


def describe_settings(settings: dict[str, object]) -> str:
    shown = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    return ", ".join(shown) or "the loader's defaults"


# --------------------------------------------------------------------------- report


def report(
    outcomes: dict[str, Outcome],
    *,
    total: int,
    per_assignment: int,
    settings: dict[str, object],
    repeat: int,
    command: str,
    elapsed: float,
    server_version: str,
) -> str:
    melt, pipe = outcomes[MELTANO_RUN], outcomes[PIPE]
    ratio = pipe.wall / melt.wall
    met = "met" if ratio >= TARGET_RATIO else "**not met**"
    load = melt.loads[0]
    lines = [
        f"#### End to end: {total:,} customers into PostgreSQL",
        "",
        f"- Machine: {cpu_count()} CPUs, {cpu_model()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, PostgreSQL {server_version} on the same machine",
        f"- Versions: tap-cube {version_of('tap-cube')} at {source_state()}, "
        f"meltano {version_of('meltano')}, meltanolabs-target-postgres "
        f"{plugin_version('loaders', 'target-postgres', 'meltanolabs-target-postgres')} "
        f"(singer-sdk "
        f"{plugin_version('loaders', 'target-postgres', 'singer-sdk')})",
        f"- Command: `{command}` ({repeat} run(s) per pipeline, median wall time; "
        f"the benchmark took {elapsed:.0f} s)",
        f"- Data: {len(ASSIGNMENT_IDS)} assignments x {per_assignment:,} customers with "
        "text, integer, date and boolean custom fields, from the project's simulator "
        "(no latency); only the `customers` stream",
        "",
        "| Pipeline | Loader settings | Rows loaded | Wall (s) | Rows/s | CPU (s) "
        "| Peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    rows = (
        (melt, "`meltano run tap-cube target-postgres`", describe_settings(settings)),
        (pipe, "`tap-cube \\| target-postgres`", "the loader's defaults"),
    )
    for outcome, title, loader in rows:
        lines.append(
            f"| {title} | {loader} | {outcome.loads[0].rows:,} | {outcome.wall:.2f} | "
            f"{total / outcome.wall:,.0f} | {outcome.cpu:.1f} | {outcome.peak_mib:.0f} |"
        )
    lines += [
        "",
        f"`meltano run` is **{ratio:.2f}x** as fast as the pipe with the loader's defaults "
        f"(target: {TARGET_RATIO}x, {met}).",
        "",
        "Notes:",
        "",
        f"- Wall times of every run (s): {MELTANO_RUN}: "
        + ", ".join(f"{t.wall:.2f}" for t in melt.timings)
        + f"; {PIPE}: "
        + ", ".join(f"{t.wall:.2f}" for t in pipe.timings)
        + ".",
        f"- Both loaded the same {load.rows:,} rows: {len(load.columns)} customer columns "
        f"with the same types, the same checksum over them (md5 {load.checksum}), every "
        "row with `_sdc_extracted_at` and `_sdc_batched_at`.",
        "- `meltano run` includes Meltano's start-up and its discovery run; the pipe's "
        "catalog was made by an untimed `--discover` beforehand.",
        "- CPU is the pipeline's own processes (Meltano, tap, loader), not PostgreSQL's; "
        "peak RSS is that of its largest process.",
    ]
    by_process = {name: o.cpu_by_process() for name, o in outcomes.items()}
    peaks = {name: o.peak_mib_by_process() for name, o in outcomes.items()}
    if any(by_process.values()):
        kinds = sorted({kind for found in by_process.values() for kind in found if kind != "bash"})
        lines += [
            "",
            "#### Where the time goes: each process's CPU seconds (median) and peak RSS",
            "",
            f"| Process | CPU (s), {MELTANO_RUN} | CPU (s), {PIPE} "
            f"| Peak RSS (MiB), {MELTANO_RUN} | Peak RSS (MiB), {PIPE} |",
            "|---|---:|---:|---:|---:|",
        ]
        for kind in kinds:
            cpu = [f"{by_process[name].get(kind, 0.0):.1f}" for name in (MELTANO_RUN, PIPE)]
            rss = [
                f"{peaks[name][kind]:.0f}" if kind in peaks[name] else "-"
                for name in (MELTANO_RUN, PIPE)
            ]
            lines.append(f"| {kind} | {' | '.join(cpu + rss)} |")
        lines += [
            "",
            "Sampled from /proc every 0.1 s; a kind's CPU adds up all its processes (tap-cube "
            "runs twice under Meltano: discovery, then the sync). PostgreSQL's figure counts "
            "every session on the server during the run, other users' included.",
        ]
    return "\n".join(lines)


def parse_override(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        msg = f"expected NAME=VALUE, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/e2e.py",
        description=(
            "Time the project's `meltano run tap-cube target-postgres` against "
            "`tap-cube | target-postgres` with the loader's defaults."
        ),
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per pipeline; median shown")
    parser.add_argument("--quick", action="store_true", help="a tenth of the customers")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also show each process's CPU seconds and peak RSS (sampling /proc every "
        "0.1 s costs a few per cent of one core)",
    )
    parser.add_argument(
        "--per-stream",
        action="store_true",
        help="also time `meltano run` with each stream alone and with all of them",
    )
    parser.add_argument(
        "--combinations",
        action="store_true",
        help="also time `meltano run` with several combinations of loader settings",
    )
    parser.add_argument(
        "--loader-alone",
        action="store_true",
        help="also time target-postgres alone (input from a file) with those combinations",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=parse_override,
        default=[],
        metavar="NAME=VALUE",
        help="a loader setting for `meltano run` (as TARGET_POSTGRES_<NAME>), e.g. "
        "use_copy=false; repeatable",
    )
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("TAP_CUBE_TEST_PG_DSN", DEFAULT_DSN),
        help="a PostgreSQL database to connect to for creating the benchmark's databases "
        f"(default: TAP_CUBE_TEST_PG_DSN or {DEFAULT_DSN})",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds before a run is killed"
    )
    parser.add_argument("--keep", action="store_true", help="keep the configs and logs")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    started = time.perf_counter()
    command = shlex.join(["uv", "run", "python", "benchmarks/e2e.py", *sys.argv[1:]])
    per_assignment = PER_ASSIGNMENT // (10 if args.quick else 1)
    total = per_assignment * len(ASSIGNMENT_IDS)
    pg = Postgres(args.pg_dsn)
    try:
        with psycopg.connect(pg.dsn, connect_timeout=5) as conn:
            server_version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    except psycopg.Error as exc:
        sys.exit(f"cannot connect to PostgreSQL ({exc}); start it or pass --pg-dsn")
    overrides = dict(args.overrides)
    workdir = Path(tempfile.mkdtemp(prefix="tap-cube-e2e-"))
    try:
        install_plugins(workdir)
        settings = loader_settings(overrides, workdir)
        progress(f"meltano run's loader settings: {describe_settings(settings)}")
        outcomes = run_rounds(
            pg,
            workdir,
            per_assignment=per_assignment,
            repeat=args.repeat,
            overrides=overrides,
            timeout=args.timeout,
            profile=args.profile,
        )
        costs = (
            run_per_stream(
                pg,
                workdir,
                per_assignment=per_assignment,
                overrides=overrides,
                timeout=args.timeout,
            )
            if args.per_stream
            else []
        )
        alone = (
            run_loader_alone(
                pg,
                workdir,
                per_assignment=per_assignment,
                repeat=args.repeat,
                timeout=args.timeout,
                profile=args.profile,
            )
            if args.loader_alone
            else []
        )
        combinations = (
            run_combinations(
                pg,
                workdir,
                per_assignment=per_assignment,
                repeat=args.repeat,
                timeout=args.timeout,
                profile=args.profile,
            )
            if args.combinations
            else []
        )
        wrong = problems(outcomes, total)
        wrong += [
            f"meltano run with {c.settings} loaded {rows:,} rows"
            for c in combinations + alone
            for rows in c.rows
            if rows != total
        ]
        for problem in wrong:
            progress(f"WRONG: {problem}")
        print(
            report(
                outcomes,
                total=total,
                per_assignment=per_assignment,
                settings=settings,
                repeat=args.repeat,
                command=command,
                elapsed=time.perf_counter() - started,
                server_version=server_version,
            )
        )
        if costs:
            print()
            print("\n".join(per_stream_table(costs)))
        if combinations:
            print()
            print("\n".join(combinations_table(combinations, "`meltano run` (customers)")))
        if alone:
            print()
            title = "target-postgres alone, reading the tap's output from a file,"
            print("\n".join(combinations_table(alone, title)))
    finally:
        if args.keep:
            progress(f"configs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
