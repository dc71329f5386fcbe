"""End to end: the project's meltano.yml runs `meltano run tap-cube target-postgres`.

Real Meltano, real plugins (installed from PyPI once per test session into temporary
`.meltano` directories), the in-process simulator reached over loopback, and a real
PostgreSQL database created for each test and dropped afterwards. Nothing is written
to the repository.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import threading
import time
import typing as t
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql

from cube_simulator import Assignment, Crm
from tap_cube.records import changes, deletions, memory_age
from tap_cube.records.coercion import CATCH_ALL
from tap_cube.records.completeness import CHECKPOINT_INTERVAL
from tap_cube.records.deletions import decode_ids
from tests.meltano_support import (
    FIELD_TYPES,
    FIELDS,
    MELTANO,
    REPO,
    RUN_TIMEOUT,
    SCHEMA,
    SIM_TOKEN,
    MeltanoHome,
    customers_only_env,
    tail,
)
from tests.test_coercion import represents, same_json

if t.TYPE_CHECKING:
    from cube_simulator import CubeSimulator

pytestmark = pytest.mark.slow


def sim_rows(sim: CubeSimulator, assignment_ids: list[int]) -> dict[tuple[int, str], dict]:
    """The customers the simulator serves, by (assignment_id, crm__customer_id)."""
    return {(a, str(c["crm__customer_id"])): c for a in assignment_ids for c in sim.customers(a)}


def expected_rows(sim: CubeSimulator, assignment_ids: list[int]) -> dict[tuple[int, str], dict]:
    """What the simulator serves, as PostgreSQL should hold it: typed, "" as NULL where typed."""
    rows: dict[tuple[int, str], dict] = {}
    for key, customer in sim_rows(sim, assignment_ids).items():
        row: dict[str, t.Any] = {"assignment_id": key[0]}
        for name, value in customer.items():
            kind = FIELD_TYPES.get(name, "text")
            if kind != "text" and value == "":
                value = None
            elif kind == "date":
                value = dt.date.fromisoformat(str(value))
            row[name] = value
        rows[key] = row
    return rows


def loaded_rows(conn: psycopg.Connection, columns: list[str]) -> dict[tuple[int, str], dict]:
    query = sql.SQL("SELECT {} FROM {}.customers").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(SCHEMA)
    )
    rows = {}
    for values in conn.execute(query):
        row = dict(zip(columns, values, strict=True))
        rows[(row["assignment_id"], row["crm__customer_id"])] = row
    return rows


def scalar(conn: psycopg.Connection, query: sql.Composed) -> t.Any:
    found = conn.execute(query).fetchone()
    assert found is not None
    return found[0]


def primary_key(conn: psycopg.Connection, table: str) -> list[str]:
    found = conn.execute(
        """
        SELECT a.attname
        FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = %s::regclass AND i.indisprimary
        ORDER BY array_position(i.indkey, a.attnum)
        """,
        (f"{SCHEMA}.{table}",),
    )
    return [name for (name,) in found]


def column_types(conn: psycopg.Connection, table: str) -> dict[str, str]:
    found = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        (SCHEMA, table),
    )
    return dict(found.fetchall())


def test_meltano_run_into_postgres_twice(simulator, meltano, pg_database, tmp_path):
    # Both assignments number their customers from 100000, as real assignments do.
    sim = simulator(
        [
            Assignment(11, 1200, custom_fields=FIELDS, customer_id_start=100000),
            Assignment(12, 700, custom_fields=FIELDS, customer_id_start=100000),
        ],
        token=SIM_TOKEN,
    )
    env = {
        "TAP_CUBE_API_URL": sim.url,
        "TAP_CUBE_ASSIGNMENT_IDS": "[11, 12]",
        **pg_database.target_env(),
    }
    project_file = (REPO / "meltano.yml").read_bytes()
    job = meltano("a")
    log = job.run("run", "tap-cube", "target-postgres", env=env, log=tmp_path / "first.log")
    assert "Inserting with SQL: COPY" in log  # use_copy from meltano.yml reached the loader

    expected = expected_rows(sim, [11, 12])
    columns = list(next(iter(expected.values())))
    with psycopg.connect(pg_database.dsn) as conn:
        assert primary_key(conn, "customers") == ["assignment_id", "crm__customer_id"]
        types = column_types(conn, "customers")
        first = loaded_rows(conn, columns)
    assert types["crm__custom_info__70"] == "bigint"
    assert types["crm__custom_info__71"] == "date"
    assert types["crm__custom_info__72"] == "boolean"
    assert types["crm__custom_info__64"] == "text"

    per_assignment = {a: sum(1 for k in first if k[0] == a) for a in (11, 12)}
    assert per_assignment == {11: len(sim.customers(11)), 12: len(sim.customers(12))}
    # The same customer id in two assignments is two customers, not one overwritten.
    shared = {c for a, c in first if a == 11} & {c for a, c in first if a == 12}
    assert len(shared) == 700
    assert first[(11, "100000")] != first[(12, "100000")]
    assert first == expected

    blank_typed = [
        (key, name)
        for key, row in sim_rows(sim, [11, 12]).items()
        for name in ("crm__custom_info__70", "crm__custom_info__71", "crm__custom_info__72")
        if row[name] == ""
    ]
    assert {name for _, name in blank_typed} == {
        "crm__custom_info__70",
        "crm__custom_info__71",
        "crm__custom_info__72",
    }
    assert all(first[key][name] is None for key, name in blank_typed)
    assert any(row["crm__custom_info__64"] == "" for row in first.values())  # text keeps ""
    names = "".join(row["crm__standard_info__name"] for row in first.values())
    assert all(ch in names for ch in "æøåÆØÅ")

    changes = {
        (11, "100003"): {
            "crm__standard_info__name": "Åsmund Ærø Øvergård",
            "crm__custom_info__70": 4711,
            "crm__custom_info__71": "2001-02-03",
        },
        (12, "100003"): {
            "crm__custom_info__64": "Blåbærstien 7",
            "crm__custom_info__71": "",
            "crm__custom_info__72": True,
        },
        (12, "100699"): {"crm__standard_info__email": "kari.nordmann@example.no"},
    }
    for (assignment_id, customer_id), change in changes.items():
        sim.update_customer(assignment_id, customer_id, change)
    job.run("run", "tap-cube", "target-postgres", env=env, log=tmp_path / "second.log")

    with psycopg.connect(pg_database.dsn) as conn:
        second = loaded_rows(conn, columns)
        deleted = scalar(
            conn,
            sql.SQL("SELECT count(*) FROM {}.customers WHERE _sdc_deleted_at IS NOT NULL").format(
                sql.Identifier(SCHEMA)
            ),
        )
    assert len(second) == len(first)
    assert deleted == 0
    assert second[(11, "100003")]["crm__standard_info__name"] == "Åsmund Ærø Øvergård"
    assert second[(11, "100003")]["crm__custom_info__70"] == 4711
    assert second[(11, "100003")]["crm__custom_info__71"] == dt.date(2001, 2, 3)
    assert second[(12, "100003")]["crm__custom_info__64"] == "Blåbærstien 7"
    assert second[(12, "100003")]["crm__custom_info__71"] is None
    assert second[(12, "100003")]["crm__custom_info__72"] is True
    assert second[(12, "100699")]["crm__standard_info__email"] == "kari.nordmann@example.no"
    assert second == expected_rows(sim, [11, 12])
    unchanged = set(first) - set(changes)
    assert all(second[key] == first[key] for key in unchanged)
    # Meltano rewrites meltano.yml when it lacks something it wants (a project_id).
    assert (REPO / "meltano.yml").read_bytes() == project_file


def test_parallel_jobs_on_disjoint_assignments_share_one_table(
    simulator, meltano, pg_database, tmp_path
):
    sim = simulator(
        [
            Assignment(a, n, custom_fields=FIELDS)
            for a, n in ((21, 900), (22, 300), (23, 800), (24, 0))
        ],
        token=SIM_TOKEN,
    )
    jobs = {"a": [21, 22], "b": [23, 24]}
    shared = {
        "TAP_CUBE_API_URL": sim.url,
        # One state backend for all jobs; each job keeps its own `.meltano` directory.
        "MELTANO_STATE_BACKEND_URI": (tmp_path / "state").as_uri(),
        # Streams that are not split by assignment belong to one job only.
        "TAP_CUBE__SELECT": json.dumps(["customers.*", "customer_custom_fields.*"]),
        **pg_database.target_env(),
    }
    (tmp_path / "state").mkdir()
    homes = {name: meltano(name) for name in jobs}

    def run_args(name: str) -> tuple[str, ...]:
        return ("run", "--state-id-suffix", name, "tap-cube", "target-postgres")

    def job_env(name: str) -> dict[str, str]:
        return {**shared, "TAP_CUBE_ASSIGNMENT_IDS": json.dumps(jobs[name])}

    # The first run into a new schema goes alone: target-postgres creates schemas and
    # tables by check-then-create, which two first runs can race on (see the README).
    homes["a"].run(*run_args("a"), env=job_env("a"), log=tmp_path / "first-run.log")
    processes = {
        name: homes[name].start(*run_args(name), env=job_env(name), log=tmp_path / f"{name}.log")
        for name in jobs
    }
    try:
        for process in processes.values():
            process.wait(timeout=RUN_TIMEOUT)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for name, process in processes.items():
        assert process.returncode == 0, f"job {name} failed:\n{tail(tmp_path / f'{name}.log')}"

    everything = [a for ids in jobs.values() for a in ids]
    expected = expected_rows(sim, everything)
    with psycopg.connect(pg_database.dsn) as conn:
        loaded = loaded_rows(conn, list(next(iter(expected.values()))))
        labelled = conn.execute(
            sql.SQL("SELECT DISTINCT assignment_id FROM {}.customer_custom_fields").format(
                sql.Identifier(SCHEMA)
            )
        ).fetchall()
    assert loaded == expected
    assert {a for (a,) in labelled} == set(everything)

    states = homes["a"].run(
        "state",
        "list",
        env={**shared, "MELTANO_CLI_LOG_LEVEL": "warning"},
        log=tmp_path / "states.log",
    )
    assert {line.strip() for line in states.splitlines() if line.strip()} >= {
        "simulator:tap-cube-to-target-postgres:a",
        "simulator:tap-cube-to-target-postgres:b",
    }


def count_by(conn: psycopg.Connection, table: str, *columns: str) -> dict[tuple[t.Any, ...], int]:
    query = sql.SQL("SELECT {cols}, count(*) FROM {schema}.{table} GROUP BY {cols}").format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        schema=sql.Identifier(SCHEMA),
        table=sql.Identifier(table),
    )
    return {tuple(row[:-1]): row[-1] for row in conn.execute(query)}


def test_meltano_run_with_data_owners_discovered(simulator, meltano, pg_database, tmp_path, today):
    start = today - dt.timedelta(days=6)
    sim = simulator(
        [],
        crms=[
            Crm(3, "B2C", 300, custom_fields=FIELDS),
            Crm(3, "B2B", 50, custom_fields=FIELDS),
            Crm(5, "B2C", 20, custom_fields=FIELDS, access="forbidden"),
        ],
        token=SIM_TOKEN,
        outcomes_start=start,
    )
    env = {
        "TAP_CUBE_API_URL": sim.url,
        # The `simulator` environment names assignments; with none, data owners are found.
        "TAP_CUBE_ASSIGNMENT_IDS": "[]",
        "TAP_CUBE_START_DATE": start.isoformat(),
        **pg_database.target_env(),
    }
    run = ("run", "--state-id-suffix", "discovered", "tap-cube", "target-postgres")
    job = meltano("a")
    log = job.run(*run, env=env, log=tmp_path / "first.log")
    assert "discover_crms: /campaigns names 3 data-owner CRMs" in log
    assert "crm_customers: skipped because not accessible: data owner 5 (B2C)" in log

    campaigns = [c["campaign__id"] for c in sim.campaigns() if c["data_owner__id"] == 3]
    pairs = [(3, "B2C"), (3, "B2B")]

    def expected(today: dt.date) -> dict[str, list[dict[str, t.Any]]]:
        return {
            "product_registrations": [
                r for c in campaigns for r in sim.product_registrations(c, start, today)
            ],
            "crm_product_registrations": [
                r for p in pairs for r in sim.product_registrations(p, start, today)
            ],
            "crm_call_outcomes": [r for p in pairs for r in sim.call_outcomes(p, start, today)],
        }

    served = expected(sim.today())
    with psycopg.connect(pg_database.dsn) as conn:
        assert primary_key(conn, "crm_customers") == [
            "data_owner_id",
            "crm_type",
            "crm__customer_id",
        ]
        assert count_by(conn, "crm_customers", "data_owner_id", "crm_type") == {
            (3, "B2C"): 300,
            (3, "B2B"): 50,
        }
        assert primary_key(conn, "crm_product_registrations") == [
            "data_owner_id",
            "crm_type",
            "crm__customer_id",
            "call_outcome__report_as__submitted_when_timestamp",
            "submission_seq",
        ]
        for table, rows in served.items():
            assert sum(count_by(conn, table, "crm__customer_id").values()) == len(rows), table
        anonymized = count_by(conn, "crm_product_registrations", "crm__standard_info__name")
        served_anonymized = [
            r for r in served["crm_product_registrations"] if r["crm__customer_id"] == ""
        ]
        assert anonymized.get(("Anonymized",)) == len(served_anonymized) > 0
        assert column_types(conn, "crm_product_registrations")["crm__custom_info__70"] == "bigint"

    # Two anonymized customers buy the same product in the same second, yesterday.
    yesterday = sim.today() - dt.timedelta(days=1)
    stamp = f"{yesterday}T21:15:07+01:00"
    for _ in range(2):
        sim.add_call_outcome(
            campaigns[0],
            yesterday,
            {
                "call_outcome__type": "Salg",
                "call_outcome__report_as__submitted_when_timestamp": stamp,
            },
            anonymized=True,
            products=[{"product__code": "BB100", "product__title": "Bredbånd 100"}],
        )
    log = job.run(*run, env=env, log=tmp_path / "second.log")
    served = expected(sim.today())
    with psycopg.connect(pg_database.dsn) as conn:
        for table, rows in served.items():
            # upserted on the key: the lookback window again, plus the two new sales
            assert sum(count_by(conn, table, "crm__customer_id").values()) == len(rows), table
        # Product rows carry only the local minute of their sale (its instant in Oslo).
        # The loader may keep the time in UTC; generated sales are all in working hours.
        minute = dt.datetime.fromisoformat(stamp[:16]).replace(tzinfo=ZoneInfo("Europe/Oslo"))
        times = (minute.strftime("%H:%M:%S"), minute.astimezone(dt.UTC).strftime("%H:%M:%S"))
        twins = conn.execute(
            sql.SQL(
                "SELECT crm__customer_id, submission_seq FROM {}.product_registrations "
                "WHERE to_char(call_outcome__report_as__submitted_when_timestamp, "
                "'HH24:MI:SS') IN (%s, %s) ORDER BY submission_seq"
            ).format(sql.Identifier(SCHEMA)),
            times,
        ).fetchall()
        types = column_types(conn, "product_registrations")
    assert twins == [("", 1), ("", 2)], types["call_outcome__report_as__submitted_when_timestamp"]


def test_messy_assignment_loads_without_loss(simulator, meltano, pg_database, tmp_path):
    """Odd values in typed fields: the load succeeds and each value is in its column or,
    as sent, in the jsonb catch-all column."""
    sim = simulator([Assignment(13, 900, custom_fields=FIELDS, messy=True)], token=SIM_TOKEN)
    env = customers_only_env(sim, pg_database, [13])
    meltano("a").run("run", "tap-cube", "target-postgres", env=env, log=tmp_path / "messy.log")

    columns = ["assignment_id", "crm__customer_id", *FIELD_TYPES, CATCH_ALL]
    with psycopg.connect(pg_database.dsn) as conn:
        types = column_types(conn, "customers")
        loaded = loaded_rows(conn, columns)
    assert types[CATCH_ALL] == "jsonb"
    assert types["crm__custom_info__70"] == "bigint"
    assert types["crm__custom_info__71"] == "date"
    assert types["crm__custom_info__72"] == "boolean"

    served = sim_rows(sim, [13])
    assert set(loaded) == set(served)
    kept_values: list[object] = []
    for key, original in served.items():
        row = loaded[key]
        kept = row[CATCH_ALL] or {}
        for name, kind in FIELD_TYPES.items():
            value, typed = original[name], row[name]
            if isinstance(typed, dt.date):
                typed = typed.isoformat()
            if value == "" or (kind != "text" and isinstance(value, str) and not value.strip()):
                assert typed == (value if kind == "text" else None)
            elif represents(kind, typed, value):
                assert name not in kept
            else:
                assert typed is None, (name, value, typed)
                assert same_json(kept[name], value), (name, value, kept)
                kept_values.append(value)
    # The odd values that fit no column reached PostgreSQL as sent, big numbers included.
    odd = ["abc", "0150", "2020-02-30", "2020-02-12 10:27", 20200212, "kanskje", 2, 5.5, True]
    assert {json.dumps(v) for v in [*odd, 2**70]} <= {json.dumps(v) for v in kept_values}


def test_nul_and_values_json_parsers_disagree_on_load_without_loss(
    simulator, meltano, pg_database, tmp_path
):
    """PostgreSQL refuses NUL in text and \\u0000 in jsonb; the load must not fail, and
    every value must be recoverable from the row (README: Values)."""
    sim = simulator([Assignment(17, 3, custom_fields=FIELDS)], token=SIM_TOKEN)
    rows = [
        '{"crm__customer_id": "1", "crm__standard_info__name": "Ola\\u0000Nordmann", '
        '"crm__custom_info__64": "gate\\u0000 1", "crm__custom_info__70": 3, '
        '"merknad\\u0000": "x", "ny": "a\\u0000b"}',
        '{"crm__customer_id": "2", "crm__standard_info__name": "\\ud800", '
        '"crm__custom_info__70": NaN, "ny": 1e309}',
        '{"crm__customer_id": "3", "crm__standard_info__name": "Kari", '
        '"ny": {"a": [1, "\\u0000"]}}',
    ]
    body = f'{{"count": 3, "next": null, "previous": null, "results": [{", ".join(rows)}]}}'
    sim.fail_next("/assignments/17/customers/", 200, body, times=2)  # discovery, then sync
    env = customers_only_env(sim, pg_database, [17])
    meltano("a").run("run", "tap-cube", "target-postgres", env=env, log=tmp_path / "nul.log")

    columns = ["assignment_id", "crm__customer_id", "crm__standard_info__name", CATCH_ALL]
    columns += ["crm__custom_info__64", "crm__custom_info__70"]
    with psycopg.connect(pg_database.dsn) as conn:
        loaded = {key[1]: row for key, row in loaded_rows(conn, columns).items()}
    assert set(loaded) == {"1", "2", "3"}
    for text in rows:
        sent = json.loads(text)
        row = loaded[sent["crm__customer_id"]]
        kept = dict(row[CATCH_ALL] or {})
        recovered = {k: v for k, v in row.items() if v is not None and k != CATCH_ALL}
        recovered |= kept
        recovered |= json.loads(recovered.pop("_cube_json", "{}"))
        recovered.pop("assignment_id")
        assert json.dumps(recovered, sort_keys=True) == json.dumps(sent, sort_keys=True), text
    assert loaded["1"]["crm__standard_info__name"] is None
    assert loaded["1"]["crm__custom_info__70"] == 3
    assert loaded["3"]["crm__standard_info__name"] == "Kari"


def test_a_failing_tap_ends_with_its_one_line_error(simulator, meltano, pg_database, tmp_path):
    sim = simulator([Assignment(31, 1200, custom_fields=FIELDS)], token=SIM_TOKEN)
    env = {
        **customers_only_env(sim, pg_database, [31]),
        "TAP_CUBE_MAX_RETRIES": "0",
    }
    job = meltano("a")
    args = (
        "run",
        "--state-id-suffix",
        f"fails-{uuid.uuid4().hex[:8]}",
        "tap-cube",
        "target-postgres",
    )
    # A first run leaves state, which Meltano passes to the tap from then on (to its
    # discovery run too, as a file the SDK's command line opens).
    job.run(*args, env=env, log=tmp_path / "first.log")

    failures = {
        "discovery": ("crm_custom_fields", 401, "authentication failed"),
        "sync": ("customers/?page=2", 403, "assignment 31 is not accessible"),
    }
    for stage, (path, status, message) in failures.items():
        sim.fail_next(path, status, json.dumps({"detail": "Nope."}))
        log = tmp_path / f"{stage}.log"
        lines = job.run_failing(*args, env=env, log=log)
        assert lines[-1].startswith(f"tap-cube: error: {message}"), f"{stage}:\n{tail(log)}"
        assert "Warning" not in log.read_text(encoding="utf-8"), f"{stage}:\n{tail(log)}"


# --- deletions ----------------------------------------------------------------------------


def customer_keys(conn: psycopg.Connection, *, deleted: bool) -> set[tuple[int, str]]:
    """(assignment_id, crm__customer_id) of the live rows, or of the soft-deleted ones."""
    query = sql.SQL(
        "SELECT assignment_id, crm__customer_id FROM {}.customers WHERE _sdc_deleted_at IS {}"
    ).format(sql.Identifier(SCHEMA), sql.SQL("NOT NULL" if deleted else "NULL"))
    return {(a, c) for a, c in conn.execute(query)}


def keys_of(sim: CubeSimulator, assignment_id: int) -> set[tuple[int, str]]:
    return {(assignment_id, str(c["crm__customer_id"])) for c in sim.customers(assignment_id)}


def tap_processes_of(parent: int) -> list[int]:
    """The tap-cube processes started, directly or not, by process `parent`."""
    parents: dict[int, int] = {}
    commands: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])

    def descends(pid: int) -> bool:
        while pid in parents and pid > 1:
            pid = parents[pid]
            if pid == parent:
                return True
        return False

    return [
        pid
        for pid, command in commands.items()
        if b"tap-cube" in command and b"--config" in command and descends(pid)
    ]


def run_stopped_at_page_2(
    job: MeltanoHome,
    args: tuple[str, ...],
    env: dict[str, str],
    sim: CubeSimulator,
    assignment_id: int,
    log: Path,
) -> None:
    """`meltano run` whose tap gets SIGTERM once it asked for page 2 of the assignment
    (mid-partition); the run must end as stopped."""
    earlier = len(sim.requests)
    process = job.start(*args, env=env, log=log)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        part = f"/{assignment_id}/"
        while not any(r.query == "page=2" and part in r.path for r in sim.requests[earlier:]):
            assert process.poll() is None, tail(log)
            assert time.monotonic() < deadline
            time.sleep(0.05)
        taps = tap_processes_of(process.pid)
        assert taps, "no tap-cube process found under meltano"
        for pid in taps:
            os.kill(pid, signal.SIGTERM)
        process.wait(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    assert "stopped by SIGTERM" in log.read_text(errors="replace")


class LiveCountWatch:
    """Polls the number of live customers while a run goes on; keeps the lowest seen."""

    def __init__(self, dsn: str) -> None:
        self.lowest: int | None = None
        self._stop = threading.Event()
        self._dsn = dsn
        self._thread = threading.Thread(target=self._poll)
        self._thread.start()

    def _poll(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            while not self._stop.wait(0.1):
                live = len(customer_keys(conn, deleted=False))
                self.lowest = live if self.lowest is None else min(self.lowest, live)

    def stop(self) -> int | None:
        self._stop.set()
        self._thread.join()
        return self.lowest


def test_deletions_reach_postgres_and_only_complete_reads_delete(
    simulator, meltano, pg_database, tmp_path
):
    sim = simulator(
        [Assignment(31, 1500, custom_fields=FIELDS), Assignment(32, 600, custom_fields=FIELDS)],
        token=SIM_TOKEN,
    )
    env = {
        **customers_only_env(sim, pg_database, [31, 32]),
        "TAP_CUBE_SKIP_INACCESSIBLE_ASSIGNMENTS": "true",
    }
    job = meltano("a")
    job.run("run", "tap-cube", "target-postgres", env=env, log=tmp_path / "first.log")

    # Customers removed from Cube stop being live after the next run, and only they.
    before = keys_of(sim, 31)
    sim.set_count(31, 1400, at="start")
    removed = before - keys_of(sim, 31)
    job.run("run", "tap-cube", "target-postgres", env=env, log=tmp_path / "second.log")
    with psycopg.connect(pg_database.dsn) as conn:
        assert customer_keys(conn, deleted=True) == removed
        assert customer_keys(conn, deleted=False) == keys_of(sim, 31) | keys_of(sim, 32)
        names = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM {}.customers WHERE _sdc_deleted_at IS NOT NULL "
                "AND crm__standard_info__name IS NOT NULL"
            ).format(sql.Identifier(SCHEMA))
        ).fetchone()
    assert names == (0,)  # a deleted customer keeps its key, not its personal data

    # An assignment skipped as inaccessible keeps all of its rows.
    sim.set_access(32, "forbidden")
    job.run("run", "tap-cube", "target-postgres", env=env, log=tmp_path / "third.log")
    with psycopg.connect(pg_database.dsn) as conn:
        assert keys_of(sim, 32) <= customer_keys(conn, deleted=False)
        assert customer_keys(conn, deleted=True) == removed
    sim.set_access(32, "ok")

    # A run stopped by SIGTERM deletes nothing, and live rows never drop below the truth.
    sim.set_count(31, 1300, at="start")
    removed_later = (before - removed) - keys_of(sim, 31)
    truth = len(keys_of(sim, 31) | keys_of(sim, 32))
    sim.latency = 0.5
    stopped_env = {**env, "TAP_CUBE_MAX_CONCURRENT_REQUESTS": "1"}
    watch = LiveCountWatch(pg_database.dsn)
    try:
        run_stopped_at_page_2(
            job, ("run", "tap-cube", "target-postgres"), stopped_env, sim, 31, tmp_path / "4.log"
        )
    finally:
        lowest = watch.stop()
    assert lowest is not None
    assert lowest >= truth
    with psycopg.connect(pg_database.dsn) as conn:
        assert customer_keys(conn, deleted=True) == removed

    # The next complete run deletes what the stopped one did not.
    sim.latency = 0.0
    job.run("run", "tap-cube", "target-postgres", env=env, log=tmp_path / "fifth.log")
    with psycopg.connect(pg_database.dsn) as conn:
        assert customer_keys(conn, deleted=True) == removed | removed_later
        assert customer_keys(conn, deleted=False) == keys_of(sim, 31) | keys_of(sim, 32)


def test_jobs_on_disjoint_assignments_delete_exactly_their_own(
    simulator, meltano, pg_database, tmp_path
):
    sim = simulator(
        [Assignment(a, n, custom_fields=FIELDS) for a, n in ((41, 700), (42, 300), (43, 500))],
        token=SIM_TOKEN,
    )
    jobs = {"a": [41, 42], "b": [43]}
    shared = {
        **customers_only_env(sim, pg_database, None),
        "MELTANO_STATE_BACKEND_URI": (tmp_path / "state").as_uri(),
    }
    (tmp_path / "state").mkdir()
    homes = {name: meltano(name) for name in jobs}

    def run(name: str, log: str) -> None:
        homes[name].run(
            *("run", "--state-id-suffix", name, "tap-cube", "target-postgres"),
            env={**shared, "TAP_CUBE_ASSIGNMENT_IDS": json.dumps(jobs[name])},
            log=tmp_path / f"{log}-{name}.log",
        )

    for name in jobs:
        run(name, "first")
    everything = keys_of(sim, 41) | keys_of(sim, 42) | keys_of(sim, 43)
    sim.set_count(41, 650, at="start")
    sim.set_count(43, 480)
    removed = everything - (keys_of(sim, 41) | keys_of(sim, 42) | keys_of(sim, 43))
    for name in jobs:
        run(name, "second")
    with psycopg.connect(pg_database.dsn) as conn:
        assert customer_keys(conn, deleted=True) == removed
        assert customer_keys(conn, deleted=False) == everything - removed
    assert {a for a, _ in removed} == {41, 43}


def test_meltano_config_test_reads_a_record(simulator, meltano, tmp_path):
    # `meltano config test` runs the tap and waits for a first record; the tap's own
    # options (--probe among them) must leave that path as the SDK made it.
    sim = simulator([Assignment(31, 30, custom_fields=FIELDS)], token=SIM_TOKEN)
    env = {"TAP_CUBE_API_URL": sim.url, "TAP_CUBE_ASSIGNMENT_IDS": "[31]"}
    log = meltano("a").run("config", "test", "tap-cube", env=env, log=tmp_path / "test.log")
    assert "Plugin configuration is valid" in log


def test_an_emptied_assignment_keeps_its_rows_and_the_run_fails_saying_so(
    simulator, meltano, pg_database, tmp_path
):
    sim = simulator(
        [Assignment(51, 800, custom_fields=FIELDS), Assignment(52, 300, custom_fields=FIELDS)],
        token=SIM_TOKEN,
    )
    env = customers_only_env(sim, pg_database, [51, 52])
    job = meltano("a")
    args = ("run", "--state-id-suffix", f"guard-{uuid.uuid4().hex[:8]}")
    job.run(*args, "tap-cube", "target-postgres", env=env, log=tmp_path / "first.log")
    everything = keys_of(sim, 51) | keys_of(sim, 52)

    # One empty answer (a server in trouble) must not soft-delete a whole assignment.
    sim.set_count(51, 0)
    log = tmp_path / "emptied.log"
    lines = job.run_failing(*args, "tap-cube", "target-postgres", env=env, log=log)
    assert lines[-1].startswith(
        "tap-cube: error: customers: assignment 51: 800 of the 800 rows it delivered before "
        "would be marked deleted (the list came back empty)"
    ), tail(log)
    assert "TAP_CUBE_MAX_DELETION_SHARE=1" in lines[-1]
    with psycopg.connect(pg_database.dsn) as conn:
        assert customer_keys(conn, deleted=True) == set()
        assert customer_keys(conn, deleted=False) == everything

    # Allowed on purpose, the rows go: the state still knew every one of them.
    allowed = {**env, "TAP_CUBE_MAX_DELETION_SHARE": "1"}
    job.run(*args, "tap-cube", "target-postgres", env=allowed, log=tmp_path / "allowed.log")
    with psycopg.connect(pg_database.dsn) as conn:
        assert customer_keys(conn, deleted=True) == everything - keys_of(sim, 52)
        assert customer_keys(conn, deleted=False) == keys_of(sim, 52)


# --- skip_unchanged -----------------------------------------------------------------------


def table_contents(dsn: str, table: str = "customers") -> dict[tuple[t.Any, ...], dict]:
    """Every row by key: its data columns and whether it is soft-deleted."""
    with psycopg.connect(dsn) as conn:
        key = primary_key(conn, table)
        # The loader's _sdc_* columns say when and in which batch a row came: they
        # differ between two loads of the same data.
        columns = sorted(c for c in column_types(conn, table) if not c.startswith("_sdc_"))
        query = sql.SQL("SELECT {}, _sdc_deleted_at IS NOT NULL FROM {}.{}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.Identifier(SCHEMA),
            sql.Identifier(table),
        )
        rows = {}
        for values in conn.execute(query):
            row = dict(zip([*columns, "deleted"], values, strict=True))
            rows[tuple(row[k] for k in key)] = row
    return rows


def rows_written(dsn: str, table: str = "customers") -> tuple[int, int]:
    """PostgreSQL's counts of rows inserted and updated in the table, once settled.

    target-postgres upserts a batch by inserting its new rows, then updating every row
    of the batch: a record sent is one update, and a new one an insert as well.
    Statistics are sent by each session when it ends or every so often, so the counts
    are read until two reads a second apart agree.
    """
    query = (
        "SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0) "
        "FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        last = (-1, -1)
        for _ in range(60):
            conn.execute("SELECT pg_stat_clear_snapshot()")
            found = conn.execute(query, (SCHEMA, table)).fetchone()
            current = (int(found[0]), int(found[1])) if found else (0, 0)
            if current == last:
                return current
            last = current
            time.sleep(1)
    pytest.fail(f"the statistics of {table} did not settle")


def written_since(dsn: str, before: tuple[int, int]) -> tuple[int, int]:
    """Rows inserted and updated since `before` (rows_written)."""
    inserted, updated = rows_written(dsn)
    return inserted - before[0], updated - before[1]


def tap_summaries(log: str) -> dict[str, tuple[int, int, int]]:
    """emitted, unchanged and deleted per partition, from the tap's INFO lines."""
    found = re.findall(
        r"(customers: assignment \d+) done: .*?; (\d+) emitted, (\d+) unchanged \(skipped\), "
        r"(\d+) deleted",
        log,
    )
    return {where: (int(e), int(u), int(d)) for where, e, u, d in found}


