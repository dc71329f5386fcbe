"""Peak memory of tap-cube against what customer ids look like.

Run by hand, not in CI, from the project root::

    uv run python benchmarks/id_memory.py            # 1,000,000 customers per id style
    uv run python benchmarks/id_memory.py --customers 100000

Cube's `crm__customer_id` is the customer's own imported id: consecutive numbers (dense),
numbers far apart (sparse: 40,000 apart, beyond 2**32) or text. tap-cube keeps every id
of a partition to de-duplicate, so its memory must not depend on which. For each style,
a fresh simulator (`python -m tap_cube.simulator --id-style STYLE`) serves 4 assignments,
and tap-cube syncs `customers` alone from a catalog made by an untimed `--discover`. The
figures are tap-cube's own wall time, records and peak RSS (`wait4()`); nothing is
asserted. Target: the largest peak within 1.3x of the smallest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from tap_cube_setup import discover_catalog

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"  # noqa: S105 - the simulator's credential, nothing real
STYLES = ("dense", "sparse", "text")
ASSIGNMENTS = (1, 2, 3, 4)


def start_simulator(
    style: str, per_assignment: int, workdir: Path
) -> tuple[subprocess.Popen[bytes], str]:
    ready = workdir / f"simulator-{style}.url"
    ready.unlink(missing_ok=True)  # a simulator started before left its own
    argv = [sys.executable, "-m", "tap_cube.simulator", "--next-style", "same"]
    argv += ["--token", TOKEN, "--id-style", style, "--ready-file", str(ready)]
    for assignment_id in ASSIGNMENTS:
        argv += ["--assignment", f"{assignment_id}={per_assignment}"]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)  # noqa: S603
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            sys.exit("the simulator did not start")
        time.sleep(0.02)
    return process, ready.read_text().strip()


def measure(style: str, per_assignment: int, workdir: Path) -> tuple[float, int, float]:
    """Wall seconds, records and peak RSS (MiB) of one tap-cube run."""
    tap = Path(sysconfig.get_path("scripts")) / "tap-cube"
    simulator, url = start_simulator(style, per_assignment, workdir)
    try:
        config = workdir / "config.json"
        config.write_text(
            json.dumps({"api_url": url, "auth_token": TOKEN, "assignment_ids": list(ASSIGNMENTS)})
        )
        catalog = discover_catalog(tap, config, workdir / "catalog.json")
        started = time.monotonic()
        process = subprocess.Popen(  # noqa: S603 - argv built here
            [str(tap), "--config", str(config), "--catalog", str(catalog)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert process.stdout is not None
        records = 0
        rest = b""
        while chunk := process.stdout.read(1 << 20):
            # Count whole lines only: a marker may straddle two chunks.
            lines, _, rest = (rest + chunk).rpartition(b"\n")
            records += lines.count(b'"type":"RECORD"')
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        if status != 0:
            sys.exit(f"tap-cube failed for {style} ids (status {status})")
        return wall, records, usage.ru_maxrss / 1024
    finally:
        simulator.terminate()
        simulator.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="in all, per style")
    args = parser.parse_args()
    per_assignment = args.customers // len(ASSIGNMENTS)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for style in STYLES:
            wall, records, peak = measure(style, per_assignment, Path(directory))
            rows.append((style, records, wall, peak))
    print("| Ids | Records | Wall (s) | Records/s | Peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for style, records, wall, peak in rows:
        print(f"| {style} | {records:,} | {wall:.2f} | {records / wall:,.0f} | {peak:.0f} |")
    peaks = [peak for *_, peak in rows]
    print(f"\nLargest peak RSS / smallest: {max(peaks) / min(peaks):.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
