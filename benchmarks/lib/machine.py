"""What the figures were taken on and with: the machine's CPUs, how busy other processes
keep it, the source's commit, and the versions of what was measured.

Figures from a machine busy with something else are not worth keeping, so the CPU time
other processes use during a run is read from /proc (the busy part of /proc/stat's cpu
line, less the measured process's, the server's and this script's own), and a run may
first wait for the machine to go quiet.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

from lib.common import ROOT, progress

#: Above this share of the machine's CPU used by other processes, the report warns.
BUSY_MACHINE = 0.05


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def machine_busy_seconds() -> float:
    """CPU seconds all processes have spent so far (the busy part of /proc/stat's cpu line)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a running process, from /proc/<pid>/stat."""
    if pid is None:
        return 0.0
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()  # fields from the 3rd (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def wait_for_quiet(limit: float) -> None:
    """Wait until other processes leave the CPUs idle for 3 s in a row, at most `limit` s."""
    started = time.monotonic()
    calm = 0
    while calm < 3 and time.monotonic() - started < limit:
        busy, own = machine_busy_seconds(), own_cpu_seconds()
        time.sleep(1)
        load = (machine_busy_seconds() - busy - (own_cpu_seconds() - own)) / cpu_count()
        calm = calm + 1 if load < BUSY_MACHINE else 0
    waited = time.monotonic() - started
    if calm < 3:
        progress(f"  the machine is still busy after {waited:.0f} s; measuring anyway")
    elif waited > 4:
        progress(f"  waited {waited:.0f} s for other processes to leave the machine idle")


def source_fingerprint() -> str:
    """A hash of tap-cube's source, to notice it changing while the benchmark runs."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "tap_cube").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def source_state() -> str:
    """The commit tap-cube was measured at, and whether its source had local changes."""
    git = shutil.which("git")
    if git is None:
        return "unknown commit"
    head = subprocess.run(  # noqa: S603  # argv built here
        [git, "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(  # noqa: S603  # argv built here
        [git, "-C", str(ROOT), "status", "--porcelain", "--", "tap_cube", "pyproject.toml"],
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode != 0:
        return "unknown commit"
    changes = " + uncommitted changes to tap_cube/" if dirty.stdout.strip() else ""
    return f"commit {head.stdout.strip()}{changes}"


def version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"
