"""Runs a command and reports its own resource usage, not that of whoever started it.

Linux keeps a process's peak RSS across exec(), and a child started by fork or vfork
begins with its parent's: wait4() on a child of a large benchmark process reports at
least that process's own peak, whatever the child used. This small process stands
between the two, so the figure is the command's (or this launcher's few MiB).

    python -S own_usage.py FD COMMAND [ARG ...]

writes "peak_rss_kib user_seconds system_seconds" to file descriptor FD and exits as
the command did (with its signal, if a signal ended it).
"""

import os
import signal
import sys


def main() -> None:
    fd, argv = int(sys.argv[1]), sys.argv[2:]
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    os.write(fd, f"{usage.ru_maxrss} {usage.ru_utime} {usage.ru_stime}\n".encode())
    os.close(fd)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
