"""Shared fixtures: the project's Cube simulator and ways to run the tap against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tap_cube.simulator import Assignment, CubeSimulator, CustomField
from tests.meltano_support import (
    INSTALL_TIMEOUT,
    INSTALLED_PLUGINS,
    MELTANO,
    MeltanoHome,
    PgDatabase,
)

TOKEN = "sim-token-7f3a9c"  # distinctive, so a leak is found by a plain search
USERNAME = "agent@example.no"
PASSWORD = "pw-Hemmelig-4711"


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
