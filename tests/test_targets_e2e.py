"""End to end into every loader meltano.yml defines: what each one keeps of what the tap sent.

For each target: `meltano run tap-cube <loader>` twice against the simulator (a first
load, then a run after customers changed and others were removed from Cube), each
row compared value by value with the records tap-cube emits for the same data; and what
the README's Targets table says about the target (column types, key, deletions, the
catch-all on rows without it) is measured here, from TARGETS, which that table must match.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from dataclasses import dataclass
from decimal import Decimal

import duckdb
import psycopg
import pytest
from psycopg import sql

from cube_simulator import Assignment
from tap_cube.records.coercion import CATCH_ALL
from tap_cube.records.deletions import DELETED_AT
from tests.conftest import run_tap
from tests.meltano_support import (
    FIELDS,
    PIPELINEWISE_INSTALLS,
    REPO,
    SCHEMA,
    SIM_TOKEN,
    customers_only_env,
)

if t.TYPE_CHECKING:
    from pathlib import Path

    from cube_simulator import CubeSimulator
    from tests.meltano_support import MeltanoHome, PgDatabase

pytestmark = pytest.mark.slow

Key = tuple[int, str]
COLUMNS = {
    "integer": "crm__custom_info__70",
    "date": "crm__custom_info__71",
    "boolean": "crm__custom_info__72",
    "catch-all": CATCH_ALL,
}


@dataclass(frozen=True)
class Target:
    """What a loader keeps, as the README's Targets table states it."""

    loader: str
    package: str
    #: The column type of an integer, a date, a boolean and `_cube_unparsed`.
    types: dict[str, str]
    #: The table's primary key, or "none" (files).
    key: str
    #: "soft": rows kept with _sdc_deleted_at; "hard": rows removed; "appended": a line.
    deletions: str
    #: What a row without `_cube_unparsed` holds there.
    no_catch_all: str
    #: What an empty text ("") becomes: "''" (kept) or "NULL".
    empty_text: str
    #: What meltano.yml sets (or the test passes) for it to work with tap-cube.
    settings: str


KEY = "assignment_id, crm__customer_id"
TARGETS = {
    "target-postgres": Target(
        "target-postgres",
        "meltanolabs-target-postgres 0.8.1",
        {"integer": "bigint", "date": "date", "boolean": "boolean", "catch-all": "jsonb"},
        KEY,
        "soft",
        "JSON null ('null'::jsonb), not SQL NULL",
        "''",
        "add_record_metadata: true; a password, even an empty one",
    ),
    "target-postgres-pipelinewise": Target(
        "target-postgres-pipelinewise",
        "pipelinewise-target-postgres 2.1.2",
        {
            "integer": "bigint",
            "date": "character varying",
            "boolean": "boolean",
            "catch-all": "jsonb",
        },
        KEY,
        "hard",
        "SQL NULL",
        "NULL",
        "hard_delete: true (or add_metadata_columns: true for soft); a non-empty password",
    ),
    "target-duckdb": Target(
        "target-duckdb",
        "target-duckdb 0.8.0",
        {"integer": "BIGINT", "date": "VARCHAR", "boolean": "BOOLEAN", "catch-all": "JSON"},
        KEY,
        "soft",
        "SQL NULL",
        "NULL",
        "add_metadata_columns: true (or hard_delete: true)",
    ),
    "target-jsonl": Target(
        "target-jsonl",
        "target-jsonl 0.1.4",
        {"integer": "number", "date": "string", "boolean": "boolean", "catch-all": "object"},
        "none",
        "appended",
        "absent from the line",
        "''",
        "do_timestamp_file: false to append to one file per stream",
    ),
}


def readme_rows() -> list[str]:
    """The rows of the README's Targets table, as TARGETS says they must read."""
    rows = []
    for target in TARGETS.values():
        types = ", ".join(f"{kind} `{target.types[kind]}`" for kind in COLUMNS)
        rows.append(
            f"| `{target.loader}` ({target.package}) | {types} | {target.key} | "
            f"{target.deletions} | {target.no_catch_all} | {target.empty_text} | "
            f"{target.settings} |"
        )
    return rows


# --- the stores --------------------------------------------------------------------------


