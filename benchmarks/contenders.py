"""The contenders of benchmarks/run.py: how each is installed, configured and started.

- tap-cube: the `tap-cube` executable of this project's virtual environment, default
  settings (4 concurrent requests), with a catalog that selects only its `customers`
  stream, made by an untimed `--discover` run as Meltano would;
- tap-rest-api-msdk 1.4.2, the generic REST tap, installed into `benchmarks/.venv-msdk`
  and configured for DRF: records from `$.results[*]`, the next page from the `next`
  link (`next_page_token_path: "$.next"` with the `jsonpath_paginator` request style and
  the `hateoas_body` response style, which requests the link's path and query on
  `api_url`), one stream per assignment;
- a naive loop (benchmarks/naive_loop.py) that follows `next` with `requests.get` and
  prints one JSON line per record, as in the Cube integration notes' code sample.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from common import HERE, ROOT, TOKEN, child_env, progress
from measurement import LINE_MARK, RECORD_MARK
from scenarios import CONCURRENCY
from tap_cube_setup import discover_catalog, sync_argv, tap_cube_executable, write_config

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from scenarios import Scenario

MSDK_VENV = HERE / ".venv-msdk"
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
    return [sys.executable, str(HERE / "naive_loop.py"), "--api-url", url, "--token", TOKEN, *ids]


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