def change_customers(sim: CubeSimulator, assignment_id: int, positions: list[int]) -> set:
    """Changes the customers at `positions` of the list; their keys."""
    keys = set()
    customers = sim.customers(assignment_id)
    for n, position in enumerate(positions):
        customer_id = str(customers[position]["crm__customer_id"])
        sim.update_customer(
            assignment_id,
            customer_id,
            {"crm__standard_info__name": f"Endret {n} Ærlig", "crm__custom_info__70": 100 + n},
        )
        keys.add((assignment_id, customer_id))
    return keys


def test_skip_unchanged_loads_the_same_table_writing_only_what_changed(
    simulator, meltano, pg_database, other_pg_database, tmp_path
):
    sim = simulator(
        [Assignment(51, 1500, custom_fields=FIELDS), Assignment(52, 600, custom_fields=FIELDS)],
        token=SIM_TOKEN,
    )
    base = customers_only_env(sim, None, [51, 52])
    # The project's pipeline (skip_unchanged on in meltano.yml), and the same with it off.
    loads = {
        "skipping": ({**base, **pg_database.target_env()}, pg_database.dsn),
        "full": (
            {**base, **other_pg_database.target_env(), "TAP_CUBE_SKIP_UNCHANGED": "false"},
            other_pg_database.dsn,
        ),
    }
    job = meltano("a")

    def run_all(label: str) -> dict[str, str]:
        return {
            name: job.run(
                *("run", "--state-id-suffix", f"{name}-{tmp_path.name}"),
                *("tap-cube", "target-postgres"),
                env=env,
                log=tmp_path / f"{label}-{name}.log",
            )
            for name, (env, _) in loads.items()
        }

    run_all("first")
    written_before = rows_written(pg_database.dsn)

    changed = change_customers(sim, 51, [3, 700, 1499]) | change_customers(sim, 52, [0, 599])
    before = keys_of(sim, 51) | keys_of(sim, 52)
    sim.set_count(51, 1480, at="start")  # 20 removed
    sim.set_count(52, 610)  # 10 added
    after = keys_of(sim, 51) | keys_of(sim, 52)
    removed, added = before - after, after - before
    changed -= removed
    logs = run_all("second")

    skipping, full = (table_contents(dsn) for _, dsn in loads.values())
    assert skipping == full
    assert {k for k, row in skipping.items() if row["deleted"]} == removed
    assert {k for k, row in skipping.items() if not row["deleted"]} == after
    # Only what was sent: one update per changed, new or deleted row, one insert per new.
    inserted, updated = written_since(pg_database.dsn, written_before)
    assert updated <= len(changed | added | removed)
    assert inserted <= len(added)
    assert inserted + updated <= len(changed | removed) + 2 * len(added)
    assert tap_summaries(logs["skipping"]) == {
        "customers: assignment 51": (
            len(changed & keys_of(sim, 51)),
            1480 - len(changed & keys_of(sim, 51)),
            20,
        ),
        "customers: assignment 52": (len(changed & keys_of(sim, 52)) + 10, 600 - 2, 0),
    }