def plain(value: object) -> object:
    """A loaded value as the tap's JSON had it."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == int(value) else float(value)
    return value


class Store(t.Protocol):
    def rows(self) -> dict[Key, dict[str, t.Any]]: ...
    def column_types(self) -> dict[str, str]: ...
    def primary_key(self) -> str: ...
    def catch_all_sql_nulls(self) -> int: ...


@dataclass
class PostgresStore:
    dsn: str

    def _query(self, query: str | sql.Composed, *args: t.Any) -> list[tuple[t.Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(query, args or None).fetchall()

    def rows(self) -> dict[Key, dict[str, t.Any]]:
        with psycopg.connect(self.dsn) as conn:
            cursor = conn.execute(
                sql.SQL("SELECT * FROM {}.customers").format(sql.Identifier(SCHEMA))
            )
            names = [column.name for column in cursor.description or []]
            found: list[dict[str, t.Any]] = [
                dict(zip(names, map(plain, row), strict=True)) for row in cursor
            ]
        return {(int(r["assignment_id"]), str(r["crm__customer_id"])): r for r in found}

    def column_types(self) -> dict[str, str]:
        found = self._query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'customers'",
            SCHEMA,
        )
        return {str(name): str(kind) for name, kind in found}

    def primary_key(self) -> str:
        found = self._query(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
            "ORDER BY array_position(i.indkey, a.attnum)",
            f"{SCHEMA}.customers",
        )
        return ", ".join(name for (name,) in found) or "none"

    def catch_all_sql_nulls(self) -> int:
        query = sql.SQL("SELECT count(*) FROM {}.customers WHERE {} IS NULL").format(
            sql.Identifier(SCHEMA), sql.Identifier(CATCH_ALL)
        )
        return int(self._query(query)[0][0])


@dataclass
class DuckDbStore:
    path: Path

    def _query(self, query: str, *args: t.Any) -> tuple[list[str], list[tuple[t.Any, ...]]]:
        with duckdb.connect(str(self.path), read_only=True) as conn:
            cursor = conn.execute(query, list(args))
            return [d[0] for d in cursor.description or []], cursor.fetchall()

    def rows(self) -> dict[Key, dict[str, t.Any]]:
        names, found = self._query(f"SELECT * FROM {SCHEMA}.customers")
        rows: dict[Key, dict[str, t.Any]] = {}
        for values in found:
            row: dict[str, t.Any] = dict(zip(names, map(plain, values), strict=True))
            if isinstance(row.get(CATCH_ALL), str):
                row[CATCH_ALL] = json.loads(row[CATCH_ALL])
            rows[(int(row["assignment_id"]), str(row["crm__customer_id"]))] = row
        return rows

    def column_types(self) -> dict[str, str]:
        _, found = self._query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = 'customers'",
            SCHEMA,
        )
        return {str(name): str(kind) for name, kind in found}

    def primary_key(self) -> str:
        _, found = self._query(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE schema_name = ? "
            "AND table_name = 'customers' AND constraint_type = 'PRIMARY KEY'",
            SCHEMA,
        )
        return ", ".join(found[0][0]) if found else "none"

    def catch_all_sql_nulls(self) -> int:
        _, found = self._query(f"SELECT count(*) FROM {SCHEMA}.customers WHERE {CATCH_ALL} IS NULL")
        return int(found[0][0])


@dataclass
class JsonlStore:
    """target-jsonl's file: every record of every run, appended; no key, no types."""

    path: Path

    def lines(self) -> list[dict[str, t.Any]]:
        with self.path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def rows(self) -> dict[Key, dict[str, t.Any]]:
        # The latest line per key, as a reader of the files would take it.
        return {(r["assignment_id"], r["crm__customer_id"]): r for r in self.lines()}

    def column_types(self) -> dict[str, str]:
        kinds = {bool: "boolean", int: "number", str: "string", dict: "object"}
        types: dict[str, str] = {}
        for row in self.lines():
            for name, value in row.items():
                if value is not None:
                    types.setdefault(name, kinds.get(type(value), type(value).__name__))
        return types

    def primary_key(self) -> str:
        return "none"

    def catch_all_sql_nulls(self) -> int:
        return -1  # files have no SQL NULL


# --- the runs ------------------------------------------------------------------------------


def emitted_customers(sim: CubeSimulator, assignment_ids: list[int], tmp_path: Path) -> dict:
    """What tap-cube emits for this data, by key, as the pipeline's tap sends it."""
    config = {"api_url": sim.url, "auth_token": SIM_TOKEN, "assignment_ids": assignment_ids}
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    return {(r["assignment_id"], r["crm__customer_id"]): r for r in run.records()}


def assert_loaded_as_emitted(
    loaded: dict[Key, dict], emitted: dict[Key, dict], target: Target
) -> None:
    """Every value as emitted; "" as NULL where the target makes it NULL."""
    assert set(loaded) == set(emitted)
    empty = "" if target.empty_text == "''" else None
    empties = 0
    for key, record in emitted.items():
        row = loaded[key]
        for name in {*record, CATCH_ALL}:
            value = record.get(name)
            if value == "":
                empties += 1
                value = empty
            assert row.get(name) == value, (key, name, row.get(name), value)
    assert empties  # the data has empty texts, so the comparison says what becomes of them


