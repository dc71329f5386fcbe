"""Stopping a run on a signal: the run ends as failed, and says how far it got.

The SDK's own handlers write a state and exit 0 on a partial run, so a scheduler would
take it for a complete one. Here the handler stops the record writer between messages;
the writer raises `Stopped` in the main thread, and the command exits as a shell does
for a signal, 128 + its number.
"""

from __future__ import annotations

import signal
import sys
import threading
import typing as t

from tap_cube.errors import Stopped

if t.TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from tap_cube.api.fetch import RequestGate
    from tap_cube.output import BufferedRecordWriter

#: The signals that stop a run: a scheduler's stop, Ctrl-C, a closed terminal.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def handle_stop_signals(handler: Callable[[int, FrameType | None], None]) -> None:
    """Send the stop signals to `handler`; only the main thread may set signal handlers."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, handler)


def stop_at_once(signum: int, frame: FrameType | None) -> None:
    """Stop before anything was written: from the start of the process to the tap's own
    handlers (`stop_run`), which then take over."""
    raise Stopped(signum)


def stop_run(signum: int, gate: RequestGate, writer: BufferedRecordWriter) -> None:
    """Stop the run for `signum`: from a signal handler, in the main thread."""
    for other in STOP_SIGNALS:
        # A second signal must not interrupt the clean-up of the first.
        signal.signal(other, signal.SIG_IGN)
    gate.cancel()  # wake workers waiting to retry
    writer.stop(signum)


def exit_stopped(stop: Stopped | KeyboardInterrupt) -> t.NoReturn:
    """Say that the run is incomplete, and exit with 128 + the signal's number.

    A KeyboardInterrupt is a Ctrl-C that came before the tap set its handlers.
    """
    if isinstance(stop, KeyboardInterrupt):
        print("tap-cube: interrupted; this run is incomplete", file=sys.stderr, flush=True)
        sys.exit(130)
    name = signal.Signals(stop.signum).name
    print(
        f"tap-cube: stopped by {name} after {stop.records_written} records; this run is incomplete",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(128 + stop.signum)
