"""End to end: the project's `meltano run tap-cube target-postgres` against the same tap
piped into the same loader with the loader's default settings.

Run by hand, not in CI, from the project root, with PostgreSQL on 127.0.0.1:5432::

    uv run python benchmarks/end_to_end.py              # 200,000 customers, each pipeline once
    uv run python benchmarks/end_to_end.py --repeat 3   # the median of three runs each
    uv run python benchmarks/end_to_end.py --profile    # also: CPU and memory per process
    uv run python benchmarks/end_to_end.py --set batch_size_rows=10000   # another setting
    uv run python benchmarks/end_to_end.py --combinations   # also: several loader settings
    uv run python benchmarks/end_to_end.py --per-stream     # also: each stream `cube` loads
    uv run python benchmarks/end_to_end.py --loader-alone   # also: the loader alone

The two pipelines (`meltano run` with this project's loader settings, and `tap-cube |
target-postgres` with the loader's defaults; see lib/pipelines.py for how each is built
and timed, and on what data) run one after the other in each round, their order
alternating from round to round, each into a fresh database, each against a fresh
simulator. Both use the executables that `meltano install` put in `benchmarks/.meltano/`
(installed and compiled to bytecode by this script, untimed), so the tap, the loader and
their versions are the same: what differs is Meltano and the loader's settings.

After each run the script checks, in PostgreSQL, that the table holds every customer
once, and that the two pipelines loaded identical rows: the same columns with the same
types, and the same checksum over all customer columns (the loader's `_sdc_*` columns
aside, which hold times). It also checks that `_sdc_extracted_at` and `_sdc_batched_at`
are set on every row.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lib.common import ASSIGNMENT_IDS, progress
from lib.loader_combinations import run_combinations, run_loader_alone
from lib.meltano_plugins import describe_settings, install_plugins, loader_settings
from lib.pipeline_report import combinations_table, per_stream_table, report
from lib.pipeline_rounds import Contestant, problems, run_per_stream, run_rounds
from lib.pipelines import MELTANO_RUN, PER_ASSIGNMENT, PIPE, meltano_pipeline, pipe_pipeline
from lib.postgres import Postgres, add_postgres_option, server_version


def parse_override(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        msg = f"expected NAME=VALUE, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return name, value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/end_to_end.py",
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
    add_postgres_option(parser)
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds before a run is killed"
    )
    parser.add_argument("--keep", action="store_true", help="keep the configs and logs")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = parser()
    args = options.parse_args(argv)
    if args.repeat < 1:
        options.error("--repeat must be at least 1")

    started = time.perf_counter()
    command = shlex.join(["uv", "run", "python", "benchmarks/end_to_end.py", *sys.argv[1:]])
    per_assignment = PER_ASSIGNMENT // (10 if args.quick else 1)
    total = per_assignment * len(ASSIGNMENT_IDS)
    pg = Postgres(args.pg_dsn)
    version = server_version(pg)
    overrides = dict(args.overrides)
    workdir = Path(tempfile.mkdtemp(prefix="tap-cube-end-to-end-"))
    try:
        install_plugins(workdir)
        settings = loader_settings(overrides, workdir)
        progress(f"meltano run's loader settings: {describe_settings(settings)}")
        outcomes = run_rounds(
            pg,
            workdir,
            (
                Contestant(
                    MELTANO_RUN,
                    "meltano-run",
                    lambda sim, database: meltano_pipeline(sim, pg, database, overrides),
                ),
                Contestant(
                    PIPE, "pipe", lambda sim, database: pipe_pipeline(sim, pg, database, workdir)
                ),
            ),
            per_assignment=per_assignment,
            repeat=args.repeat,
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
        wrong = problems(outcomes, total, metadata_required=True)
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
                server_version=version,
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
