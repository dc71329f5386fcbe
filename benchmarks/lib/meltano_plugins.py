"""Meltano's side of the pipelines into PostgreSQL: its environment, the plugins it
installs into `benchmarks/.meltano/` (untimed, compiled to bytecode so that no timed run
compiles them), their versions, and the loader settings meltano.yml gives
target-postgres.

Both pipelines use the executables that `meltano install` put in `benchmarks/.meltano/`,
so the tap, the loader and their versions are the same: what differs is Meltano and the
loader's settings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lib.common import BENCHMARKS, ROOT, base_env, progress, tail_lines

MELTANO_HOME = BENCHMARKS / ".meltano"  # the plugins, installed once (ignored by git)
MELTANO = Path(sys.executable).with_name("meltano")
#: The loader settings that change its speed, shown in the report.
SPEED_SETTINGS = ("use_copy", "validate_records", "batch_size_rows")


def meltano_env(extra: dict[str, str]) -> dict[str, str]:
    env = base_env()
    env.update(
        MELTANO_PROJECT_ROOT=str(ROOT),
        MELTANO_SYS_DIR_ROOT=str(MELTANO_HOME),
        MELTANO_ENVIRONMENT="simulator",
        MELTANO_CLI_LOG_LEVEL="info",
    )
    env.update(extra)
    return env


def install_plugins(workdir: Path) -> None:
    """`meltano install` into benchmarks/.meltano; cheap when the plugins are there."""
    if not MELTANO.exists():
        sys.exit(f"{MELTANO} not found: run `uv sync` first (meltano is in the dev group)")
    progress(f"meltano install into {MELTANO_HOME} (untimed)")
    log = workdir / "install.log"
    with log.open("wb") as out:
        done = subprocess.run(  # noqa: S603  # argv built here
            [str(MELTANO), "install"],
            cwd=ROOT,
            env=meltano_env({}),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        sys.exit("meltano install failed:\n" + "\n".join(tail_lines(log, 30)))
    # The installers write no bytecode; compiled now (a no-op once done), it does not
    # fall on whichever timed run happens to be the first.
    pythons = [plugin_python("extractors", "tap-cube"), plugin_python("loaders", "target-postgres")]
    for python in [*pythons, Path(sys.executable)]:
        subprocess.run(  # noqa: S603  # argv built here
            [str(python), "-m", "compileall", "-q", "-j", "0", str(python.parent.parent / "lib")],
            env=base_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )


def plugin_python(kind: str, name: str) -> Path:
    return MELTANO_HOME / kind / name / "venv" / "bin" / "python"


def plugin_executable(kind: str, name: str) -> Path:
    return MELTANO_HOME / kind / name / "venv" / "bin" / name


def plugin_version(kind: str, name: str, package: str) -> str:
    python = plugin_python(kind, name)
    found = subprocess.run(  # noqa: S603  # argv built here
        [
            str(python),
            "-c",
            f"from importlib import metadata; print(metadata.version({package!r}))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or "?"


def loader_settings(overrides: dict[str, str], workdir: Path) -> dict[str, object]:
    """The speed settings meltano.yml (with --set) gives target-postgres."""
    env = meltano_env({f"TARGET_POSTGRES_{k.upper()}": v for k, v in overrides.items()})
    env["MELTANO_CLI_LOG_LEVEL"] = "warning"
    found = subprocess.run(  # noqa: S603  # argv built here
        [str(MELTANO), "config", "print", "target-postgres"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        (workdir / "config.log").write_text(found.stderr)
        sys.exit(f"meltano config print target-postgres failed:\n{found.stderr[-2000:]}")
    config = json.loads(found.stdout)
    return {key: config[key] for key in SPEED_SETTINGS if config.get(key) is not None}


def describe_settings(settings: dict[str, object]) -> str:
    shown = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    return ", ".join(shown) or "the loader's defaults"