def test_a_run_stopped_mid_way_then_a_complete_run_delivers_every_change(
    simulator, meltano, pg_database, tmp_path
):
    sim = simulator([Assignment(61, 2000, custom_fields=FIELDS)], token=SIM_TOKEN)
    env = customers_only_env(sim, pg_database, [61])
    job = meltano("a")
    args = ("run", "--state-id-suffix", f"stopped-{tmp_path.name}", "tap-cube", "target-postgres")
    job.run(*args, env=env, log=tmp_path / "first.log")
    written_before = rows_written(pg_database.dsn)

    # Changes on the first page (sent before the stop) and on the last (never reached).
    changed = change_customers(sim, 61, [1, 2, 1998, 1999])
    sim.latency = 0.5
    stopped_env = {**env, "TAP_CUBE_MAX_CONCURRENT_REQUESTS": "1"}
    run_stopped_at_page_2(job, args, stopped_env, sim, 61, tmp_path / "stopped.log")

    sim.latency = 0.0
    changed |= change_customers(sim, 61, [1000])
    written_between = rows_written(pg_database.dsn)
    log = job.run(*args, env=env, log=tmp_path / "complete.log")
    contents = table_contents(pg_database.dsn)
    assert set(contents) == keys_of(sim, 61)
    assert not any(row["deleted"] for row in contents.values())
    with psycopg.connect(pg_database.dsn) as conn:
        loaded = loaded_rows(conn, list(next(iter(expected_rows(sim, [61]).values()))))
    assert loaded == expected_rows(sim, [61])
    # The stopped run sent page 1's changes after a STATE without the partition's hashes,
    # which the target confirmed: the complete run compares with nothing and sends the
    # partition whole, so a record the stopped run sent is never taken for unchanged.
    assert tap_summaries(log) == {"customers: assignment 61": (2000, 0, 0)}
    assert written_since(pg_database.dsn, written_between)[0] == 0
    assert written_since(pg_database.dsn, written_between)[1] <= 2000
    # The stopped run sent no more than what changed on the page it read.
    stopped_run = written_since(pg_database.dsn, written_before)[1] - 2000
    assert stopped_run <= len(changed)


