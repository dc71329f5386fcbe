"""What skip_unchanged saves and costs: the daily re-run after a few changes, and the state.

Run by hand, not in CI, from the project root, with PostgreSQL on 127.0.0.1:5432::

    uv run python benchmarks/rerun.py        # 500,000, then 1,000,000 customers
    uv run python benchmarks/rerun.py --customers 100000 --large 200000 --styles dense

Speed (`--customers`, dense ids): with skip_unchanged off and on, each into its own
database, with its own simulator and its own state ID: a first `meltano run tap-cube
target-postgres` (customers only) loads every customer; then 1% of the customers change
and 0.25% are removed, and a second run loads the difference. Printed: wall time of both
runs, the rows PostgreSQL wrote in the second (`n_tup_ins + n_tup_upd`) and tap-cube's
peak RSS; both databases must end with the same rows (lib/postgres.py, `loaded`).

State (`--large`, per id style of benchmarks/memory_by_id_style.py): with skip_unchanged
off and on, each into its own database, a first run and a second one after the same changes;
printed: the size of the state Meltano keeps (`meltano state get`), the growth of
`benchmarks/.meltano/meltano.db` per run with it on, and tap-cube's peak RSS (the
kernel's high-water mark) in each run, with it on against off in the same run: the
first run has no state yet, the second reads and writes every partition's.

The pipelines are lib/pipelines.py's, timed and sampled as in benchmarks/end_to_end.py
(--profile); the machine is shared, so figures vary from run to run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lib.common import ASSIGNMENT_IDS, ID_STYLE_NAMES, LONG_RUN_TIMEOUT, progress
from lib.meltano_plugins import MELTANO, MELTANO_HOME, install_plugins, meltano_env
from lib.pipelines import meltano_pipeline, simulator, time_pipeline
from lib.postgres import SCHEMA, Postgres, add_postgres_option, loaded

if TYPE_CHECKING:
    from cube_simulator import CubeSimulator

CHANGED_EVERY = 100  # 1%
REMOVED_EVERY = 400  # 0.25%
STATE_ID = "simulator:tap-cube-to-target-postgres:{}"
SYSTEM_DB = MELTANO_HOME / "meltano.db"


@dataclass
class Run:
    wall: float
    tap_peak_mib: float
    rows_written: int
    db_growth: int


def change_and_remove(sim: CubeSimulator, per_assignment: int) -> tuple[int, int]:
    """Changes 1% of every assignment's customers and removes 0.25%; how many of each."""
    changed = removed = 0
    for assignment_id in ASSIGNMENT_IDS:
        customers = sim.customers(assignment_id)
        gone = per_assignment // REMOVED_EVERY
        for customer in customers[gone::CHANGED_EVERY]:
            sim.update_customer(
                assignment_id,
                str(customer["crm__customer_id"]),
                {"crm__standard_info__name": "Endret Ærlig", "crm__custom_info__70": 4711},
            )
            changed += 1
        sim.set_count(assignment_id, per_assignment - gone, at="start")
        removed += gone
    return changed, removed


def rows_written(pg: Postgres, database: str) -> int:
    """n_tup_ins + n_tup_upd of the customers table, read until the statistics settle."""
    last = -1
    with pg.connect(database) as conn:
        conn.autocommit = True
        for _ in range(60):
            conn.execute("SELECT pg_stat_clear_snapshot()")
            found = conn.execute(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0) FROM pg_stat_user_tables "
                "WHERE schemaname = %s AND relname = 'customers'",
                (SCHEMA,),
            ).fetchone()
            current = int(str(found[0])) if found else 0
            if current == last:
                return current
            last = current
            time.sleep(1)
    return last


def system_db_size() -> int:
    return sum(p.stat().st_size for p in MELTANO_HOME.glob("meltano.db*") if p.exists())


