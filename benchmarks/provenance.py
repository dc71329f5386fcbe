"""What a report says its figures were taken with: the source's commit, and versions."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
from importlib import metadata

from common import ROOT


def source_fingerprint() -> str:
    """A hash of tap-cube's source, to notice it changing while the benchmark runs."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "tap_cube").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def source_state() -> str:
    """The commit tap-cube was measured at, and whether its source had local changes."""
    git = shutil.which("git")
    if git is None:
        return "unknown commit"
    head = subprocess.run(  # noqa: S603  # argv built here
        [git, "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(  # noqa: S603  # argv built here
        [git, "-C", str(ROOT), "status", "--porcelain", "--", "tap_cube", "pyproject.toml"],
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode != 0:
        return "unknown commit"
    changes = " + uncommitted changes to tap_cube/" if dirty.stdout.strip() else ""
    return f"commit {head.stdout.strip()}{changes}"


def version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"