def test_a_stream_renamed_by_a_map_after_a_skipping_run_gets_every_customer(
    simulator, meltano, pg_database, tmp_path
):
    """After a run with skip_unchanged (on in meltano.yml), an alias map sends customers
    to a new table: it gets every live customer with its current values, and no row for
    one removed before (its id named a row of the old table)."""
    sim = simulator([Assignment(71, 1200, custom_fields=FIELDS)], token=SIM_TOKEN)
    env = customers_only_env(sim, pg_database, [71])
    job = meltano("a")
    args = ("run", "--state-id-suffix", f"renamed-{tmp_path.name}", "tap-cube", "target-postgres")
    job.run(*args, env=env, log=tmp_path / "first.log")

    changed = change_customers(sim, 71, [20, 600])
    sim.set_count(71, 1190, at="start")  # 10 removed
    alias = json.dumps({"customers": {"__alias__": "cube_customers"}})
    log = job.run(*args, env={**env, "TAP_CUBE_STREAM_MAPS": alias}, log=tmp_path / "renamed.log")

    renamed = table_contents(pg_database.dsn, "cube_customers")
    assert set(renamed) == keys_of(sim, 71)
    assert not any(row["deleted"] for row in renamed.values())
    names = {key: row["crm__standard_info__name"] for key, row in renamed.items()}
    served = {(71, str(c["crm__customer_id"])): c for c in sim.customers(71)}
    assert names == {key: c["crm__standard_info__name"] for key, c in served.items()}
    assert changed <= set(renamed)
    assert tap_summaries(log) == {"customers: assignment 71": (1190, 0, 0)}
    assert "customers: assignment 71: sent whole this once: the streams its records go to" in log


