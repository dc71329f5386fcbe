"""Shared fixtures: the project's Cube simulator and ways to run the tap against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from time import sleep
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cube_simulator import Assignment, CubeSimulator, CustomField
from tests.meltano_support import (
    INSTALL_TIMEOUT,
    INSTALLED_PLUGINS,
    MELTANO,
    MeltanoHome,
    PgDatabase,
)

#: Hypothesis under CI (.ci/run sets CI): the same examples on every run, and more of
#: them, so that CI fails for a change in the code and never at random. Elsewhere (the
#: quick loop) random and fewer, so that each run tries new cases; what they find is
#: kept in the test as an explicit @example.
HYPOTHESIS_PROFILE = "ci" if os.environ.get("CI") else "dev"
# Hypothesis' own "ci" profile: derandomized, no example database, no deadline.
settings.register_profile("ci", settings.get_profile("ci"), max_examples=200)
settings.register_profile("dev", max_examples=50)
settings.load_profile(HYPOTHESIS_PROFILE)


def examples(*, dev: int, ci: int) -> int:
    """How many examples a costly test tries under the loaded profile."""
    return ci if HYPOTHESIS_PROFILE == "ci" else dev


TOKEN = "sim-token-7f3a9c"  # distinctive, so a leak is found by a plain search
USERNAME = "agent@example.no"
PASSWORD = "pw-Hemmelig-4711"


#: Where Cube's days are: the simulator's zone and the `timezone` setting's default.
CUBE_ZONE = "Europe/Oslo"


def cube_today(zone: str = CUBE_ZONE) -> date:
    """Today in `zone`, Cube's day: the machine's own date differs for an hour or two
    around midnight, and a test that used it would fail then."""
    return datetime.now(ZoneInfo(zone)).date()


#: How long before Cube's midnight a test waits for it: longer than a test that reads
#: day windows takes.
MIDNIGHT_MARGIN = timedelta(minutes=3)


def wait_before_starting(now: datetime) -> float:
    """Seconds a test that starts at `now` (in Cube's zone) waits: until just past
    midnight when that is less than MIDNIGHT_MARGIN away, else none."""
    midnight = datetime.combine(now.date() + timedelta(days=1), time(), now.tzinfo)
    left = midnight - now
    return left.total_seconds() + 1 if left < MIDNIGHT_MARGIN else 0.0


@pytest.fixture(autouse=True)
def away_from_cubes_midnight() -> None:
    """A test that began on one of Cube's days and ended on the next would see two todays:
    the tap's windows would end on one and the simulator's rows on the other. One that
    would begin in the last minutes of the day waits for the next."""
    sleep(wait_before_starting(datetime.now(ZoneInfo(CUBE_ZONE))))


@pytest.fixture
def today() -> date:
    """Cube's day when the test starts, read when a test runs, not when its module is
    imported (a run of the suite may pass midnight)."""
    return cube_today()


@pytest.fixture
def simulator() -> t.Iterator[t.Callable[..., CubeSimulator]]:
    """Start simulators with the test's data; all are stopped afterwards."""
    started: list[CubeSimulator] = []

    def start(assignments: list[Assignment], **kwargs: t.Any) -> CubeSimulator:
        kwargs.setdefault("token", TOKEN)
        kwargs.setdefault("username", USERNAME)
        kwargs.setdefault("password", PASSWORD)
        sim = CubeSimulator(assignments, **kwargs).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def plain_assignment(assignment_id: int, count: int, **kwargs: t.Any) -> Assignment:
    kwargs.setdefault("custom_fields", [CustomField(70, "Antall", "integer")])
    return Assignment(id=assignment_id, count=count, **kwargs)


def config_for(sim: CubeSimulator, assignment_ids: list[int], **overrides: t.Any) -> dict:
    config: dict[str, t.Any] = {
        "api_url": sim.url,
        "auth_token": TOKEN,
        "assignment_ids": assignment_ids,
        "max_retry_wait": 0.01,
    }
    config.update(overrides)
    return {key: value for key, value in config.items() if value is not None}


def selecting(catalog: dict, name: str) -> dict:
    """`catalog` with only the stream `name` selected."""
    for entry in catalog["streams"]:
        root = next(m["metadata"] for m in entry["metadata"] if m["breadcrumb"] == [])
        root["selected"] = entry["tap_stream_id"] == name
    return catalog


@dataclass
class TapRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def messages(self) -> list[dict[str, t.Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def records(self, stream: str = "customers") -> list[dict[str, t.Any]]:
        return [
            m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream
        ]

    def schema(self, stream: str = "customers") -> dict[str, t.Any]:
        return next(
            m["schema"] for m in self.messages if m["type"] == "SCHEMA" and m["stream"] == stream
        )

    @property
    def last_stderr_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def run_tap(
    config: dict,
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> TapRun:
    """Run the installed `tap-cube` command, as Meltano would."""
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    command = [str(Path(sys.executable).with_name("tap-cube")), "--config", str(config_file)]
    process = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return TapRun(process.returncode, process.stdout, process.stderr)


def assert_no_secrets(*texts: str) -> None:
    import base64

    basic = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    for text in texts:
        for secret in (TOKEN, PASSWORD, basic):
            assert secret not in text


DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _without_password(dsn: str) -> str:
    """The DSN as it may be shown in a message."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable DSN>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """A reachable PostgreSQL (TAP_CUBE_TEST_PG_DSN); skipped without one, failed under CI."""
    import psycopg

    dsn = os.environ.get("TAP_CUBE_TEST_PG_DSN") or DEFAULT_PG_DSN
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as exc:
        reason = f"no PostgreSQL at {_without_password(dsn)}: {' '.join(str(exc).split())}"
        if os.environ.get("CI"):
            # CI must prove the end-to-end path; a skip there would hide a broken setup.
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return dsn


@pytest.fixture(scope="session")
def meltano(
    pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> t.Callable[[str], MeltanoHome]:
    """`meltano(name)`: a `.meltano` directory with the plugins installed, once per name.

    Requests pg_dsn first, so that a machine without PostgreSQL skips before the slow
    install. The plugins' downloads come from uv's cache after the first session.
    """
    if not MELTANO.exists():
        pytest.fail(f"{MELTANO} is missing; run `uv sync` (meltano is in the dev group)")
    base = tmp_path_factory.mktemp("meltano")
    homes: dict[str, MeltanoHome] = {}

    def home(name: str) -> MeltanoHome:
        if name not in homes:
            found = MeltanoHome(base / name)
            found.run(
                "install",
                *INSTALLED_PLUGINS,
                env={},
                log=base / f"install-{name}.log",
                timeout=INSTALL_TIMEOUT,
            )
            homes[name] = found
        return homes[name]

    return home


@pytest.fixture
def pg_database(pg_dsn: str) -> t.Iterator[PgDatabase]:
    """A database of the test's own, dropped afterwards."""
    yield from new_database(pg_dsn)


@pytest.fixture
def other_pg_database(pg_dsn: str) -> t.Iterator[PgDatabase]:
    """A second database of the test's own, for a load to compare with."""
    yield from new_database(pg_dsn)


def new_database(pg_dsn: str) -> t.Iterator[PgDatabase]:
    name = f"tap_cube_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        info = admin.info
        database = PgDatabase(
            name=name,
            dsn=make_conninfo(pg_dsn, dbname=name),
            host=info.host,
            port=info.port,
            user=info.user,
            password=info.password or "",
        )
    try:
        yield database
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


#: An HTTP answer of the tests' own servers: status, headers, body.
Answer = tuple[int, dict[str, str], bytes]


class LocalServer:
    """An HTTP server on 127.0.0.1, in a thread, answering each GET with
    `answer(path, headers)`: the plumbing of the tests' own fake servers."""

    def __init__(self, answer: t.Callable[[str, dict[str, str]], Answer]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = answer(self.path, dict(self.headers))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class StaticCube:
    """A fake Cube of the tests' own, not the simulator: fixed JSON bodies by path.

    `bodies` maps a path substring to the JSON body answered for it (200); any other
    path answers an empty list (a plain one for custom-field metadata and campaigns, an
    empty DRF page otherwise). Authentication is not checked.
    """

    def __init__(self) -> None:
        self.bodies: dict[str, t.Any] = {}
        self._server = LocalServer(self._answer)
        self.url = f"{self._server.origin}/api/v1"

    def _answer(self, path: str, headers: dict[str, str]) -> Answer:
        found = [body for part, body in self.bodies.items() if part in path]
        plain = "custom_fields" in path or "/campaigns" in path
        empty = [] if plain else {"count": 0, "next": None, "results": []}
        body = json.dumps(found[0] if found else empty).encode()
        return 200, {"Content-Type": "application/json"}, body

    def serve_customers(self, assignment_id: int, customers: list[dict[str, t.Any]]) -> None:
        """One DRF page holding `customers`, for the assignment's customers list."""
        page = {"count": len(customers), "next": None, "previous": None, "results": customers}
        self.bodies[f"/assignments/{assignment_id}/customers/"] = page

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="module")
def static_cube() -> t.Iterator[StaticCube]:
    cube = StaticCube()
    yield cube
    cube.stop()


def read_in_process(
    config: dict[str, t.Any], state: dict[str, t.Any] | None, stream: str = "customers"
) -> tuple[list[dict[str, t.Any]], dict[str, t.Any]]:
    """Every partition's records of one stream, read in this process; and the state after.

    The state goes through JSON both ways, as between two real runs.
    """
    from tap_cube.streams.cube_stream import CubeStream
    from tap_cube.tap import TapCube

    given = json.loads(json.dumps(state)) if state is not None else None
    tap = TapCube(config=config, state=given)
    reader = tap.streams[stream]
    assert isinstance(reader, CubeStream)
    records: list[dict[str, t.Any]] = []
    try:
        for context in reader.partitions or [{}]:
            records += t.cast("list[dict[str, t.Any]]", list(reader.get_records(context)))
    finally:
        reader.close()
    after: dict[str, t.Any] = json.loads(json.dumps(tap.state))
    return records, after
