"""Benchmark tap-cube against tap-rest-api-msdk and a naive `requests` loop.

Run by hand, not in CI, from the project root::

    uv run python benchmarks/run.py            # the full benchmark, a few minutes
    uv run python benchmarks/run.py --quick    # a tenth of the data, to try it out
    uv run python benchmarks/run.py --profile  # also profile tap-cube in scenario (a)
    uv run python benchmarks/run.py --wait-quiet 600  # on a shared machine

Every run talks to the project's Cube simulator (`python -m tap_cube.simulator`), started
as a separate process, a fresh one for every run so that no contender finds pages cached
by the one before. The contenders are

- tap-cube: the `tap-cube` executable of this project's virtual environment, default
  settings (4 concurrent requests), with a catalog that selects only its `customers`
  stream, made by an untimed `--discover` run as Meltano would;
- tap-rest-api-msdk 1.4.2, the generic REST tap, installed by this script into
  `benchmarks/.venv-msdk` and configured for DRF: records from `$.results[*]`, the next
  page from the `next` link (`next_page_token_path: "$.next"` with the
  `jsonpath_paginator` request style and the `hateoas_body` response style, which
  requests the link's path and query on `api_url`), one stream per assignment;
- a naive loop (benchmarks/naive_loop.py) that follows `next` with `requests.get` and
  prints one JSON line per record, as in the Cube integration notes' code sample.

Scenarios: (a) no latency, 4 assignments of 50,000 customers; (b) 200 ms per page, 4
assignments of 10,000 customers; and tap-cube alone on 4 assignments totalling 100,000
and 1,000,000 customers, to see whether its memory grows with the data.

What is measured, per run:

- wall time, from starting the contender's process to its exit, so interpreter start-up
  and every request a contender makes count against it (tap-cube's discovery aside, which
  runs before, as said above);
- records: each contender's stdout goes through a pipe to this script, which reads it in
  1 MiB chunks and counts Singer RECORD messages of the customers streams (lines, for the
  naive loop); a run that delivers fewer records than the simulator holds is flagged.
  `--no-count` sends stdout to /dev/null instead;
- peak memory and CPU time: the `ru_maxrss`, `ru_utime` and `ru_stime` that `wait4()`
  reports for the contender's process, i.e. its own, not this script's or the simulator's;
- other load: the CPU time that other processes used during the run (from /proc), since
  figures from a machine busy with something else are not worth keeping.

All simulators use `--next-style same` (next links point at the simulator itself), the
only style under which the naive loop works: the real service's links may name an
internal host and `http://`, which tap-cube never follows (it takes only their query).

Each contender runs once, untimed, before the timed runs, so that no timed run compiles
bytecode. Consecutive runs of the same thing vary by about 10% on a 2-CPU machine; for
figures to publish, take the median of a few (`--repeat 3`).

The figures are printed as Markdown, with the targets the project aims at and whether
this run met them; nothing is asserted. Add `benchmarks/.venv-msdk/` to .gitignore.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import math
import os
import platform
import pstats
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MSDK_VENV = HERE / ".venv-msdk"
MSDK_VERSION = "1.4.2"
TOKEN = "sim-token"  # noqa: S105  # the simulator's default token, not a secret
PAGE_SIZE = 500
CONCURRENCY = 4  # tap-cube's default max_concurrent_requests
ASSIGNMENTS = 4

TAP_CUBE = "tap-cube"
CUBE_STREAM = "customers"  # the one tap-cube stream selected: what the others extract
MSDK = "tap-rest-api-msdk"
NAIVE = "naive requests loop"

#: The start of a Singer RECORD message of a customers stream, as both taps write it
#: ("customers" for tap-cube, "customers_<id>" for tap-rest-api-msdk).
RECORD_MARK = b'"type":"RECORD","stream":"customers'
LINE_MARK = b"\n"
CHUNK = 1 << 20

# Targets the project aims at.
TARGET_RATE = 100_000.0  # (a) records/s
TARGET_VS_MSDK_A = 4.0  # (a) tap-cube records/s over msdk's
TARGET_VS_MSDK_B = 3.5  # (b) msdk wall time over tap-cube's
TARGET_VS_IDEAL = 1.5  # (b) tap-cube wall time over the ideal
TARGET_MEMORY = 1.2  # peak RSS at 1M customers over peak RSS at 100k

#: Above this share of the machine's CPU used by other processes, the report warns.
BUSY_MACHINE = 0.05


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    per_assignment: int
    latency: float = 0.0

    @property
    def assignment_ids(self) -> list[int]:
        return list(range(1, ASSIGNMENTS + 1))

    @property
    def total(self) -> int:
        return ASSIGNMENTS * self.per_assignment

    @property
    def pages(self) -> int:
        return ASSIGNMENTS * max(1, math.ceil(self.per_assignment / PAGE_SIZE))

    @property
    def ideal_seconds(self) -> float:
        """Every page's latency, spread over tap-cube's concurrent requests."""
        return self.pages * self.latency / CONCURRENCY

    def describe(self) -> str:
        latency = f"{self.latency * 1000:g} ms per page" if self.latency else "no latency"
        return (
            f"{latency}: {self.total:,} customers ({ASSIGNMENTS} assignments x "
            f"{self.per_assignment:,}; {self.pages:,} pages of {PAGE_SIZE})"
        )


def scenarios(*, quick: bool) -> tuple[Scenario, Scenario, Scenario, Scenario]:
    scale = 10 if quick else 1
    return (
        Scenario("a", "(a) throughput", 50_000 // scale),
        Scenario("b", "(b) latency", 10_000 // scale, latency=0.2),
        Scenario("m-small", "memory, small", 25_000 // scale),
        Scenario("m-large", "memory, large", 250_000 // scale),
    )


# --------------------------------------------------------------------------- simulator


class Simulator:
    """The Cube simulator in its own process, serving one scenario's data."""

    def __init__(self, scenario: Scenario, workdir: Path) -> None:
        self._scenario = scenario
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> Simulator:
        # A fresh name, which the simulator creates once it listens.
        fd, name = tempfile.mkstemp(dir=self._workdir, prefix="simulator-", suffix=".url")
        os.close(fd)
        ready = Path(name)
        ready.unlink()
        argv = [
            sys.executable,
            "-m",
            "tap_cube.simulator",
            "--port",
            "0",
            "--latency",
            str(self._scenario.latency),
            "--page-size",
            str(PAGE_SIZE),
            "--next-style",
            "same",
            "--token",
            TOKEN,
            "--ready-file",
            str(ready),
        ]
        for assignment_id in self._scenario.assignment_ids:
            argv += ["--assignment", f"{assignment_id}={self._scenario.per_assignment}"]
        log = (self._workdir / "simulator.log").open("ab")
        with log:
            self._proc = subprocess.Popen(  # noqa: S603  # argv built here
                argv,
                cwd=ROOT,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self._proc.poll() is not None:
                msg = f"the simulator exited with {self._proc.returncode}; see {log.name}"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                self._stop()
                msg = "the simulator did not start within 30 s"
                raise RuntimeError(msg)
            time.sleep(0.02)
        self.url = ready.read_text().strip()
        ready.unlink()
        return self

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


# --------------------------------------------------------------------------- contenders


@dataclass(frozen=True)
class Contender:
    name: str
    #: argv for a run against the simulator at `url`; may write config files to workdir.
    command: Callable[[str, Scenario, Path], list[str]]
    #: What marks one customer record in its output.
    mark: bytes


def tap_cube_executable() -> Path:
    exe = Path(sysconfig.get_path("scripts")) / "tap-cube"
    if not exe.exists():
        sys.exit(f"{exe} not found: run `uv sync` first")
    return exe


def tap_cube_config(url: str, scenario: Scenario, workdir: Path) -> Path:
    config = {
        "api_url": url,
        "auth_token": TOKEN,
        "assignment_ids": scenario.assignment_ids,
        "max_concurrent_requests": CONCURRENCY,
    }
    path = workdir / "tap-cube.json"
    path.write_text(json.dumps(config))
    return path


def tap_cube_catalog(url: str, scenario: Scenario, workdir: Path) -> Path:
    """A catalog of tap-cube's discovered streams with only `customers` selected.

    Discovery runs once per scenario, untimed, as Meltano runs it before a sync; the
    timed run then reads its schemas from the catalog and makes no discovery requests.
    """
    path = workdir / f"tap-cube-catalog-{scenario.key}.json"
    if path.exists():
        return path
    config = tap_cube_config(url, scenario, workdir)
    found = subprocess.run(  # noqa: S603  # argv built here
        [str(tap_cube_executable()), "--config", str(config), "--discover"],
        cwd=ROOT,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        sys.exit(f"tap-cube --discover failed:\n{found.stderr.decode(errors='replace')}")
    catalog = json.loads(found.stdout)
    names = {stream["tap_stream_id"] for stream in catalog["streams"]}
    if CUBE_STREAM not in names:
        sys.exit(f"tap-cube discovered no {CUBE_STREAM!r} stream, only {sorted(names)}")
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] == CUBE_STREAM
    path.write_text(json.dumps(catalog))
    return path


def tap_cube_command(url: str, scenario: Scenario, workdir: Path) -> list[str]:
    catalog = tap_cube_catalog(url, scenario, workdir)
    config = tap_cube_config(url, scenario, workdir)
    return [str(tap_cube_executable()), "--config", str(config), "--catalog", str(catalog)]


def msdk_command(url: str, scenario: Scenario, workdir: Path) -> list[str]:
    # hateoas_body requests the path of the next link (/api/v1/...) on api_url, so
    # api_url is the origin and stream paths carry the /api/v1 prefix.
    parts = urlsplit(url)
    prefix = parts.path.rstrip("/")
    config = {
        "api_url": f"{parts.scheme}://{parts.netloc}",
        "headers": {"Authorization": f"Token {TOKEN}", "Accept": "application/json"},
        "records_path": "$.results[*]",
        "next_page_token_path": "$.next",
        "pagination_request_style": "jsonpath_paginator",
        "pagination_response_style": "hateoas_body",
        "primary_keys": ["crm__customer_id"],
        "streams": [
            {"name": f"customers_{i}", "path": f"{prefix}/assignments/{i}/customers/"}
            for i in scenario.assignment_ids
        ],
    }
    path = workdir / "tap-rest-api-msdk.json"
    path.write_text(json.dumps(config))
    return [str(MSDK_VENV / "bin" / "tap-rest-api-msdk"), "--config", str(path)]


def naive_command(url: str, scenario: Scenario, workdir: Path) -> list[str]:
    ids = [str(i) for i in scenario.assignment_ids]
    return [sys.executable, str(HERE / "naive_loop.py"), "--api-url", url, "--token", TOKEN, *ids]


CONTENDERS = (
    Contender(TAP_CUBE, tap_cube_command, RECORD_MARK),
    Contender(MSDK, msdk_command, RECORD_MARK),
    Contender(NAIVE, naive_command, LINE_MARK),
)


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Run:
    contender: str
    scenario: Scenario
    wall: float
    records: int | None  # None when output was not counted
    peak_rss_kib: int
    returncode: int
    log: Path
    cpu: float  # the contender's user + system CPU seconds
    other_cpu: float  # CPU seconds other processes on the machine used meanwhile

    @property
    def complete(self) -> bool:
        return self.returncode == 0 and (
            self.records is None or self.records == self.scenario.total
        )

    @property
    def delivered(self) -> int:
        return self.scenario.total if self.records is None else self.records

    @property
    def rate(self) -> float:
        return self.delivered / self.wall

    @property
    def peak_mib(self) -> float:
        return self.peak_rss_kib / 1024

    @property
    def other_load(self) -> float:
        """The share of the machine's CPU capacity that other processes used meanwhile."""
        return max(0.0, self.other_cpu) / (self.wall * cpu_count())


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


def widen_pipe(fd: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)


@dataclass(frozen=True)
class Sample:
    wall: float
    records: int | None  # None when not counted
    peak_rss_kib: int
    returncode: int
    cpu: float
    other_cpu: float


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


def measure(
    argv: Sequence[str],
    *,
    mark: bytes | None,
    timeout: float,
    log: Path,
    env: dict[str, str],
    server_pid: int | None,
) -> Sample:
    """Run `argv` and measure it; `mark` is what to count in its output (None: /dev/null).

    Besides the contender's own figures, the CPU time that processes other than the
    contender, the server and this script used meanwhile is taken from /proc, to show
    whether anything else competed for the machine.
    """
    read_fd = write_fd = -1
    with log.open("wb") as err:
        if mark is not None:
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
            stdout=write_fd if mark is not None else subprocess.DEVNULL,
            stderr=err,
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.daemon = True
        timer.start()
        try:
            records: int | None = None
            if mark is not None:
                os.close(write_fd)
                try:
                    records = count_marks(read_fd, mark)
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


#: Variables that change how every contender runs, cleared for a like-for-like run with
#: Python's defaults: unbuffered output turns each print into a write(2), and without
#: bytecode files every start-up compiles its imports again. VIRTUAL_ENV and PYTHONPATH
#: would point the msdk tap at the project's environment.
CLEARED_ENV = ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV", "PYTHONPATH")


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}


