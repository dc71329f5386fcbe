"""What the end-to-end tests share: a `.meltano` directory per job, a database per test.

The fixtures built on these (`meltano`, `pg_database`) are in conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cube_simulator import CustomField

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cube_simulator import CubeSimulator

REPO = Path(__file__).resolve().parent.parent
MELTANO = Path(sys.executable).with_name("meltano")
SIM_TOKEN = "sim-token"  # what the `simulator` environment of meltano.yml sends
SCHEMA = "cube"  # default_target_schema in meltano.yml
INSTALL_TIMEOUT = 900
# pipelinewise-target-postgres pins psycopg2-binary 2.9.5, whose wheels stop at Python 3.11;
# later Pythons would have to build it (a compiler and libpq's headers).
PIPELINEWISE_INSTALLS = sys.version_info < (3, 12)
#: What `meltano install` is given: every plugin of meltano.yml that installs here.
INSTALLED_PLUGINS: tuple[str, ...] = (
    ()  # all of them
    if PIPELINEWISE_INSTALLS
    else ("tap-cube", "target-postgres", "target-duckdb", "target-jsonl", "target-csv")
)
RUN_TIMEOUT = 600

FIELDS = [
    CustomField(64, "Adresse", "text"),
    CustomField(70, "Antall i husstanden", "integer"),
    CustomField(71, "Fødselsdato", "date"),
    CustomField(72, "Reservert mot telefonsalg", "boolean"),
]
FIELD_TYPES = {f"crm__custom_info__{f.id}": f.type for f in FIELDS}

# Settings a developer may have exported for their own runs; none may leak into a test.
FOREIGN_PREFIXES = (
    "MELTANO_",
    "TAP_CUBE_",
    "TARGET_POSTGRES_",
    "TARGET_CSV_",
    "TARGET_DUCKDB_",
    "TARGET_JSONL_",
)


def tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class MeltanoHome:
    """One `.meltano` directory with the plugins installed, as one job's worker has it."""

    sys_dir: Path

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
        env.update(
            MELTANO_PROJECT_ROOT=str(REPO),
            MELTANO_SYS_DIR_ROOT=str(self.sys_dir),
            MELTANO_ENVIRONMENT="simulator",
            MELTANO_CLI_LOG_LEVEL="info",
        )
        env.update(extra)
        return env

    def start(self, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                [str(MELTANO), *args],
                cwd=REPO,
                env=self.env(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def run(self, *args: str, env: dict[str, str], log: Path, timeout: float = RUN_TIMEOUT) -> str:
        process = self.start(*args, env=env, log=log)
        try:
            process.wait(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, f"meltano {' '.join(args)} failed:\n{tail(log)}"
        return log.read_text(encoding="utf-8", errors="replace")

    def run_failing(self, *args: str, env: dict[str, str], log: Path) -> list[str]:
        """A meltano run that must fail: the tap's non-empty lines, its error last."""
        process = self.start(*args, env=env, log=log)
        try:
            process.wait(timeout=RUN_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode != 0, f"meltano run did not fail:\n{tail(log)}"
        lines = [line for line in tap_lines(log.read_text(encoding="utf-8")) if line.strip()]
        assert lines, f"no tap output:\n{tail(log)}"
        return lines


def tap_lines(log: str) -> list[str]:
    """What the tap wrote to stderr, as Meltano logs it: `[info     ] tap-cube     <line>`."""
    marker = " tap-cube     "
    return [line.split(marker, 1)[1] for line in log.splitlines() if marker in line]


@dataclass
class PgDatabase:
    name: str
    dsn: str
    host: str
    port: int
    user: str
    password: str

    def target_env(self) -> dict[str, str]:
        """The loader's connection, as a deployment passes it: in the environment."""
        return {
            "TARGET_POSTGRES_HOST": self.host,
            "TARGET_POSTGRES_PORT": str(self.port),
            "TARGET_POSTGRES_USER": self.user,
            # The loader demands a password even where the server trusts the client.
            "TARGET_POSTGRES_PASSWORD": self.password,
            "TARGET_POSTGRES_DATABASE": self.name,
        }


def customers_only_env(
    sim: CubeSimulator, database: PgDatabase | None, assignment_ids: Sequence[int] | None
) -> dict[str, str]:
    """The settings of a `meltano run` that loads only `customers` from `sim`: from
    `assignment_ids` (None: each job sets its own) into `database` (None: set apart)."""
    env = {"TAP_CUBE_API_URL": sim.url, "TAP_CUBE__SELECT": json.dumps(["customers.*"])}
    if assignment_ids is not None:
        env["TAP_CUBE_ASSIGNMENT_IDS"] = json.dumps(list(assignment_ids))
    if database is not None:
        env.update(database.target_env())
    return env
