"""The first load with and without BATCH: `meltano run tap-cube target-postgres` as the
project runs it (RECORD messages), and the same with `batch_config` (BATCH messages: the
tap writes gzipped JSONL files, the loader reads them), side by side.

Run by hand, not in CI, from the project root, with PostgreSQL on 127.0.0.1:5432::

    uv run python benchmarks/batch.py              # 200,000 customers, 3 runs each
    uv run python benchmarks/batch.py --quick      # 20,000 customers

Both pipelines are benchmarks/e2e.py's `meltano run` (same plugins in
`benchmarks/.meltano/`, same loader settings from meltano.yml, only the `customers`
stream, a fresh database, simulator and state ID per run); the BATCH one only adds
TAP_CUBE_BATCH_CONFIG. Their order alternates from round to round. After each run the
script checks in PostgreSQL that every customer is there once, that both loaded the same
columns and the same values, and counts the rows without `_sdc_extracted_at` or
`_sdc_batched_at` (the loader's record metadata).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from common import ASSIGNMENT_IDS, progress
from e2e_meltano import describe_settings, install_plugins, loader_settings, plugin_version
from e2e_pipelines import PER_ASSIGNMENT, meltano_pipeline, simulator, time_pipeline
from e2e_postgres import DEFAULT_DSN, SCHEMA, Postgres, loaded
from e2e_rounds import Outcome
from machine import cpu_count, cpu_model
from provenance import source_state, version_of

RECORDS = "RECORD messages"
BATCH = "BATCH files (jsonl, gzip)"


def batch_config(workdir: Path) -> str:
    """TAP_CUBE_BATCH_CONFIG: files under the benchmark's own directory."""
    root = workdir / "batches"
    root.mkdir(exist_ok=True)
    return json.dumps(
        {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": root.as_uri()},
        }
    )


def run_rounds(
    pg: Postgres, workdir: Path, *, per_assignment: int, repeat: int, timeout: float
) -> dict[str, Outcome]:
    outcomes = {name: Outcome(name) for name in (RECORDS, BATCH)}
    for attempt in range(repeat):
        # Alternating the order spreads a slow spell of a shared machine over both.
        order = [RECORDS, BATCH] if attempt % 2 == 0 else [BATCH, RECORDS]
        for name in order:
            tap_settings = {"batch_config": batch_config(workdir)} if name == BATCH else None
            database = pg.create()
            try:
                with simulator(per_assignment) as sim:
                    pipeline = meltano_pipeline(sim, pg, database, {}, tap_settings=tap_settings)
                    log = workdir / f"{'batch' if name == BATCH else 'records'}-{attempt + 1}.log"
                    timing = time_pipeline(pipeline, log, timeout=timeout, profile=False)
                result = loaded(pg, database, SCHEMA)
            finally:
                pg.drop(database)
                shutil.rmtree(workdir / "batches", ignore_errors=True)
            outcomes[name].timings.append(timing)
            outcomes[name].loads.append(result)
            progress(
                f"round {attempt + 1} of {repeat}: {name}: {timing.wall:.2f} s, "
                f"{result.rows:,} rows, {result.without_metadata:,} without _sdc_ metadata"
            )
    return outcomes


def problems(outcomes: dict[str, Outcome], total: int) -> list[str]:
    found = []
    runs = [(o.pipeline, load) for o in outcomes.values() for load in o.loads]
    for name, load in runs:
        if load.rows != total or load.distinct_keys != total:
            found.append(f"{name} loaded {load.rows:,} rows ({load.distinct_keys:,} keys)")
    first_name, first = runs[0]
    for name, load in runs[1:]:
        if (load.columns, load.checksum) != (first.columns, first.checksum):
            found.append(f"{name} and {first_name} loaded different columns or values")
    return found


def report(
    outcomes: dict[str, Outcome],
    *,
    total: int,
    per_assignment: int,
    settings: dict[str, object],
    repeat: int,
    command: str,
    server_version: str,
) -> str:
    records, batch = outcomes[RECORDS], outcomes[BATCH]
    lines = [
        f"#### The first load with and without BATCH: {total:,} customers into PostgreSQL",
        "",
        f"- Machine: {cpu_count()} CPUs, {cpu_model()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, PostgreSQL {server_version} on the same machine",
        f"- Versions: tap-cube {version_of('tap-cube')} at {source_state()}, "
        f"meltano {version_of('meltano')}, meltanolabs-target-postgres "
        f"{plugin_version('loaders', 'target-postgres', 'meltanolabs-target-postgres')}",
        f"- Command: `{command}` ({repeat} run(s) each, alternating; median wall time)",
        f"- Data: {len(ASSIGNMENT_IDS)} assignments x {per_assignment:,} customers, only the "
        f"`customers` stream; loader settings from meltano.yml: {describe_settings(settings)}",
        "",
        "| `meltano run` with | Rows loaded | Wall (s), median | Wall (s), all runs | CPU (s) "
        "| Rows without `_sdc_*` metadata |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for outcome in (records, batch):
        walls = ", ".join(f"{t.wall:.1f}" for t in outcome.timings)
        bare = max(load.without_metadata for load in outcome.loads)
        lines.append(
            f"| {outcome.pipeline} | {outcome.loads[0].rows:,} | {outcome.wall:.1f} | {walls} "
            f"| {outcome.cpu:.1f} | {bare:,} |"
        )
    lines += [
        "",
        f"BATCH over records: {records.wall / batch.wall:.2f}x as fast (medians); "
        f"same columns and values: {'yes' if not problems(outcomes, total) else 'NO'}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(prog="benchmarks/batch.py", description=__doc__)
    options.add_argument("--repeat", type=int, default=3, help="runs per pipeline (default 3)")
    options.add_argument("--quick", action="store_true", help="a tenth of the customers")
    options.add_argument(
        "--pg-dsn",
        default=os.environ.get("TAP_CUBE_TEST_PG_DSN", DEFAULT_DSN),
        help=f"where to create the benchmark's databases (default: {DEFAULT_DSN})",
    )
    options.add_argument("--timeout", type=float, default=1800, help="seconds before a kill")
    args = options.parse_args(argv)
    if args.repeat < 1:
        options.error("--repeat must be at least 1")
    command = shlex.join(["uv", "run", "python", "benchmarks/batch.py", *sys.argv[1:]])
    per_assignment = PER_ASSIGNMENT // (10 if args.quick else 1)
    total = per_assignment * len(ASSIGNMENT_IDS)
    pg = Postgres(args.pg_dsn)
    try:
        with psycopg.connect(pg.dsn, connect_timeout=5) as conn:
            server_version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    except psycopg.Error as exc:
        sys.exit(f"cannot connect to PostgreSQL ({exc}); start it or pass --pg-dsn")
    workdir = Path(tempfile.mkdtemp(prefix="tap-cube-batch-"))
    try:
        started = time.perf_counter()
        install_plugins(workdir)
        settings = loader_settings({}, workdir)
        outcomes = run_rounds(
            pg, workdir, per_assignment=per_assignment, repeat=args.repeat, timeout=args.timeout
        )
        wrong = problems(outcomes, total)
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
                server_version=server_version,
            )
        )
        progress(f"done in {time.perf_counter() - started:.0f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
