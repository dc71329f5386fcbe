"""The first load with and without BATCH: `meltano run tap-cube target-postgres` as the
project runs it (RECORD messages), and the same with `batch_config` (BATCH messages: the
tap writes gzipped JSONL files, the loader reads them), side by side.

Run by hand, not in CI, from the project root, with PostgreSQL on 127.0.0.1:5432::

    uv run python benchmarks/batch_messages.py              # 200,000 customers, 3 runs each
    uv run python benchmarks/batch_messages.py --quick      # 20,000 customers

Both pipelines are benchmarks/end_to_end.py's `meltano run` (same plugins in
`benchmarks/.meltano/`, same loader settings from meltano.yml, only the `customers`
stream, a fresh database, simulator and state ID per run); the BATCH one only adds
TAP_CUBE_BATCH_CONFIG. Their order alternates from round to round. After each run the
script checks in PostgreSQL that every customer is there once, that both loaded the same
columns and the same values, and counts the rows without `_sdc_extracted_at` or
`_sdc_batched_at` (the loader's record metadata).
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lib.common import ASSIGNMENT_IDS, progress
from lib.meltano_plugins import describe_settings, install_plugins, loader_settings
from lib.pipeline_report import machine_line, versions_line
from lib.pipeline_rounds import Contestant, Outcome, problems, run_rounds
from lib.pipelines import PER_ASSIGNMENT, meltano_pipeline
from lib.postgres import Postgres, add_postgres_option, server_version

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


def contestants(pg: Postgres, workdir: Path) -> tuple[Contestant, Contestant]:
    """`meltano run` as the project runs it, and the same with `batch_config`."""
    return (
        Contestant(
            RECORDS, "records", lambda sim, database: meltano_pipeline(sim, pg, database, {})
        ),
        Contestant(
            BATCH,
            "batch",
            lambda sim, database: meltano_pipeline(
                sim, pg, database, {}, tap_settings={"batch_config": batch_config(workdir)}
            ),
        ),
    )


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
        machine_line(server_version),
        versions_line(),
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
        "same columns and values: "
        f"{'yes' if not problems(outcomes, total, metadata_required=False) else 'NO'}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(prog="benchmarks/batch_messages.py", description=__doc__)
    options.add_argument("--repeat", type=int, default=3, help="runs per pipeline (default 3)")
    options.add_argument("--quick", action="store_true", help="a tenth of the customers")
    add_postgres_option(options)
    options.add_argument("--timeout", type=float, default=1800, help="seconds before a kill")
    args = options.parse_args(argv)
    if args.repeat < 1:
        options.error("--repeat must be at least 1")
    command = shlex.join(["uv", "run", "python", "benchmarks/batch_messages.py", *sys.argv[1:]])
    per_assignment = PER_ASSIGNMENT // (10 if args.quick else 1)
    total = per_assignment * len(ASSIGNMENT_IDS)
    pg = Postgres(args.pg_dsn)
    version = server_version(pg)
    workdir = Path(tempfile.mkdtemp(prefix="tap-cube-batch-"))
    try:
        started = time.perf_counter()
        install_plugins(workdir)
        settings = loader_settings({}, workdir)
        outcomes = run_rounds(
            pg,
            workdir,
            contestants(pg, workdir),
            per_assignment=per_assignment,
            repeat=args.repeat,
            timeout=args.timeout,
            profile=False,
            after_run=functools.partial(shutil.rmtree, workdir / "batches", ignore_errors=True),
        )
        wrong = problems(outcomes, total, metadata_required=False)
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
                server_version=version,
            )
        )
        progress(f"done in {time.perf_counter() - started:.0f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
