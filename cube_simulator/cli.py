"""The command line: ``python -m cube_simulator`` serves a fake Cube API until stopped."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import tempfile
import threading
from typing import TYPE_CHECKING

from cube_simulator.capacity import CapacityModel
from cube_simulator.facade import CubeSimulator
from cube_simulator.fake_values import ID_STYLES
from cube_simulator.model import Assignment, Crm, CustomField, demo_assignments
from cube_simulator.paging import NEXT_STYLES, QUIRKS

if TYPE_CHECKING:
    from types import FrameType

# The fields given to assignments and CRMs created on the command line.
_PLAIN_FIELDS = (
    CustomField(64, "Address street", "text"),
    CustomField(70, "Antall i husstanden", "integer"),
    CustomField(71, "Fødselsdato", "date"),
)


def _assignment_arg(text: str) -> Assignment:
    ident, sep, count = text.partition("=")
    try:
        if not sep:
            raise ValueError(text)
        return Assignment(int(ident), int(count), custom_fields=list(_PLAIN_FIELDS))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ID=COUNT, got {text!r}") from None


def _crm_arg(text: str) -> Crm:
    ident, sep, count = text.partition("=")
    owner, slash, crm_type = ident.partition("/")
    try:
        if not sep or not slash or crm_type.upper() not in ("B2C", "B2B"):
            raise ValueError(text)
        return Crm(int(owner), crm_type.upper(), int(count), custom_fields=list(_PLAIN_FIELDS))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ID/B2C=COUNT, got {text!r}") from None


def _removal_arg(text: str) -> tuple[int, int]:
    ident, sep, count = text.partition("=")
    try:
        if not sep:
            raise ValueError(text)
        return int(ident), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ID=COUNT, got {text!r}") from None


def _bursts_arg(text: str) -> tuple[float, float]:
    every, sep, lasting = text.partition("/")
    try:
        if not sep:
            raise ValueError(text)
        return float(every), float(lasting)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected EVERY/LASTING, got {text!r}") from None


def _write_atomically(path: str, text: str) -> None:
    # A reader polling for the file never sees it half-written.
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cube-simulator-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cube_simulator", description="Serve a fake Cube API over HTTP."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per list page")
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--next-style", choices=NEXT_STYLES, default="foreign")
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--max-consecutive-failures", type=int, default=2)
    parser.add_argument("--retry-after", default="0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, help="requests served at once (default: all)")
    parser.add_argument("--queue", type=int, default=0, help="requests that may wait; 429 beyond")
    parser.add_argument(
        "--slow-above", type=int, help="list latency doubles with more requests than this"
    )
    parser.add_argument(
        "--bursts",
        type=_bursts_arg,
        metavar="EVERY/LASTING",
        help="429 to every request for the last LASTING seconds of every EVERY, e.g. 5/1",
    )
    parser.add_argument("--token", default="sim-token")
    parser.add_argument("--username", default="sim@example.com")
    parser.add_argument("--password", default="sim-password")
    parser.add_argument(
        "--assignment",
        action="append",
        type=_assignment_arg,
        default=[],
        metavar="ID=COUNT",
        help="serve this assignment (repeatable); without it and --crm: the demo data set",
    )
    parser.add_argument(
        "--id-style",
        choices=sorted(ID_STYLES),
        default="dense",
        help="how the --assignment customers' ids look",
    )
    parser.add_argument(
        "--crm",
        action="append",
        type=_crm_arg,
        default=[],
        metavar="ID/TYPE=COUNT",
        help="serve this data owner's CRM, e.g. 3/B2C=500 (repeatable)",
    )
    parser.add_argument(
        "--remove",
        action="append",
        type=_removal_arg,
        default=[],
        metavar="ID=COUNT",
        help="serve assignment ID without its first COUNT customers, as if deleted in Cube",
    )
    parser.add_argument(
        "--demo-data",
        action="store_true",
        help="serve the demo data set beside --assignment and --crm (without either it is "
        "served anyway)",
    )
    parser.add_argument("--quirk", action="append", choices=QUIRKS, default=[])
    parser.add_argument("--ready-file", help="write the base url here once listening")
    args = parser.parse_args(argv)
    for assignment in args.assignment:
        assignment.customer_id_style = args.id_style

    with_demo = args.demo_data or not (args.assignment or args.crm)
    simulator = CubeSimulator(
        [*args.assignment, *(demo_assignments() if with_demo else [])],
        crms=args.crm,
        quirks=args.quirk,
        token=args.token,
        username=args.username,
        password=args.password,
        page_size=args.page_size,
        latency=args.latency,
        next_style=args.next_style,
        failure_rate=args.failure_rate,
        max_consecutive_failures=args.max_consecutive_failures,
        retry_after=args.retry_after,
        seed=args.seed,
        host=args.host,
        port=args.port,
        capacity=CapacityModel(
            workers=args.workers, queue=args.queue, slow_above=args.slow_above, bursts=args.bursts
        ),
    )
    for assignment_id, removed in args.remove:
        served = len(simulator.customers(assignment_id))
        simulator.set_count(assignment_id, max(0, served - removed), at="start")
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    simulator.start()
    try:
        print(f"Cube simulator listening on {simulator.url}", flush=True)
        if args.ready_file:
            _write_atomically(args.ready_file, simulator.url)
        while not stopping.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0