def test_jobs_on_disjoint_assignments_each_send_only_their_own_changes(
    simulator, meltano, pg_database, tmp_path
):
    sim = simulator(
        [Assignment(a, n, custom_fields=FIELDS) for a, n in ((71, 700), (72, 300), (73, 500))],
        token=SIM_TOKEN,
    )
    jobs = {"a": [71, 72], "b": [73]}
    shared = {
        **customers_only_env(sim, pg_database, None),
        "MELTANO_STATE_BACKEND_URI": (tmp_path / "state").as_uri(),
    }
    (tmp_path / "state").mkdir()
    homes: dict[str, MeltanoHome] = {name: meltano(name) for name in jobs}

    def run(name: str, label: str) -> str:
        return homes[name].run(
            *("run", "--state-id-suffix", name, "tap-cube", "target-postgres"),
            env={**shared, "TAP_CUBE_ASSIGNMENT_IDS": json.dumps(jobs[name])},
            log=tmp_path / f"{label}-{name}.log",
        )

    for name in jobs:
        run(name, "first")
    written_before = rows_written(pg_database.dsn)
    changed = change_customers(sim, 71, [5, 6]) | change_customers(sim, 73, [400])
    logs = {name: run(name, "second") for name in jobs}
    assert tap_summaries(logs["a"]) == {
        "customers: assignment 71": (2, 698, 0),
        "customers: assignment 72": (0, 300, 0),
    }
    assert tap_summaries(logs["b"]) == {"customers: assignment 73": (1, 499, 0)}
    inserted, updated = written_since(pg_database.dsn, written_before)
    assert inserted == 0
    assert updated <= len(changed)
    expected = expected_rows(sim, [71, 72, 73])
    with psycopg.connect(pg_database.dsn) as conn:
        assert loaded_rows(conn, list(next(iter(expected.values())))) == expected