def run_once(
    contender: Contender,
    scenario: Scenario,
    workdir: Path,
    *,
    count: bool,
    timeout: float,
    wait_quiet: float = 0.0,
    quiet: bool = False,
) -> Run:
    if wait_quiet > 0:
        wait_for_quiet(wait_quiet)
    with Simulator(scenario, workdir) as sim:
        argv = contender.command(sim.url, scenario, workdir)
        log = workdir / f"{scenario.key}-{contender.name.replace(' ', '-')}.log"
        sample = measure(
            argv,
            mark=contender.mark if count else None,
            timeout=timeout,
            log=log,
            env=child_env(),
            server_pid=sim.pid,
        )
    run = Run(
        contender.name,
        scenario,
        sample.wall,
        sample.records,
        sample.peak_rss_kib,
        sample.returncode,
        log,
        sample.cpu,
        sample.other_cpu,
    )
    counted = "not counted" if run.records is None else f"{run.records:,} records"
    if quiet and run.complete:
        return run
    progress(
        f"  {contender.name}: {run.wall:.2f} s, {counted}, {run.rate:,.0f} records/s, "
        f"CPU {run.cpu:.1f} s, peak RSS {run.peak_mib:.0f} MiB, exit {run.returncode}, "
        f"other processes {run.other_load:.0%} of the machine"
    )
    if not run.complete:
        progress(f"  {contender.name}: INCOMPLETE run; last lines of {log}:")
        for line in tail_lines(log, 8):
            progress(f"    {line}")
    return run


