"""CPU seconds and peak RSS of every process of a pipeline, by kind, sampled from /proc
(benchmarks/end_to_end.py --profile), and the CPU time of the PostgreSQL server meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

POSTGRES = "PostgreSQL server (all sessions)"


class ProcessSampler:
    """CPU seconds and peak RSS of every process below one, by kind, sampled from /proc.

    A process's CPU seconds are from its samples, so up to one interval of its work may
    be missed. Its peak RSS is the kernel's high-water mark of the process (VmHWM), so a
    short peak counts too; only growth in its last interval may be missed.
    """

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self._root = root
        self._interval = interval
        self._last: dict[int, tuple[str, float]] = {}
        self._peak_kib: dict[str, int] = {}
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
        peaks = {kind: kib / 1024 for kind, kib in self._peak_kib.items()}
        return totals, peaks

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            for pid in descendants(self._root):
                if pid == self._root:
                    continue
                sample = process_sample(pid)
                if sample is not None:
                    kind, cpu, peak_kib = sample
                    self._last[pid] = (kind, cpu)
                    self._peak_kib[kind] = max(self._peak_kib.get(kind, 0), peak_kib)


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
    """(name, CPU seconds, peak RSS in KiB so far) of a process; the name is its
    command's, as `ps` shows it."""
    try:
        name, rest = Path(f"/proc/{pid}/stat").read_text().split(" (", 1)[1].rsplit(")", 1)
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, IndexError, ValueError):
        return None
    fields = rest.split()  # fields[0] is the stat file's field 3
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    # The high-water mark of the process since it started its program (exec); absent
    # once it has exited.
    peak = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), "0")
    return name, cpu, int(peak)


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