def test_a_customer_a_stopped_run_sent_and_that_is_gone_by_the_next_run_is_deleted(
    simulator, meltano, pg_database, tmp_path
):
    """Through Meltano and target-postgres: a run stopped by SIGTERM after it loaded a
    customer new to the state leaves (via the STATE it writes on the way out, which the
    target confirms) a state naming it, so the next complete run marks it deleted once
    it is gone from Cube."""
    sim = simulator([Assignment(71, 1200, custom_fields=FIELDS)], token=SIM_TOKEN)
    env = customers_only_env(sim, pg_database, [71])
    job = meltano("a")
    args = ("run", "--state-id-suffix", f"new-{tmp_path.name}", "tap-cube", "target-postgres")
    job.run(*args, env=env, log=tmp_path / "first.log")

    sim.set_count(71, 1201, at="start")  # a new customer, on page 1
    new = (71, str(sim.customers(71)[0]["crm__customer_id"]))
    sim.latency = 0.5
    stopped_env = {**env, "TAP_CUBE_MAX_CONCURRENT_REQUESTS": "1"}
    run_stopped_at_page_2(job, args, stopped_env, sim, 71, tmp_path / "stopped.log")
    with psycopg.connect(pg_database.dsn) as conn:
        assert new in customer_keys(conn, deleted=False)  # the stopped run loaded it

    sim.latency = 0.0
    sim.set_count(71, 1200, at="start")  # and it is gone again
    job.run(*args, env=env, log=tmp_path / "complete.log")
    with psycopg.connect(pg_database.dsn) as conn:
        assert customer_keys(conn, deleted=True) == {new}
        assert customer_keys(conn, deleted=False) == keys_of(sim, 71)


# --- memory that heals --------------------------------------------------------------------


def table_matches_server(dsn: str, sim: CubeSimulator, assignment_ids: list[int]) -> None:
    """Live rows are exactly what Cube serves, with its values; the others are deleted."""
    served = set().union(*(keys_of(sim, a) for a in assignment_ids))
    with psycopg.connect(dsn) as conn:
        assert customer_keys(conn, deleted=False) == served
        expected = expected_rows(sim, assignment_ids)
        loaded = loaded_rows(conn, list(next(iter(expected.values()))))
    assert {key: loaded[key] for key in served} == expected


def mark_untouched_rows_deleted(dsn: str, assignment_id: int, sent_whole_from: dt.datetime) -> int:
    """The documented remedy (docs/meltano.md) for rows no memory names: once a
    partition was sent whole, its live rows that send did not touch are gone from Cube."""
    with psycopg.connect(dsn) as conn:
        cursor = conn.execute(
            sql.SQL(
                "UPDATE {}.customers SET _sdc_deleted_at = now() WHERE assignment_id = %s "
                "AND _sdc_deleted_at IS NULL AND _sdc_batched_at < %s"
            ).format(sql.Identifier(SCHEMA)),
            (assignment_id, sent_whole_from.replace(tzinfo=None)),
        )
        return cursor.rowcount


def lines_naming(log: str, text: str) -> list[str]:
    return [line for line in log.splitlines() if text in line]


def test_full_refresh_after_removals_is_named_and_the_documented_remedy_heals_it(
    simulator, meltano, pg_database, tmp_path
):
    sim = simulator([Assignment(81, 1200, custom_fields=FIELDS)], token=SIM_TOKEN)
    env = customers_only_env(sim, pg_database, [81])
    job = meltano("a")
    args = ("run", "--state-id-suffix", f"refresh-{tmp_path.name}", "tap-cube", "target-postgres")
    job.run(*args, env=env, log=tmp_path / "first.log")
    sim.set_count(81, 1190, at="start")  # 10 removed

    started = dt.datetime.now(dt.UTC)
    log = job.run(*args[:1], "--full-refresh", *args[1:], env=env, log=tmp_path / "refresh.log")
    # No state reached the tap: it cannot know the 10, and says so with the recovery.
    named = lines_naming(log, "customers: assignment 81: no delivered ids in the state")
    assert len(named) == 1, tail(tmp_path / "refresh.log")
    assert "resend_before" in named[0]
    with psycopg.connect(pg_database.dsn) as conn:
        assert len(customer_keys(conn, deleted=False)) == 1200

    assert mark_untouched_rows_deleted(pg_database.dsn, 81, started) == 10
    table_matches_server(pg_database.dsn, sim, [81])
    # The memory the --full-refresh kept carries on: the next run finds later removals.
    sim.set_count(81, 1185, at="start")
    job.run(*args, env=env, log=tmp_path / "after.log")
    table_matches_server(pg_database.dsn, sim, [81])


