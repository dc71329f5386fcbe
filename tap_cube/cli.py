"""The `tap-cube` command: the SDK's command line, with every failure as one line.

Exit codes: 0 for a complete run, 1 for an error, 2 for a command line that cannot be
parsed, 128 + the signal's number for a run stopped by a signal (see `stopping`).

This module imports little, so that the stop signals are handled from the first moments
of the process on; the tap and the SDK are imported once they are.
"""

from __future__ import annotations

import logging
import os
import sys
import typing as t

import click

from tap_cube import stopping
from tap_cube.errors import CubeError, Stopped, scrubber

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from singer_sdk import Tap

#: The exit status of a command line that cannot be parsed, as click and POSIX tools use.
USAGE_STATUS = 2


def main() -> None:
    """The `tap-cube` command, as pyproject.toml names it."""
    # Importing the SDK takes a moment; a signal meanwhile must end the run as any other.
    stopping.handle_stop_signals(stopping.stop_at_once)
    run(_tap_class)


def _tap_class() -> type[Tap]:
    from tap_cube.tap import TapCube

    return TapCube


def run(tap_class: Callable[[], type[Tap]]) -> None:
    """Run the tap's command line, with errors as one line instead of a traceback."""
    try:
        from tap_cube.validation import check_inputs

        check_inputs(sys.argv[1:], os.environ)
        status = tap_class().cli.main(prog_name="tap-cube", standalone_mode=False)
    except CubeError as exc:
        _fail(str(exc))
    except (Stopped, KeyboardInterrupt) as exc:
        stopping.exit_stopped(exc)
    except click.UsageError as exc:
        _fail(f"{exc.format_message()} (see tap-cube --help)", status=USAGE_STATUS)
    except click.ClickException as exc:
        _fail(exc.format_message())
    except click.Abort:
        stopping.exit_stopped(KeyboardInterrupt())
    except Exception as exc:
        _fail(f"unexpected {type(exc).__name__}: {exc}", unexpected=True)
    sys.exit(status if isinstance(status, int) else 0)


def _fail(message: str, *, unexpected: bool = False, status: int = 1) -> t.NoReturn:
    logger = logging.getLogger("tap-cube")
    if logger.isEnabledFor(logging.DEBUG) or logging.getLogger().isEnabledFor(logging.DEBUG):
        logger.debug("Traceback of the error below", exc_info=True)
    hint = " (set TAP_CUBE_LOGLEVEL=DEBUG for a traceback)" if unexpected else ""
    sys.stderr.flush()
    print(f"tap-cube: error: {scrubber.scrub(message)}{hint}", file=sys.stderr, flush=True)
    sys.exit(status)
