"""What benchmarks/tap_vs_others.py runs: its scenarios, and its contenders with how each
is installed, configured and started.

Scenarios: (a) no latency, 4 assignments of 50,000 customers; (b) 200 ms per page, 4
assignments of 10,000 customers; and tap-cube alone on 4 assignments totalling 100,000
and 1,000,000 customers, to see whether its memory grows with the data. `--quick` takes
a tenth.

Contenders:

- tap-cube: the `tap-cube` executable of this project's virtual environment, default
  settings (4 concurrent requests), with a catalog that selects only its `customers`
  stream, made by an untimed `--discover` run as Meltano would;
- tap-rest-api-msdk 1.4.2, the generic REST tap, installed into `benchmarks/.venv-msdk`
  and configured for DRF: records from `$.results[*]`, the next page from the `next`
  link (`next_page_token_path: "$.next"` with the `jsonpath_paginator` request style and
  the `hateoas_body` response style, which requests the link's path and query on
  `api_url`), one stream per assignment;
- a naive loop (benchmarks/lib/naive_loop.py) that follows `next` with `requests.get`
  and prints one JSON line per record, as in the Cube integration notes' code sample.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lib.common import ASSIGNMENT_IDS, BENCHMARKS, LIB, ROOT, TOKEN, child_env, progress
from lib.measurement import LINE_MARK, RECORD_MARK
from lib.simulator_process import PAGE_SIZE
from lib.tap_cube_setup import discover_catalog, sync_argv, tap_cube_executable, write_config

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

ASSIGNMENTS = len(ASSIGNMENT_IDS)
CONCURRENCY = 4  # tap-cube's default max_concurrent_requests


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    per_assignment: int
    latency: float = 0.0

    @property
    def assignment_ids(self) -> list[int]:
        return list(ASSIGNMENT_IDS)

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


MSDK_VENV = BENCHMARKS / ".venv-msdk"
MSDK_VERSION = "1.4.2"

TAP_CUBE = "tap-cube"
MSDK = "tap-rest-api-msdk"
NAIVE = "naive requests loop"


@dataclass(frozen=True)
class Contender:
    name: str
    #: argv for a run against the simulator at `url`; may write config files to workdir.
    command: Callable[[str, Scenario, Path], list[str]]
    #: What marks one customer record in its output.
    mark: bytes


def tap_cube_command(url: str, scenario: Scenario, workdir: Path) -> list[str]:
    """tap-cube from a catalog discovered once per scenario, untimed, as Meltano runs it
    before a sync; the timed run then makes no discovery requests."""
    tap = tap_cube_executable()
    config = write_config(
        workdir / "tap-cube.json",
        url,
        scenario.assignment_ids,
        max_concurrent_requests=CONCURRENCY,
    )
    catalog = workdir / f"tap-cube-catalog-{scenario.key}.json"
    if not catalog.exists():
        discover_catalog(tap, config, catalog)
    return sync_argv(tap, config, catalog)


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
    return [sys.executable, str(LIB / "naive_loop.py"), "--api-url", url, "--token", TOKEN, *ids]


CONTENDERS = (
    Contender(TAP_CUBE, tap_cube_command, RECORD_MARK),
    Contender(MSDK, msdk_command, RECORD_MARK),
    Contender(NAIVE, naive_command, LINE_MARK),
)


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
    """Install tap-rest-api-msdk into benchmarks/.venv-msdk unless it is there already."""
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
