"""Running one process and measuring it: wall time, records, peak memory, CPU, other load.

- wall time, from starting the process to its exit, so interpreter start-up and every
  request it makes count against it;
- records: its stdout goes through a pipe to this script, which reads it in 1 MiB chunks
  and counts Singer RECORD messages of the customers streams (lines, for the naive loop);
  without a reader, stdout goes to /dev/null;
- peak memory and CPU time: the `ru_maxrss`, `ru_utime` and `ru_stime` that `wait4()`
  reports for the process, i.e. its own, not this script's or the simulator's: it is
  started by a small launcher (own_usage.py), since a child started straight from this
  script would report at least this script's own peak RSS;
- other load: the CPU time that other processes used during the run (from /proc).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lib.common import LIB, ROOT
from lib.machine import machine_busy_seconds, own_cpu_seconds, process_cpu_seconds

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

#: The start of a Singer RECORD message of a customers stream, as both taps write it
#: ("customers" for tap-cube, "customers_<id>" for tap-rest-api-msdk).
RECORD_MARK = b'"type":"RECORD","stream":"customers'
LINE_MARK = b"\n"
LAUNCHER = LIB / "own_usage.py"
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
    usage_read, usage_write = os.pipe()
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
            [sys.executable, "-S", str(LAUNCHER), str(usage_write), *argv],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=write_fd if read is not None else subprocess.DEVNULL,
            stderr=err,
            pass_fds=(usage_write,),
            start_new_session=True,  # so that a timeout kills the command, not only the launcher
        )
        os.close(usage_write)
        timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
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
            status = proc.wait()
            wall = time.perf_counter() - started
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            os.close(usage_read)
            raise
        finally:
            timer.cancel()
        with os.fdopen(usage_read, "rb") as usage_file:
            usage = usage_file.read().split()
        busy = machine_busy_seconds() - busy
        server = process_cpu_seconds(server_pid) - server
        own = own_cpu_seconds() - own
    if len(usage) != 3:
        msg = f"{argv[0]} was not run (exit {status}); see {log}"
        raise RuntimeError(msg)
    cpu = float(usage[1]) + float(usage[2])
    return Sample(
        wall=wall,
        records=records,
        peak_rss_kib=int(usage[0]),
        returncode=status,
        cpu=cpu,
        other_cpu=busy - cpu - server - own,
    )
