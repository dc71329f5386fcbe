"""What detect_deletions costs: state size and run time, by what customer ids look like.

Run by hand, not in CI, from the project root::

    uv run python benchmarks/deletions_cost.py                 # 1,000,000 customers
    uv run python benchmarks/deletions_cost.py --customers 100000
    uv run python benchmarks/deletions_cost.py --skip-unchanged   # the runs with it on, too

For each id style (see benchmarks/memory_by_id_style.py), a fresh simulator serves 4 assignments
and tap-cube syncs `customers` alone: once with detect_deletions off, once on (the first
run, which only records the ids), and once on with the state of that run against a
simulator whose assignments each lost their last 1,000 customers (the run that emits the
deletion records). Printed: wall time and peak RSS of each run, the size of the final
STATE message, and the deletion records emitted. Nothing is asserted. With
--skip-unchanged, the two runs with detect_deletions on have skip_unchanged on as well,
so the STATE carries the record hashes and the second run compares with them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from lib.common import ASSIGNMENT_IDS, ID_STYLE_NAMES, LONG_RUN_TIMEOUT, child_env
from lib.measurement import measure
from lib.simulator_process import SimulatorProcess
from lib.tap_cube_setup import discover_catalog, sync_argv, tap_cube_executable, write_config

REMOVED_PER_ASSIGNMENT = 1_000
DELETED_MARK = b'"_sdc_deleted_at":"'
STATE_START = b'{"type":"STATE"'


class KeptLines:
    """Reads a tap's output, keeping only what is counted: the deletion records and the
    STATE messages (a million records would be most of a gigabyte)."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def __call__(self, fd: int) -> int:
        with open(fd, "rb", closefd=False) as output:
            for line in output:
                if DELETED_MARK in line or line.startswith(STATE_START):
                    self.lines.append(line)
        return len(self.lines)

    @property
    def output(self) -> bytes:
        return b"".join(self.lines)


def run_tap(
    config: Path, catalog: Path, state: Path | None, sim: SimulatorProcess, log: Path
) -> tuple[float, float, bytes]:
    """Wall seconds, peak RSS (MiB) and the kept stdout of one tap-cube run."""
    kept = KeptLines()
    sample = measure(
        sync_argv(tap_cube_executable(), config, catalog, state),
        read=kept,
        timeout=LONG_RUN_TIMEOUT,
        log=log,
        env=child_env(),
        server_pid=sim.pid,
    )
    if sample.returncode != 0:
        sys.exit(f"tap-cube failed (status {sample.returncode})")
    return sample.wall, sample.peak_rss_kib / 1024, kept.output


def last_state(output: bytes) -> bytes:
    lines = [line for line in output.splitlines() if line.startswith(STATE_START)]
    return lines[-1]


def measure_style(
    style: str, per_assignment: int, workdir: Path, *, skip_unchanged: bool = False
) -> dict[str, object]:
    row: dict[str, object] = {"ids": style}
    config = workdir / "config.json"
    for phase, count, detect in (
        ("off", per_assignment, False),
        ("first", per_assignment, True),
        ("deleting", per_assignment - REMOVED_PER_ASSIGNMENT, True),
    ):
        with SimulatorProcess(count, workdir, id_style=style) as sim:
            write_config(
                config, sim.url, detect_deletions=detect, skip_unchanged=skip_unchanged and detect
            )
            catalog = discover_catalog(tap_cube_executable(), config, workdir / "catalog.json")
            state = workdir / "state.json" if phase == "deleting" else None
            log = workdir / f"tap-cube-{style}-{phase}.log"
            wall, peak, output = run_tap(config, catalog, state, sim, log)
        row[f"{phase} s"] = wall
        row[f"{phase} MiB"] = peak
        if phase == "first":
            message = last_state(output)
            row["state bytes"] = len(message)
            (workdir / "state.json").write_bytes(json.dumps(json.loads(message)["value"]).encode())
        if phase == "deleting":
            row["deleted"] = output.count(DELETED_MARK)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="in all, per style")
    parser.add_argument(
        "--skip-unchanged", action="store_true", help="skip_unchanged on where deletions are"
    )
    args = parser.parse_args()
    per_assignment = args.customers // len(ASSIGNMENT_IDS)
    with tempfile.TemporaryDirectory() as directory:
        rows = [
            measure_style(
                style, per_assignment, Path(directory), skip_unchanged=args.skip_unchanged
            )
            for style in ID_STYLE_NAMES
        ]
    print(
        "| Ids | off (s) | on, first run (s) | on, deleting (s) | Peak RSS off / on (MiB) "
        "| STATE message | Deletion records |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['ids']} | {row['off s']:.2f} | {row['first s']:.2f} | "
            f"{row['deleting s']:.2f} | {row['off MiB']:.0f} / {row['deleting MiB']:.0f} | "
            f"{int(str(row['state bytes'])):,} bytes | {row['deleted']:,} |"
        )


if __name__ == "__main__":
    main()