def store_for(loader: str, pg: PgDatabase, tmp_path: Path) -> tuple[Store, dict[str, str]]:
    """The store a loader writes to, and the environment that points it there."""
    if loader == "target-postgres":
        return PostgresStore(pg.dsn), pg.target_env()
    if loader == "target-postgres-pipelinewise":
        env = {
            "TARGET_POSTGRES_PIPELINEWISE_HOST": pg.host,
            "TARGET_POSTGRES_PIPELINEWISE_PORT": str(pg.port),
            "TARGET_POSTGRES_PIPELINEWISE_USER": pg.user,
            # It refuses an empty password; the server trusts the client, any will do.
            "TARGET_POSTGRES_PIPELINEWISE_PASSWORD": pg.password or "unused",
            "TARGET_POSTGRES_PIPELINEWISE_DBNAME": pg.name,
        }
        return PostgresStore(pg.dsn), env
    if loader == "target-duckdb":
        path = tmp_path / "warehouse.duckdb"
        return DuckDbStore(path), {"TARGET_DUCKDB_FILEPATH": str(path)}
    if loader == "target-jsonl":
        out = tmp_path / "jsonl"
        return JsonlStore(out / "customers.jsonl"), {"TARGET_JSONL_DESTINATION_PATH": str(out)}
    raise AssertionError(loader)


@pytest.mark.parametrize(
    "loader",
    [
        pytest.param(
            loader,
            marks=pytest.mark.skipif(
                loader == "target-postgres-pipelinewise" and not PIPELINEWISE_INSTALLS,
                reason="pipelinewise-target-postgres needs psycopg2-binary 2.9.5: Python <= 3.11",
            ),
        )
        for loader in TARGETS
    ],
)
def test_every_loader_keeps_what_the_tap_sent(loader, simulator, meltano, pg_database, tmp_path):
    target = TARGETS[loader]
    assignments = [61, 62]
    sim = simulator(
        [
            Assignment(61, 1200, custom_fields=FIELDS, customer_id_start=100000),
            Assignment(62, 400, custom_fields=FIELDS, customer_id_start=100000, messy=True),
        ],
        token=SIM_TOKEN,
    )
    store, target_env = store_for(loader, pg_database, tmp_path)
    env = {**customers_only_env(sim, None, assignments), **target_env}
    if loader == "target-jsonl":
        # Files only append: a re-run must send every record, not only what changed.
        env["TAP_CUBE_SKIP_UNCHANGED"] = "false"
    job: MeltanoHome = meltano("a")
    project_file = (REPO / "meltano.yml").read_bytes()
    run = ("run", "--state-id-suffix", f"targets-{tmp_path.name}", "tap-cube", loader)

    # 1. A first load: every value as the tap emitted it, in columns of the stated types.
    emitted = emitted_customers(sim, assignments, tmp_path)
    job.run(*run, env=env, log=tmp_path / "first.log")
    assert_loaded_as_emitted(store.rows(), emitted, target)
    types = store.column_types()
    assert {kind: types[column] for kind, column in COLUMNS.items()} == target.types
    assert store.primary_key() == target.key
    without_catch_all = sum(1 for r in emitted.values() if CATCH_ALL not in r)
    assert 0 < without_catch_all < len(emitted)  # the messy assignment fills it on some rows
    nulls = store.catch_all_sql_nulls()
    if target.no_catch_all == "SQL NULL":
        assert nulls == without_catch_all
    elif target.no_catch_all.startswith("JSON null"):
        assert nulls == 0  # the rows without it hold the JSON value null instead
    else:
        assert isinstance(store, JsonlStore)
        assert sum(1 for line in store.lines() if CATCH_ALL not in line) == without_catch_all

    # 2. Customers changed (upserted: each row replaced, or a line more in files) and
    # customers removed from Cube (deletion records, kept as the target keeps them).
    before = set(emitted)
    sim.update_customer(61, "100103", {"crm__standard_info__name": "Åsmund Ærø Øvergård"})
    sim.update_customer(62, "100007", {"crm__custom_info__70": 4711})
    sim.set_count(61, 1150, at="start")
    emitted = emitted_customers(sim, assignments, tmp_path)
    removed = before - set(emitted)
    assert len(removed) == 50
    job.run(*run, env=env, log=tmp_path / "second.log")
    rows = store.rows()
    live = {key: row for key, row in rows.items() if row.get(DELETED_AT) is None}
    assert_loaded_as_emitted(live, emitted, target)
    assert live[(61, "100103")]["crm__standard_info__name"] == "Åsmund Ærø Øvergård"
    assert live[(62, "100007")]["crm__custom_info__70"] == 4711
    gone = {key: row for key, row in rows.items() if key not in live}
    if target.deletions == "hard":
        assert gone == {}
        assert not removed & set(rows)
    else:  # soft, or appended lines: the key with _sdc_deleted_at and no personal data
        assert set(gone) == removed
        assert all(row.get("crm__standard_info__name") is None for row in gone.values())
    if isinstance(store, JsonlStore):
        lines = store.lines()
        assert len(lines) == 1600 + 1550 + 50  # every run's records, appended
    assert (REPO / "meltano.yml").read_bytes() == project_file


def test_the_readme_states_what_these_tests_check():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    docs = REPO / "docs" / "targets.md"
    text = readme + (docs.read_text(encoding="utf-8") if docs.exists() else "")
    missing = [row for row in readme_rows() if row not in text]
    assert not missing, "update the Targets table:\n" + "\n".join(readme_rows())