def test_truncate_then_resend_before_heals_across_a_failed_run(
    simulator, meltano, pg_database, tmp_path
):
    sim = simulator(
        [Assignment(82, 1200, custom_fields=FIELDS), Assignment(83, 1200, custom_fields=FIELDS)],
        token=SIM_TOKEN,
    )
    env = customers_only_env(sim, pg_database, [82, 83])
    job = meltano("a")
    args = ("run", "--state-id-suffix", f"truncate-{tmp_path.name}", "tap-cube", "target-postgres")
    job.run(*args, env=env, log=tmp_path / "first.log")
    with psycopg.connect(pg_database.dsn) as conn:
        conn.execute(sql.SQL("TRUNCATE {}.customers").format(sql.Identifier(SCHEMA)))
    resend = {**env, "TAP_CUBE_RESEND_BEFORE": dt.datetime.now(dt.UTC).isoformat()}
    sim.set_count(83, 1195, at="start")  # removed meanwhile: still found

    # The resend fails part-way (assignment 83, page 2), then runs again.
    sim.fail_next("/assignments/83/customers/?page=2", 400, json.dumps({"detail": "Bad"}))
    failed = job.start(*args, env=resend, log=tmp_path / "failed.log")
    assert failed.wait(timeout=RUN_TIMEOUT) != 0
    log = job.run(*args, env=resend, log=tmp_path / "again.log")
    assert tap_summaries(log)["customers: assignment 83"] == (1195, 0, 5)
    table_matches_server(pg_database.dsn, sim, [82, 83])
    # Every partition was sent after resend_before: the setting may stay, and the next
    # run sends only what changed.
    log = job.run(*args, env=resend, log=tmp_path / "later.log")
    assert tap_summaries(log) == {
        "customers: assignment 82": (0, 1200, 0),
        "customers: assignment 83": (0, 1195, 0),
    }
    table_matches_server(pg_database.dsn, sim, [82, 83])