def tail_lines(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def median_run(runs: list[Run]) -> Run:
    """The run with the median wall time; peak memory is the highest of all runs."""
    ordered = sorted(runs, key=lambda r: r.wall)
    middle = ordered[(len(ordered) - 1) // 2]
    if all(r.complete for r in runs):
        return Run(
            middle.contender,
            middle.scenario,
            statistics.median(r.wall for r in runs),
            middle.records,
            max(r.peak_rss_kib for r in runs),
            middle.returncode,
            middle.log,
            statistics.median(r.cpu for r in runs),
            max(r.other_cpu for r in runs),
        )
    return next(r for r in runs if not r.complete)


def run_scenario(
    scenario: Scenario,
    contenders: Sequence[Contender],
    workdir: Path,
    *,
    repeat: int,
    count: bool,
    timeout: float,
    wait_quiet: float,
) -> dict[str, Run]:
    progress(f"{scenario.title}: {scenario.describe()}")
    runs: dict[str, list[Run]] = {c.name: [] for c in contenders}
    for attempt in range(repeat):
        if repeat > 1:
            progress(f" round {attempt + 1} of {repeat}")
        for contender in contenders:
            runs[contender.name].append(
                run_once(
                    contender,
                    scenario,
                    workdir,
                    count=count,
                    timeout=timeout,
                    wait_quiet=wait_quiet,
                )
            )
    return {name: median_run(done) for name, done in runs.items()}


# --------------------------------------------------------------------------- setup


def uv_executable() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        sys.exit("uv not found; it installs tap-rest-api-msdk into benchmarks/.venv-msdk")
    return uv


def msdk_versions() -> tuple[str, str] | None:
    """(tap-rest-api-msdk, singer-sdk) versions in benchmarks/.venv-msdk, if installed."""
    python = MSDK_VENV / "bin" / "python"
    if not python.exists():
        return None
    code = (
        "from importlib.metadata import version as v\n"
        "print(v('tap-rest-api-msdk'), v('singer-sdk'))"
    )
    found = subprocess.run(  # noqa: S603  # argv built here
        [str(python), "-c", code], capture_output=True, text=True, env=child_env(), check=False
    )
    words = found.stdout.split()
    return (words[0], words[1]) if found.returncode == 0 and len(words) == 2 else None


def ensure_msdk() -> tuple[str, str]:
    versions = msdk_versions()
    if versions is not None and versions[0] == MSDK_VERSION:
        return versions
    uv = uv_executable()
    python = MSDK_VENV / "bin" / "python"
    progress(f"installing tap-rest-api-msdk {MSDK_VERSION} into {MSDK_VENV.relative_to(ROOT)}")
    if not python.exists():
        subprocess.run(  # noqa: S603  # argv built here
            [uv, "venv", "--quiet", "--python", sys.executable, str(MSDK_VENV)],
            check=True,
            env=child_env(),
        )
    subprocess.run(  # noqa: S603  # argv built here
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--compile-bytecode",
            "--python",
            str(python),
            f"tap-rest-api-msdk=={MSDK_VERSION}",
            "setuptools<81",  # pkg_resources, which it still imports
        ],
        check=True,
        env=child_env(),
    )
    versions = msdk_versions()
    if versions is None:
        sys.exit(f"tap-rest-api-msdk does not import in {MSDK_VENV}")
    return versions


def warm_up(workdir: Path, *, timeout: float) -> None:
    """Run each contender once on a few records, untimed.

    Bytecode of everything it imports, lazily or not, is then cached, so no timed run
    compiles it; and a contender that cannot run at all is found before the long runs.
    """
    scenario = Scenario("warm-up", "warm-up", 10)
    progress("warm-up: one untimed run of each contender on 40 records")
    for contender in CONTENDERS:
        run = run_once(contender, scenario, workdir, count=True, timeout=timeout, quiet=True)
        if not run.complete:
            sys.exit(f"{contender.name} failed its warm-up run; see {run.log}")


# --------------------------------------------------------------------------- profile


def profile_tap_cube(
    scenario: Scenario, workdir: Path, *, top: int, timeout: float, wait_quiet: float
) -> str:
    """Run tap-cube under cProfile in `scenario`; a Markdown summary of the profile."""
    out = workdir / "tap-cube.prof"
    progress(f"profiling tap-cube: {scenario.describe()}")
    if wait_quiet > 0:
        wait_for_quiet(wait_quiet)
    with Simulator(scenario, workdir) as sim:
        argv = [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            str(out),
            *tap_cube_command(sim.url, scenario, workdir),
        ]
        sample = measure(
            argv,
            mark=RECORD_MARK,
            timeout=timeout,
            log=workdir / "profile.log",
            env=child_env(),
            server_pid=sim.pid,
        )
    wall, records, code = sample.wall, sample.records, sample.returncode
    if code != 0 or not out.exists():
        return f"The profiled run failed (exit {code}); see {workdir / 'profile.log'}."
    profile = pstats.Stats(str(out), stream=io.StringIO()).get_stats_profile()
    functions = list(profile.func_profiles.items())

    def table(title: str, key: Callable[[tuple[str, pstats.FunctionProfile]], float]) -> list[str]:
        lines = [
            f"Top {top} by {title}:",
            "",
            "| Function | Where | Calls | Own time (s) | Cumulative (s) |",
            "|---|---|---:|---:|---:|",
        ]
        for name, fp in sorted(functions, key=key, reverse=True)[:top]:
            where = f"{short_path(fp.file_name)}:{fp.line_number}"
            lines.append(
                f"| `{name}` | {where} | {fp.ncalls} | {fp.tottime:.2f} | {fp.cumtime:.2f} |"
            )
        return [*lines, ""]

    rate = (records or 0) / wall
    header = [
        f"### Profile of tap-cube, scenario {scenario.title}",
        "",
        f"Under cProfile: {wall:.1f} s wall, {records or 0:,} records ({rate:,.0f} records/s), "
        f"{profile.total_tt:.1f} s profiled. cProfile sees the main thread only (where "
        "records are checked, coerced, wrapped in messages and written); the fetch "
        "workers' HTTP and JSON decoding run in other threads and are not in these "
        f"tables. Profile data: `{out}` (deleted with the run's temporary directory "
        "unless --keep).",
        "",
    ]
    by_own = table("own time", lambda item: item[1].tottime)
    by_cumulative = table("cumulative time", lambda item: item[1].cumtime)
    return "\n".join(header + by_own + by_cumulative)


def short_path(path: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(ROOT))
    return path


# --------------------------------------------------------------------------- report


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


def version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def yes(met: bool) -> str:
    return "yes" if met else "**no**"


def records_cell(run: Run) -> str:
    if run.returncode != 0:
        return f"failed (exit {run.returncode})"
    if run.records is None:
        return f"{run.scenario.total:,} (not counted)"
    if run.records != run.scenario.total:
        return f"**{run.records:,} of {run.scenario.total:,}**"
    return f"{run.records:,}"


def contender_table(results: dict[str, Run], scenario: Scenario) -> list[str]:
    cube = results.get(TAP_CUBE)
    lines = [
        "| Contender | Records | Wall (s) | Records/s | CPU (s) | Peak RSS (MiB) "
        "| tap-cube speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in results.items():
        speedup = "-" if cube is None or name == TAP_CUBE else f"{cube.rate / run.rate:.1f}x"
        lines.append(
            f"| {name} | {records_cell(run)} | {run.wall:.2f} | {run.rate:,.0f} | "
            f"{run.cpu:.1f} | {run.peak_mib:.0f} | {speedup} |"
        )
    if scenario.latency and cube is not None:
        ideal = scenario.ideal_seconds
        lines.append(
            f"| ideal: {scenario.pages} pages x {scenario.latency:g} s / {CONCURRENCY} "
            f"concurrent | | {ideal:.2f} | {scenario.total / ideal:,.0f} | | | "
            f"tap-cube at {cube.wall / ideal:.2f}x ideal |"
        )
    return lines


@dataclass(frozen=True)
class Results:
    a: dict[str, Run]
    b: dict[str, Run]
    small: Run
    large: Run


def targets(results: Results) -> list[tuple[str, str, bool]]:
    rows: list[tuple[str, str, bool]] = []
    a_cube, a_msdk = results.a.get(TAP_CUBE), results.a.get(MSDK)
    if a_cube is not None:
        rows.append(
            (
                f"(a) tap-cube >= {TARGET_RATE:,.0f} records/s",
                f"{a_cube.rate:,.0f} records/s",
                a_cube.complete and a_cube.rate >= TARGET_RATE,
            )
        )
        if a_msdk is not None:
            ratio = a_cube.rate / a_msdk.rate
            rows.append(
                (
                    f"(a) tap-cube >= {TARGET_VS_MSDK_A:g}x tap-rest-api-msdk",
                    f"{ratio:.1f}x",
                    a_cube.complete and a_msdk.complete and ratio >= TARGET_VS_MSDK_A,
                )
            )
    b_cube, b_msdk = results.b.get(TAP_CUBE), results.b.get(MSDK)
    if b_cube is not None:
        if b_msdk is not None:
            ratio = b_msdk.wall / b_cube.wall
            rows.append(
                (
                    f"(b) tap-cube >= {TARGET_VS_MSDK_B:g}x faster than tap-rest-api-msdk",
                    f"{ratio:.1f}x",
                    b_cube.complete and b_msdk.complete and ratio >= TARGET_VS_MSDK_B,
                )
            )
        ideal = b_cube.scenario.ideal_seconds
        rows.append(
            (
                f"(b) tap-cube within {TARGET_VS_IDEAL:g}x of ideal ({ideal:.2f} s)",
                f"{b_cube.wall / ideal:.2f}x ({b_cube.wall:.2f} s)",
                b_cube.complete and b_cube.wall <= TARGET_VS_IDEAL * ideal,
            )
        )
    growth = results.large.peak_rss_kib / results.small.peak_rss_kib
    rows.append(
        (
            f"peak RSS at {results.large.scenario.total:,} <= {TARGET_MEMORY:g}x at "
            f"{results.small.scenario.total:,} customers",
            f"{growth:.2f}x ({results.large.peak_mib:.0f} vs {results.small.peak_mib:.0f} MiB)",
            results.small.complete and results.large.complete and growth <= TARGET_MEMORY,
        )
    )
    return rows


def report(
    results: Results,
    *,
    command: str,
    msdk: tuple[str, str],
    repeat: int,
    count: bool,
    elapsed: float,
    source: str,
    source_changed: bool,
) -> str:
    a, b = results.a[TAP_CUBE].scenario, results.b[TAP_CUBE].scenario
    small, large = results.small, results.large
    out = ["## Benchmark", ""]
    runs = [*results.a.values(), *results.b.values(), small, large]
    busiest = max(runs, key=lambda run: run.other_load)
    if busiest.other_load > BUSY_MACHINE:
        out += [
            f"**Other processes used up to {busiest.other_load:.0%} of the machine's CPU "
            f"during a run ({busiest.contender}, {busiest.scenario.title}): the figures are "
            "not those of a quiet machine. Run it again when nothing else runs.**",
            "",
        ]
    if source_changed:
        out += [
            "**tap_cube/ changed while the benchmark ran: its figures may mix versions. "
            "Run it again.**",
            "",
        ]
    out += [
        f"- Machine: {cpu_count()} CPUs (nproc), {cpu_model()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        f"- Versions: tap-cube {version_of('tap-cube')} at {source} (singer-sdk "
        f"{version_of('singer-sdk')}), tap-rest-api-msdk {msdk[0]} (singer-sdk {msdk[1]}), "
        f"requests {version_of('requests')}",
        f"- Command: `{command}` ({repeat} run(s) per figure, median wall time; "
        f"{'records counted from stdout' if count else 'stdout to /dev/null, not counted'}; "
        f"benchmark took {elapsed:.0f} s)",
        "- Server: the project's Cube simulator (`python -m tap_cube.simulator "
        f"--next-style same --page-size {PAGE_SIZE}`), a fresh process per run, on the same "
        "machine",
        "",
        f"### {a.title}: {a.describe()}",
        "",
        *contender_table(results.a, a),
        "",
        f"### {b.title}: {b.describe()}",
        "",
        *contender_table(results.b, b),
        "",
        "### tap-cube's memory against the number of customers (no latency)",
        "",
        "| Customers | Records | Wall (s) | Records/s | CPU (s) | Peak RSS (MiB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for run in (small, large):
        out.append(
            f"| {run.scenario.total:,} | {records_cell(run)} | {run.wall:.2f} | "
            f"{run.rate:,.0f} | {run.cpu:.1f} | {run.peak_mib:.0f} |"
        )
    out += [
        "",
        f"Peak RSS at {large.scenario.total:,} customers is "
        f"{large.peak_rss_kib / small.peak_rss_kib:.2f}x that at {small.scenario.total:,}.",
        "",
        "### Targets",
        "",
        "| Target | Measured | Met |",
        "|---|---|---|",
    ]
    out += [f"| {target} | {measured} | {yes(met)} |" for target, measured, met in targets(results)]
    out += [
        "",
        "Notes:",
        "",
        "- Wall time runs from process start to exit, interpreter start-up included.",
        f"- tap-cube syncs only `{CUBE_STREAM}`, selected in a catalog from an untimed "
        "`--discover` run (as Meltano runs it), so its timed run makes no discovery "
        "requests; tap-rest-api-msdk infers its schema from each stream's first page, one "
        "request per stream, within its timed run.",
        "- Peak RSS and CPU (user + system) are each contender's own (`wait4` rusage), "
        "not the simulator's, which runs on the same machine.",
        f"- Other processes (neither a contender, the simulator nor this script) used at "
        f"most {busiest.other_load:.0%} of the machine's CPU during any run (from "
        "/proc/stat).",
        f"- Contenders run with {', '.join(CLEARED_ENV)} cleared (Python's defaults), "
        "after one untimed warm-up run each, so bytecode is cached.",
        "- The simulator's next links point at the simulator (`--next-style same`) for all "
        "three. The real service's links may name an internal proxy host and `http://`: a "
        "client that follows them as given, like the naive loop, then fails or sends its "
        "token elsewhere, which tap-cube never does (it takes only the query). "
        "tap-rest-api-msdk with `hateoas_body` also requests only the link's path and query "
        "on its own api_url.",
        "- The naive loop and tap-rest-api-msdk request one page at a time; tap-cube "
        f"keeps up to {CONCURRENCY} requests in flight.",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark tap-cube against tap-rest-api-msdk and a naive requests loop.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the customers in every scenario"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per figure; the median is reported"
    )
    parser.add_argument(
        "--no-count",
        action="store_true",
        help="send output to /dev/null and do not count records",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run tap-cube under cProfile in scenario (a) and summarise the profile",
    )
    parser.add_argument("--profile-top", type=int, default=15, help="functions per table")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds before a run is killed"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each run, wait up to this long for other processes to leave the "
        "machine idle (for a shared machine)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the configs, logs and profile of the run"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    started = time.perf_counter()
    fingerprint = source_fingerprint()
    source = source_state()
    command = shlex.join(["uv", "run", "python", "benchmarks/run.py", *sys.argv[1:]])
    tap_cube_executable()
    msdk = ensure_msdk()
    a, b, small, large = scenarios(quick=args.quick)
    count = not args.no_count

    workdir = Path(tempfile.mkdtemp(prefix="tap-cube-bench-"))
    try:
        warm_up(workdir, timeout=args.timeout)

        def run(scenario: Scenario, contenders: Sequence[Contender]) -> dict[str, Run]:
            return run_scenario(
                scenario,
                contenders,
                workdir,
                repeat=args.repeat,
                count=count,
                timeout=args.timeout,
                wait_quiet=args.wait_quiet,
            )

        results_a = run(a, CONTENDERS)
        results_b = run(b, CONTENDERS)
        small_run = run(small, CONTENDERS[:1])[TAP_CUBE]
        large_run = run(large, CONTENDERS[:1])[TAP_CUBE]
        profile = (
            profile_tap_cube(
                a, workdir, top=args.profile_top, timeout=args.timeout, wait_quiet=args.wait_quiet
            )
            if args.profile
            else ""
        )
        elapsed = time.perf_counter() - started
        text = report(
            Results(results_a, results_b, small_run, large_run),
            command=command,
            msdk=msdk,
            repeat=args.repeat,
            count=count,
            elapsed=elapsed,
            source=source,
            source_changed=source_fingerprint() != fingerprint,
        )
        print(text)
        if profile:
            print()
            print(profile)
    finally:
        if args.keep:
            progress(f"configs, logs and profile kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
