"""The `tap-cube` command: the SDK's command line, with every failure as one line.

Exit codes: 0 for a complete run, 1 for an error, 128 + the signal's number for a run
stopped by a signal (see `stopping`).
"""

from __future__ import annotations

import logging
import os
import sys
import typing as t

from tap_cube.errors import CubeError, Stopped, scrubber
from tap_cube.stopping import exit_stopped
from tap_cube.validation import check_inputs

if t.TYPE_CHECKING:
    from singer_sdk import Tap


def run(tap_class: type[Tap]) -> None:
    """Run the tap's command line, with errors as one line instead of a traceback."""
    try:
        check_inputs(sys.argv[1:], os.environ)
        tap_class.cli.main(prog_name="tap-cube")
    except CubeError as exc:
        _fail(str(exc))
    except (Stopped, KeyboardInterrupt) as exc:
        exit_stopped(exc)
    except Exception as exc:
        _fail(f"unexpected {type(exc).__name__}: {exc}", unexpected=True)


def _fail(message: str, *, unexpected: bool = False) -> t.NoReturn:
    logger = logging.getLogger("tap-cube")
    if logger.isEnabledFor(logging.DEBUG) or logging.getLogger().isEnabledFor(logging.DEBUG):
        logger.debug("Traceback of the error below", exc_info=True)
    hint = " (set TAP_CUBE_LOGLEVEL=DEBUG for a traceback)" if unexpected else ""
    sys.stderr.flush()
    print(f"tap-cube: error: {scrubber.scrub(message)}{hint}", file=sys.stderr, flush=True)
    sys.exit(1)
