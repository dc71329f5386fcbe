"""Peak memory of tap-cube against what customer ids look like.

Run by hand, not in CI, from the project root::

    uv run python benchmarks/memory_by_id_style.py            # 1,000,000 customers per id style
    uv run python benchmarks/memory_by_id_style.py --customers 100000

Cube's `crm__customer_id` is the customer's own imported id: consecutive numbers (dense),
numbers far apart (sparse: 40,000 apart, beyond 2**32) or text. tap-cube keeps every id
of a partition to de-duplicate, so its memory must not depend on which. For each style,
a fresh simulator (`python -m cube_simulator --id-style STYLE`) serves 4 assignments,
and tap-cube syncs `customers` alone from a catalog made by an untimed `--discover`. The
figures are tap-cube's own wall time, records and peak RSS (`wait4()`); nothing is
asserted. Target: the largest peak within 1.3x of the smallest.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from lib.common import ASSIGNMENT_IDS, ID_STYLE_NAMES, LONG_RUN_TIMEOUT, child_env
from lib.measurement import RECORD_MARK, counting, measure
from lib.simulator_process import SimulatorProcess
from lib.tap_cube_setup import discover_catalog, sync_argv, tap_cube_executable, write_config


def measure_style(style: str, per_assignment: int, workdir: Path) -> tuple[float, int, float]:
    """Wall seconds, records and peak RSS (MiB) of one tap-cube run."""
    tap = tap_cube_executable()
    with SimulatorProcess(per_assignment, workdir, id_style=style) as sim:
        config = write_config(workdir / "config.json", sim.url)
        catalog = discover_catalog(tap, config, workdir / "catalog.json")
        sample = measure(
            sync_argv(tap, config, catalog),
            read=counting(RECORD_MARK),
            timeout=LONG_RUN_TIMEOUT,
            log=workdir / f"tap-cube-{style}.log",
            env=child_env(),
            server_pid=sim.pid,
        )
    if sample.returncode != 0:
        sys.exit(f"tap-cube failed for {style} ids (status {sample.returncode})")
    return sample.wall, sample.records or 0, sample.peak_rss_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="in all, per style")
    args = parser.parse_args()
    per_assignment = args.customers // len(ASSIGNMENT_IDS)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for style in ID_STYLE_NAMES:
            wall, records, peak = measure_style(style, per_assignment, Path(directory))
            rows.append((style, records, wall, peak))
    print("| Ids | Records | Wall (s) | Records/s | Peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for style, records, wall, peak in rows:
        print(f"| {style} | {records:,} | {wall:.2f} | {records / wall:,.0f} | {peak:.0f} |")
    peaks = [peak for *_, peak in rows]
    print(f"\nLargest peak RSS / smallest: {max(peaks) / min(peaks):.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