def state_size(suffix: str, workdir: Path) -> int:
    """Bytes of the state Meltano keeps for one state ID."""
    found = subprocess.run(  # noqa: S603  # argv built here
        [str(MELTANO), "state", "get", STATE_ID.format(suffix)],
        env={**meltano_env({}), "MELTANO_CLI_LOG_LEVEL": "warning"},
        cwd=MELTANO_HOME.parent.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        (workdir / "state.log").write_bytes(found.stderr)
        sys.exit(f"meltano state get failed; see {workdir / 'state.log'}")
    return len(found.stdout.strip())


def run(sim: CubeSimulator, pg: Postgres, database: str, suffix: str, skip: bool, log: Path) -> Run:
    pipeline = meltano_pipeline(
        sim,
        pg,
        database,
        {},
        tap_settings={"skip_unchanged": str(skip).lower()},
        state_id_suffix=suffix,
    )
    written = rows_written(pg, database)
    size = system_db_size()
    timing = time_pipeline(pipeline, log, timeout=LONG_RUN_TIMEOUT, profile=True)
    return Run(
        timing.wall,
        timing.peak_mib_by_process.get("tap-cube", 0.0),
        rows_written(pg, database) - written,
        system_db_size() - size,
    )


def speed(pg: Postgres, per_assignment: int, workdir: Path) -> None:
    runs: dict[tuple[str, str], Run] = {}
    loads = {}
    for skip in (False, True):
        setting = "on" if skip else "off"
        database = pg.create()
        suffix = f"speed-{setting}-{workdir.name}"
        try:
            with simulator(per_assignment) as sim:
                for phase in ("first", "second"):
                    if phase == "second":
                        changed, removed = change_and_remove(sim, per_assignment)
                    log = workdir / f"speed-{setting}-{phase}.log"
                    runs[setting, phase] = found = run(sim, pg, database, suffix, skip, log)
                    progress(f"skip_unchanged {setting}, {phase} run: {found.wall:.1f} s")
            loads[setting] = loaded(pg, database, SCHEMA)
        finally:
            pg.drop(database)
    if loads["on"] != loads["off"]:
        sys.exit(f"the two loads differ: {loads}")
    customers = per_assignment * len(ASSIGNMENT_IDS)
    print(
        f"\n{customers:,} customers, then {changed:,} changed and {removed:,} removed "
        f"(dense ids); both loads end with the same {loads['on'].rows:,} rows "
        f"(md5 {loads['on'].checksum})\n"
    )
    print(
        "| skip_unchanged | First run (s) | Second run (s) | Rows written by the second "
        "| tap-cube peak RSS (MiB) |"
    )
    print("|---|---:|---:|---:|---:|")
    for setting in ("off", "on"):
        first, second = runs[setting, "first"], runs[setting, "second"]
        print(
            f"| {setting} | {first.wall:.1f} | {second.wall:.1f} | {second.rows_written:,} "
            f"| {max(first.tap_peak_mib, second.tap_peak_mib):.0f} |"
        )
    off, on = runs["off", "second"], runs["on", "second"]
    print(
        f"\nSecond run: {off.wall / on.wall:.2f}x as fast with skip_unchanged on "
        "(target: >= 3x); first run with it on: "
        f"{runs['on', 'first'].wall / runs['off', 'first'].wall - 1:+.1%} (target: <= +5%)"
    )


def state_costs(pg: Postgres, per_assignment: int, styles: list[str], workdir: Path) -> None:
    rows = []
    for style in styles:
        found: dict[tuple[str, str], Run] = {}
        sizes: dict[tuple[str, str], int] = {}
        for skip in (False, True):
            setting = "on" if skip else "off"
            database = pg.create()
            suffix = f"state-{style}-{setting}-{workdir.name}"
            try:
                with simulator(per_assignment, style) as sim:
                    for phase in ("first", "second"):
                        if phase == "second":
                            change_and_remove(sim, per_assignment)
                        log = workdir / f"state-{style}-{setting}-{phase}.log"
                        found[setting, phase] = run(sim, pg, database, suffix, skip, log)
                        sizes[setting, phase] = state_size(suffix, workdir)
                        progress(
                            f"{style} ids, skip_unchanged {setting}, {phase} run: "
                            f"{found[setting, phase].wall:.1f} s"
                        )
            finally:
                pg.drop(database)
        rows.append((style, found, sizes))
    customers = per_assignment * len(ASSIGNMENT_IDS)
    print(
        f"\n{customers:,} customers, detect_deletions on in every run; the second run after "
        "1% changed and 0.25% removed:\n"
    )
    print(
        "| Ids | State without / with skip_unchanged (bytes) | meltano.db growth with it, "
        "first / second run (bytes) | tap-cube peak RSS without / with, first run (MiB) "
        "| the same, second run (MiB) | Wall without / with, first / second run (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    ratios = []
    for style, found, sizes in rows:
        peaks = {key: value.tap_peak_mib for key, value in found.items()}
        ratios += [peaks["on", phase] / peaks["off", phase] for phase in ("first", "second")]
        print(
            f"| {style} | {sizes['off', 'second']:,} / {sizes['on', 'second']:,} "
            f"| {found['on', 'first'].db_growth:,} / {found['on', 'second'].db_growth:,} "
            f"| {peaks['off', 'first']:.1f} / {peaks['on', 'first']:.1f} "
            f"({peaks['on', 'first'] / peaks['off', 'first']:.2f}x) "
            f"| {peaks['off', 'second']:.1f} / {peaks['on', 'second']:.1f} "
            f"({peaks['on', 'second'] / peaks['off', 'second']:.2f}x) "
            f"| {found['off', 'first'].wall:.1f} / {found['on', 'first'].wall:.1f}, "
            f"{found['off', 'second'].wall:.1f} / {found['on', 'second'].wall:.1f} |"
        )
    print(
        f"\nPeak RSS with skip_unchanged against without, same run: at most {max(ratios):.2f}x "
        "(target: <= 1.3x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=500_000, help="for the speed runs")
    parser.add_argument("--large", type=int, default=1_000_000, help="for the state runs")
    parser.add_argument("--styles", nargs="+", choices=ID_STYLE_NAMES, default=list(ID_STYLE_NAMES))
    parser.add_argument("--skip-speed", action="store_true", help="only the state runs")
    parser.add_argument("--skip-state", action="store_true", help="only the speed runs")
    add_postgres_option(parser)
    args = parser.parse_args()
    pg = Postgres(args.pg_dsn)
    workdir = Path(tempfile.mkdtemp(prefix="tap-cube-skip-"))
    try:
        install_plugins(workdir)
        if not args.skip_speed:
            speed(pg, args.customers // len(ASSIGNMENT_IDS), workdir)
        if not args.skip_state:
            state_costs(pg, args.large // len(ASSIGNMENT_IDS), args.styles, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
