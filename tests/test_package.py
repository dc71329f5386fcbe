"""What the built package holds: the wheel and the sdist as `uv build` writes them.

By default the test builds both from this checkout; CI's package job builds them once and
passes their directory in TAP_CUBE_DIST_DIR, so that what is checked is what would ship.
"""

from __future__ import annotations

import email
import os
import subprocess
import tarfile
import typing as t
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("TAP_CUBE_DIST_DIR")
    if given:
        return Path(given)
    # `uv run` names its own executable in UV; scripts/test and CI run the tests that way.
    uv = os.environ.get("UV") or "uv"
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [uv, "build", "--quiet", "--out-dir", str(out), str(REPO)], check=True, timeout=300
    )
    return out


def only(paths: t.Iterable[Path]) -> Path:
    found = list(paths)
    assert len(found) == 1, found
    return found[0]


def tracked_package_files() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "tap_cube"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name for name in listed if name.endswith((".py", "py.typed"))}


def ci_python_versions() -> list[str]:
    workflow = yaml.safe_load((REPO / ".github/workflows/test.yml").read_text(encoding="utf-8"))
    versions: list[str] = workflow["jobs"]["test"]["strategy"]["matrix"]["python-version"]
    return versions


def test_wheel_holds_the_package_typed_and_nothing_else(dist):
    with zipfile.ZipFile(only(dist.glob("*.whl"))) as wheel:
        names = set(wheel.namelist())
    package = {name for name in names if not name.startswith("tap_cube-")}
    assert "tap_cube/py.typed" in package  # mypy reads the tap's annotations only with it
    assert package == tracked_package_files()  # no tests, benchmarks or stray files
    assert {name.split("/", 1)[0] for name in names} == {"tap_cube", "tap_cube-0.1.0.dist-info"}
    assert not [name for name in names if "simulator" in name]  # the fake Cube stays in the repo


def test_wheel_metadata_says_what_the_package_is(dist):
    with zipfile.ZipFile(only(dist.glob("*.whl"))) as wheel:
        metadata = email.message_from_bytes(wheel.read("tap_cube-0.1.0.dist-info/METADATA"))
        entry_points = wheel.read("tap_cube-0.1.0.dist-info/entry_points.txt").decode()
    classifiers = set(metadata.get_all("Classifier") or [])
    assert "Typing :: Typed" in classifiers
    assert metadata["License-Expression"] == "Apache-2.0"
    # The Python versions claimed are the ones CI tests, no more and no fewer.
    claimed = {c.rsplit(" ", 1)[1] for c in classifiers if c.startswith("Programming Language")}
    assert claimed - {"3", "Only"} == set(ci_python_versions())
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert {"Repository", "Documentation", "Issues"} <= set(urls)
    assert "tap-cube = tap_cube.cli:main" in entry_points


def test_sdist_builds_the_same_package(dist):
    with tarfile.open(only(dist.glob("*.tar.gz"))) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert tracked_package_files() <= names
    assert {"LICENSE", "README.md", "pyproject.toml", "hub/tap-cube.yml"} <= names
