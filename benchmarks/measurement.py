"""Running one process and measuring it: wall time, records, peak memory, CPU, other load.

- wall time, from starting the process to its exit, so interpreter start-up and every
  request it makes count against it;
- records: its stdout goes through a pipe to this script, which reads it in 1 MiB chunks
  and counts Singer RECORD messages of the customers streams (lines, for the naive loop);
  without a reader, stdout goes to /dev/null;
- peak memory and CPU time: the `ru_maxrss`, `ru_utime` and `ru_stime` that `wait4()`
  reports for the process, i.e. its own, not this script's or the simulator's;
- other load: the CPU time that other processes used during the run (from /proc).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common import ROOT
from machine import machine_busy_seconds, own_cpu_seconds, process_cpu_seconds

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

#: The start of a Singer RECORD message of a customers stream, as both taps write it
#: ("customers" for tap-cube, "customers_<id>" for tap-rest-api-msdk).
RECORD_MARK = b'"type":"RECORD","stream":"customers'
LINE_MARK = b"\n"
CHUNK = 1 << 20

#: Reads a process's stdout from a file descriptor until EOF; returns the records in it.
OutputReader = Callable[[int], int]


@dataclass(frozen=True)
class Sample:
    wall: float
    records: int | None  # None when not counted
    peak_rss_kib: int
    returncode: int
    cpu: float
    other_cpu: float


def count_marks(fd: int, mark: bytes) -> int:
    """Occurrences of `mark` in everything read from `fd` until EOF, read 1 MiB at a time."""
    keep = len(mark) - 1
    tail = b""
    found = 0
    while chunk := os.read(fd, CHUNK):
        data = tail + chunk if tail else chunk
        found += data.count(mark)
        # A mark split across two reads is found in the next round; the kept tail is too
        # short to hold a whole one, so nothing is counted twice.
        tail = data[-keep:] if keep else b""
    return found


def counting(mark: bytes) -> OutputReader:
    """A reader that counts occurrences of `mark`."""
    return functools.partial(count_marks, mark=mark)


def widen_pipe(fd: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)


def measure(
    argv: Sequence[str],
    *,
    read: OutputReader | None,
    timeout: float,
    log: Path,
    env: dict[str, str],
    server_pid: int | None,
) -> Sample:
    """Run `argv` and measure it; `read` counts records in its output (None: /dev/null).

    Besides the process's own figures, the CPU time that processes other than it, the
    server and this script used meanwhile is taken from /proc, to show whether anything
    else competed for the machine.
    """
    read_fd = write_fd = -1
    with log.open("wb") as err:
        if read is not None:
            read_fd, write_fd = os.pipe()
            widen_pipe(write_fd)
        busy, server, own = (
            machine_busy_seconds(),
            process_cpu_seconds(server_pid),
            own_cpu_seconds(),
        )
        started = time.perf_counter()
        proc = subprocess.Popen(  # noqa: S603  # argv built here
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=write_fd if read is not None else subprocess.DEVNULL,
            stderr=err,
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.daemon = True
        timer.start()
        try:
            records: int | None = None
            if read is not None:
                os.close(write_fd)
                try:
                    records = read(read_fd)
                finally:
                    os.close(read_fd)
            # wait4 reports the resource usage of this one child: its own peak RSS.
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
        finally:
            timer.cancel()
        busy = machine_busy_seconds() - busy
        server = process_cpu_seconds(server_pid) - server
        own = own_cpu_seconds() - own
        proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return Sample(
        wall=wall,
        records=records,
        peak_rss_kib=usage.ru_maxrss,
        returncode=proc.returncode,
        cpu=cpu,
        other_cpu=busy - cpu - server - own,
    )