def meltano_state(job: MeltanoHome, *args: str, log: Path) -> str:
    """What `meltano state …` prints on stdout (its log lines go to stderr)."""
    import subprocess

    done = subprocess.run(
        [str(MELTANO), "state", *args],
        cwd=REPO,
        env=job.env({}),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_state_merge_of_one_partition_is_named_and_heals_with_the_documented_remedy(
    simulator, meltano, pg_database, tmp_path
):
    sim = simulator(
        [Assignment(84, 600, custom_fields=FIELDS), Assignment(85, 600, custom_fields=FIELDS)],
        token=SIM_TOKEN,
    )
    env = customers_only_env(sim, pg_database, [84, 85])
    job = meltano("a")
    suffix = f"merge-{tmp_path.name}"
    args = ("run", "--state-id-suffix", suffix, "tap-cube", "target-postgres")
    job.run(*args, env=env, log=tmp_path / "first.log")
    state_id = f"simulator:tap-cube-to-target-postgres:{suffix}"
    state = json.loads(meltano_state(job, "get", state_id, log=tmp_path / "get.log"))
    customers = state["singer_state"]["bookmarks"]["customers"]
    only_84 = [p for p in customers["partitions"] if p["context"] == {"assignment_id": 84}]
    merged = {"singer_state": {"bookmarks": {"customers": {"partitions": only_84}}}}
    (tmp_path / "merge.json").write_text(json.dumps(merged))
    meltano_state(
        job,
        "merge",
        state_id,
        "--input-file",
        str(tmp_path / "merge.json"),
        log=tmp_path / "merge.log",
    )
    sim.set_count(85, 590, at="start")  # 10 removed, which no memory names any more

    started = dt.datetime.now(dt.UTC)
    log = job.run(*args, env=env, log=tmp_path / "second.log")
    named = lines_naming(log, "customers: assignment 85: no delivered ids in the state")
    assert len(named) == 1, tail(tmp_path / "second.log")
    # A WARNING (Meltano shows the tap's lines without their level: tests/test_memory_age.py).
    assert "other partitions of customers have theirs" in named[0]
    assert mark_untouched_rows_deleted(pg_database.dsn, 85, started) == 10
    table_matches_server(pg_database.dsn, sim, [84, 85])


def change_back(sim: CubeSimulator, assignment_id: int, served: dict[str, object]) -> None:
    """Undo on the server: the customer as it was served before (change_customers)."""
    changed = ("crm__standard_info__name", "crm__custom_info__70")
    sim.update_customer(
        assignment_id, str(served["crm__customer_id"]), {k: served[k] for k in changed}
    )


def table_is_server_but(
    dsn: str, sim: CubeSimulator, assignment_id: int, *, stale: dict, extra: set
) -> None:
    """The table holds what Cube serves, except the `stale` rows, which hold what Cube
    served before (by key), and the `extra` keys, live though Cube no longer serves them."""
    served = keys_of(sim, assignment_id)
    expected = expected_rows(sim, [assignment_id])
    with psycopg.connect(dsn) as conn:
        assert customer_keys(conn, deleted=False) == served | extra
        loaded = loaded_rows(conn, list(next(iter(expected.values()))))
    for key, row in stale.items():
        assert loaded[key]["crm__standard_info__name"] == row["crm__standard_info__name"]
        assert loaded[key]["crm__standard_info__name"] != expected[key]["crm__standard_info__name"]
    assert {k: loaded[k] for k in served - set(stale)} == {
        k: expected[k] for k in served - set(stale)
    }


def refusing_writes_of(dsn: str, key: tuple[int, str], *, refuse: bool) -> None:
    """The customers table refuses (or takes again) any write of the row `key`: a load
    that fails part-way, after earlier batches were committed, as a revoked grant or a
    full disk makes it fail."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not refuse:
            conn.execute(
                sql.SQL("DROP TRIGGER refuse ON {}.customers").format(sql.Identifier(SCHEMA))
            )
            return
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.assignment_id = {} AND NEW.crm__customer_id = {} THEN "
                "RAISE EXCEPTION 'could not extend file: No space left on device'; END IF; "
                "RETURN NEW; END $$"
            ).format(sql.Literal(key[0]), sql.Literal(key[1]))
        )
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {}.customers "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            ).format(sql.Identifier(SCHEMA))
        )


def age_memory(job: MeltanoHome, state_id: str, tmp_path: Path) -> None:
    """The clock moved past max_memory_age_days (7 by default): each partition's memory
    was born 8 days before it was."""
    state = json.loads(meltano_state(job, "get", state_id, log=tmp_path / "age-get.log"))
    for partition in state["singer_state"]["bookmarks"]["customers"]["partitions"]:
        born = dt.datetime.fromisoformat(partition[memory_age.STATE_KEY])
        partition[memory_age.STATE_KEY] = (born - dt.timedelta(days=8)).isoformat()
    (tmp_path / "aged.json").write_text(json.dumps(state))
    meltano_state(
        job,
        "set",
        "--force",
        state_id,
        "--input-file",
        str(tmp_path / "aged.json"),
        log=tmp_path / "age-set.log",
    )


def test_a_target_failing_mid_run_then_undo_heals_as_documented(
    simulator, meltano, pg_database, tmp_path
):
    """docs/meltano.md, "The target fails mid-run": rows of the failed run are written and
    the state stays old, so X (changed, then changed back) stays stale until the age
    passes, and Y (added, then removed) stays live until the documented SQL."""
    sim = simulator([Assignment(86, 600, custom_fields=FIELDS)], token=SIM_TOKEN, page_size=100)
    env = customers_only_env(sim, pg_database, [86])
    job = meltano("a")
    args = ("run", "--state-id-suffix", f"failed-{tmp_path.name}", "tap-cube", "target-postgres")
    job.run(*args, env=env, log=tmp_path / "first.log")

    x_served = sim.customers(86)[5]
    (x,) = change_customers(sim, 86, [5])
    sim.set_count(86, 601, at="start")
    y = (86, str(sim.customers(86)[0]["crm__customer_id"]))
    (last,) = change_customers(sim, 86, [600])
    x_sent = expected_rows(sim, [86])[x]

    # Y and X go in the run's first batch (a long run's batches fill as they go); the
    # last page's change, in the next, finds the table refusing writes.
    refusing_writes_of(pg_database.dsn, last, refuse=True)
    log = tmp_path / "failed.log"
    failed = job.start(*args, env={**env, "TARGET_POSTGRES_BATCH_SIZE_ROWS": "2"}, log=log)
    assert failed.wait(timeout=RUN_TIMEOUT) != 0
    assert "No space left on device" in log.read_text(errors="replace"), tail(log)
    refusing_writes_of(pg_database.dsn, last, refuse=False)
    with psycopg.connect(pg_database.dsn) as conn:  # the first batch was written
        names = loaded_rows(conn, ["assignment_id", "crm__customer_id", "crm__standard_info__name"])
    assert names[x]["crm__standard_info__name"] == x_sent["crm__standard_info__name"]
    assert y in names

    change_back(sim, 86, x_served)
    sim.set_count(86, 600, at="start")
    job.run(*args, env=env, log=tmp_path / "next.log")
    # The state stayed old: X's memory matches what Cube serves again, and no memory names Y.
    table_is_server_but(pg_database.dsn, sim, 86, stale={x: x_sent}, extra={y})

    # Once the age has passed the partition is sent whole: X heals, Y does not.
    age_memory(job, f"simulator:tap-cube-to-target-postgres:failed-{tmp_path.name}", tmp_path)
    started = dt.datetime.now(dt.UTC)
    log_text = job.run(*args, env=env, log=tmp_path / "aged.log")
    assert tap_summaries(log_text) == {"customers: assignment 86": (600, 0, 0)}
    table_is_server_but(pg_database.dsn, sim, 86, stale={}, extra={y})
    assert mark_untouched_rows_deleted(pg_database.dsn, 86, started) == 1
    table_matches_server(pg_database.dsn, sim, [86])


def partition_state(job: MeltanoHome, state_id: str, assignment_id: int, log: Path) -> dict:
    """What Meltano keeps of an assignment's customers partition."""
    state = json.loads(meltano_state(job, "get", state_id, log=log))
    partitions: list[dict] = state["singer_state"]["bookmarks"]["customers"]["partitions"]
    (found,) = [p for p in partitions if p["context"] == {"assignment_id": assignment_id}]
    return found


def delivered(partition: dict) -> set[str]:
    numbers, others = decode_ids(partition[deletions.STATE_KEY])
    return {str(n) for n in numbers} | {str(o) for o in others}


def test_a_run_meltano_stops_mid_partition_keeps_no_state_and_heals_as_documented(
    simulator, meltano, pg_database, tmp_path
):
    """docs/meltano.md, "`meltano run --timeout`, SIGTERM to `meltano`": Meltano stops tap
    and target together; the target loads its rows and hands back the tap's STATE from
    the middle of the partition, which Meltano drops. Then as a failed target."""
    sim = simulator([Assignment(87, 600, custom_fields=FIELDS)], token=SIM_TOKEN, page_size=100)
    env = customers_only_env(sim, pg_database, [87])
    job = meltano("a")
    suffix = f"stopped-{tmp_path.name}"
    args = ("run", "--state-id-suffix", suffix, "tap-cube", "target-postgres")
    state_id = f"simulator:tap-cube-to-target-postgres:{suffix}"
    job.run(*args, env=env, log=tmp_path / "first.log")
    remembered = partition_state(job, state_id, 87, tmp_path / "first-state.log")

    x_served = sim.customers(87)[5]
    (x,) = change_customers(sim, 87, [5])
    sim.set_count(87, 601, at="start")
    y = (87, str(sim.customers(87)[0]["crm__customer_id"]))
    x_sent = expected_rows(sim, [87])[x]

    # Pages of 31 s: the tap writes its checkpoint (ids sent so far, Y's among them) when
    # page 2 arrives, a minute into the read; then SIGTERM to meltano (as a pod stop;
    # `--timeout` takes the same path in Meltano: the block is cancelled, and tap and
    # target get SIGTERM together). The first run's catalog spares the slow discovery.
    catalog = tmp_path / "catalog.json"
    catalog.write_bytes((job.sys_dir / "run" / "tap-cube" / "tap.properties.json").read_bytes())
    log = tmp_path / "stopped.log"
    stopped_env = {
        **env,
        "TAP_CUBE__CATALOG": str(catalog),
        "TAP_CUBE_MAX_CONCURRENT_REQUESTS": "1",
        # The target logs each STATE it hands back, and Meltano shows those lines.
        "TARGET_POSTGRES_LOGLEVEL": "debug",
        "MELTANO_CLI_LOG_LEVEL": "debug",
    }
    latency = 31.0
    assert 2 * latency > CHECKPOINT_INTERVAL > latency
    sim.latency = latency
    seen = len(sim.requests)
    process = job.start(*args, env=stopped_env, log=log)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        read_began = None
        while True:
            assert process.poll() is None, tail(log)
            assert time.monotonic() < deadline
            new = [r for r in sim.requests[seen:] if "/assignments/87/customers/" in r.path]
            seen = len(sim.requests)
            if new and read_began is None:  # a request is logged once answered
                read_began = time.monotonic() - latency
            elif new and read_began and time.monotonic() > read_began + CHECKPOINT_INTERVAL:
                break  # the page before this request arrived after the checkpoint was due
            time.sleep(0.1)
        time.sleep(2)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    sim.latency = 0.0
    text = log.read_text(errors="replace")
    assert process.returncode == 143, tail(log)
    assert "Received termination signal 15, draining all sinks" in text  # the target
    assert "stopped by SIGTERM" in text  # the tap
    assert not any(r.query == "page=7" for r in sim.requests)  # mid-partition

    # The target loaded X and Y and, as it drained, handed back a STATE the tap wrote
    # mid-partition (Y's id among its delivered ids); Meltano kept none of it.
    handed_back = [
        json.loads(line.split("Emitting completed target state ", 1)[1])
        for line in text.splitlines()
        if "Emitting completed target state " in line
    ]
    assert handed_back, tail(log)
    partitions = handed_back[-1]["bookmarks"]["customers"]["partitions"]
    (checkpoint,) = [p for p in partitions if p["context"] == {"assignment_id": 87}]
    assert y[1] in delivered(checkpoint)
    assert changes.STATE_KEY not in checkpoint  # a change went out before it
    assert partition_state(job, state_id, 87, tmp_path / "stopped-state.log") == remembered
    with psycopg.connect(pg_database.dsn) as conn:
        names = loaded_rows(conn, ["assignment_id", "crm__customer_id", "crm__standard_info__name"])
    assert names[x]["crm__standard_info__name"] == x_sent["crm__standard_info__name"]
    assert y in names

    # Then as a failed target (test_a_target_failing_mid_run_then_undo_heals_as_documented).
    change_back(sim, 87, x_served)
    sim.set_count(87, 600, at="start")
    job.run(*args, env=env, log=tmp_path / "next.log")
    table_is_server_but(pg_database.dsn, sim, 87, stale={x: x_sent}, extra={y})
    age_memory(job, state_id, tmp_path)
    started = dt.datetime.now(dt.UTC)
    job.run(*args, env=env, log=tmp_path / "aged.log")
    table_is_server_but(pg_database.dsn, sim, 87, stale={}, extra={y})
    assert mark_untouched_rows_deleted(pg_database.dsn, 87, started) == 1
    table_matches_server(pg_database.dsn, sim, [87])
