"""PostgreSQL for the pipelines' benchmarks: the server to use, a fresh database per run,
and what a run loaded.

After each run the script checks, in PostgreSQL, that the table holds every customer
once, and that the two pipelines loaded identical rows: the same columns with the same
types, and the same checksum over all customer columns (the loader's `_sdc_*` columns
aside, which hold times). It also checks that `_sdc_extracted_at` and `_sdc_batched_at`
are set on every row.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

if TYPE_CHECKING:
    import argparse

from lib.common import STREAM

SCHEMA = "cube"  # default_target_schema in meltano.yml
DEFAULT_SCHEMA = "melty"  # the loader's own default
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Postgres:
    """The server the pipelines load into, and a way to make and drop databases there."""

    dsn: str

    def connection_settings(self, database: str) -> dict[str, str]:
        """target-postgres's connection settings (it insists on a password, even "")."""
        params = conninfo_to_dict(self.dsn)
        return {
            "host": str(params.get("host") or "127.0.0.1"),
            "port": str(params.get("port") or 5432),
            "user": str(params.get("user") or "postgres"),
            "password": str(params.get("password") or ""),
            "database": database,
        }

    def loader_config(self, database: str) -> dict[str, object]:
        """The connection settings as a target-postgres config file holds them."""
        settings: dict[str, object] = dict(self.connection_settings(database))
        settings["port"] = int(str(settings["port"]))
        return settings

    def create(self) -> str:
        name = f"tap_cube_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop(self, name: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def connect(self, database: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(make_conninfo(self.dsn, dbname=database))


@dataclass(frozen=True)
class Loaded:
    """What one pipeline left in its database."""

    rows: int
    distinct_keys: int
    without_metadata: int  # rows lacking _sdc_extracted_at or _sdc_batched_at
    columns: tuple[tuple[str, str], ...]  # customer columns and their types, by name
    checksum: str


def count_rows(pg: Postgres, database: str, table: str) -> int:
    with pg.connect(database) as conn:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCHEMA, table))
        found = conn.execute(query).fetchone()
    return 0 if found is None else int(str(found[0]))


def loaded(pg: Postgres, database: str, schema: str) -> Loaded:
    with pg.connect(database) as conn:
        columns = tuple(
            (str(name), str(kind))
            for name, kind in conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s "
                "AND column_name NOT LIKE '\\_sdc\\_%%' "
                "ORDER BY column_name",
                (schema, STREAM),
            )
        )
        table = sql.Identifier(schema, STREAM)
        names = sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns)
        query = sql.SQL(
            "SELECT count(*), count(DISTINCT (assignment_id, crm__customer_id)), "
            "count(*) FILTER (WHERE _sdc_extracted_at IS NULL OR _sdc_batched_at IS NULL), "
            "md5(string_agg(ROW({names})::text, E'\\n' "
            "ORDER BY assignment_id, crm__customer_id)) FROM {table}"
        ).format(names=names, table=table)
        found = conn.execute(query).fetchone()
    assert found is not None
    rows, keys, bare, checksum = found
    return Loaded(int(str(rows)), int(str(keys)), int(str(bare)), columns, str(checksum))


def add_postgres_option(parser: argparse.ArgumentParser) -> None:
    """--pg-dsn: where a benchmark creates its databases."""
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("TAP_CUBE_TEST_PG_DSN", DEFAULT_DSN),
        help="a PostgreSQL database to connect to for creating the benchmark's databases "
        f"(default: TAP_CUBE_TEST_PG_DSN or {DEFAULT_DSN})",
    )


def server_version(pg: Postgres) -> str:
    """The server's version; ends the benchmark with one line if it cannot be reached."""
    try:
        with psycopg.connect(pg.dsn, connect_timeout=5) as conn:
            found = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        sys.exit(f"cannot connect to PostgreSQL ({exc}); start it or pass --pg-dsn")
    return "?" if found is None else str(found[0])
