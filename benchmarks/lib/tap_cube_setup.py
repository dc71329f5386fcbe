"""How a benchmark runs tap-cube: its executable, its config file, and a catalog that
selects only the `customers` stream, made by an untimed `--discover` run as Meltano
makes it, so that a timed run reads its schemas from the catalog and makes no discovery
requests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING

from lib.common import ASSIGNMENT_IDS, ROOT, STREAM, TOKEN, base_env

if TYPE_CHECKING:
    from collections.abc import Sequence


def tap_cube_executable() -> Path:
    """The `tap-cube` executable of this project's virtual environment."""
    exe = Path(sysconfig.get_path("scripts")) / "tap-cube"
    if not exe.exists():
        sys.exit(f"{exe} not found: run `uv sync` first")
    return exe


def write_config(
    path: Path, url: str, assignment_ids: Sequence[int] = ASSIGNMENT_IDS, **settings: object
) -> Path:
    """A tap-cube config for the simulator at `url`, with further `settings`."""
    config = {"api_url": url, "auth_token": TOKEN, "assignment_ids": list(assignment_ids)}
    path.write_text(json.dumps({**config, **settings}))
    return path


def discover_catalog(tap: Path, config: Path, path: Path) -> Path:
    """A catalog of the tap's streams with only customers selected, written to `path`."""
    found = subprocess.run(  # noqa: S603  # argv built here
        [str(tap), "--config", str(config), "--discover"],
        cwd=ROOT,
        env=base_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        sys.exit(f"tap-cube --discover failed:\n{found.stderr.decode(errors='replace')}")
    catalog = json.loads(found.stdout)
    names = {stream["tap_stream_id"] for stream in catalog["streams"]}
    if STREAM not in names:
        sys.exit(f"tap-cube discovered no {STREAM!r} stream, only {sorted(names)}")
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] == STREAM
    path.write_text(json.dumps(catalog))
    return path


def sync_argv(tap: Path, config: Path, catalog: Path, state: Path | None = None) -> list[str]:
    """The argv of a sync from `catalog`, from `state` if given."""
    argv = [str(tap), "--config", str(config), "--catalog", str(catalog)]
    return argv if state is None else [*argv, "--state", str(state)]
