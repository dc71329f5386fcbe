"""hub/tap-cube.yml: the plugin definition another Meltano project adds with `--from-ref`.

The quick tests keep it equal to the project's meltano.yml, whose settings of the tap say
what its schema says (label, description and default; regenerate both with
`UPDATE_PLUGIN_SETTINGS=1 uv run pytest tests/test_plugin_definition.py`); the slow one
adds it to a brand-new `meltano init` project, installs the tap from this checkout and
runs `meltano run tap-cube target-jsonl`.
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
from importlib import metadata

import pytest
import yaml
from meltano.core.plugin.base import PluginDefinition, PluginType

from cube_simulator import demo_assignments
from tests.meltano_support import (
    FOREIGN_PREFIXES,
    INSTALL_TIMEOUT,
    MELTANO,
    REPO,
    RUN_TIMEOUT,
    SIM_TOKEN,
    tail,
)
from tests.test_readme import meltano_yml_tap, plugin_definition
from tests.test_settings import PROPERTIES

if t.TYPE_CHECKING:
    from pathlib import Path

DEFINITION = REPO / "hub" / "tap-cube.yml"
#: Every setting of the definition says all four, as Meltano Hub's definitions do.
SETTING_KEYS = ("name", "kind", "label", "description", "sensitive")


#: How Meltano is told each JSON type. A number is an integer: Meltano 4.4.1 fails on a
#: decimal given as an environment variable, so a fraction goes in config instead.
MELTANO_KINDS = {
    "string": "string",
    "integer": "integer",
    "number": "integer",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
}
#: The lines around the tap's own settings in meltano.yml and hub/tap-cube.yml, which
#: UPDATE_PLUGIN_SETTINGS=1 rewrites; the SDK's built-in settings follow them.
GENERATED_START = (
    "# The tap's own settings, as its schema says them (tests/test_plugin_definition.py)."
)
GENERATED_END = "# The SDK's built-in settings."


def meltano_setting(name: str, prop: dict[str, t.Any]) -> dict[str, t.Any]:
    """A setting of the tap as Meltano is told it: the schema's title, description and
    default."""
    kind = next(kind for kind in prop["type"] if kind != "null")
    description = prop["description"]
    if "default" in prop:
        description += f" Default: {default_text(prop['default'])}."
    entry = {
        "name": name,
        "kind": "date_iso8601" if prop.get("format") == "date" else MELTANO_KINDS[kind],
        "label": prop["title"],
        "description": description,
    }
    return {**entry, "sensitive": True} if prop.get("secret") else entry


def default_text(default: object) -> str:
    """A default as a user writes it; the user agent's without the version it names."""
    if isinstance(default, bool):
        return json.dumps(default)
    return str(default).replace(metadata.version("tap-cube"), "<version>")


def rewrite_settings(path: Path, entries: list[dict[str, t.Any]], indent: str) -> None:
    """Replace the tap's own settings in a plugin file, between the generated lines."""
    text = path.read_text(encoding="utf-8")
    before, rest = text.split(f"{indent}{GENERATED_START}\n", 1)
    _, after = rest.split(f"{indent}{GENERATED_END}\n", 1)
    dumped = yaml.safe_dump(entries, sort_keys=False, allow_unicode=True, width=92)
    block = "".join(f"{indent}{line}\n" for line in dumped.splitlines())
    path.write_text(
        f"{before}{indent}{GENERATED_START}\n{block}{indent}{GENERATED_END}\n{after}",
        encoding="utf-8",
    )


def test_meltano_yml_says_of_each_setting_what_the_schema_says():
    expected = [meltano_setting(name, prop) for name, prop in PROPERTIES.items()]
    if os.environ.get("UPDATE_PLUGIN_SETTINGS") == "1":
        rewrite_settings(REPO / "meltano.yml", expected, "    ")
        hub = [{key: entry.get(key, False) for key in SETTING_KEYS} for entry in expected]
        rewrite_settings(DEFINITION, hub, "")
    declared = [s for s in meltano_yml_tap()["settings"] if s["name"] in PROPERTIES]
    assert declared == expected, (
        "meltano.yml's settings of the tap differ from its schema; regenerate them with "
        "UPDATE_PLUGIN_SETTINGS=1 uv run pytest tests/test_plugin_definition.py"
    )


def test_definition_settings_are_those_of_meltano_yml():
    project = meltano_yml_tap()["settings"]
    definition = plugin_definition()["settings"]
    assert [s["name"] for s in definition] == [s["name"] for s in project]
    for ours, theirs in zip(project, definition, strict=True):
        assert tuple(theirs) == SETTING_KEYS, theirs["name"]
        assert theirs == {key: ours.get(key, False) for key in SETTING_KEYS}, theirs["name"]


def test_definition_runs_the_tap_as_meltano_yml_does():
    project, definition = meltano_yml_tap(), plugin_definition()
    for key in ("name", "namespace", "executable", "capabilities"):
        assert definition[key] == project[key], key


def test_definition_parses_as_a_meltano_extractor():
    definition = PluginDefinition.parse(
        {"plugin_type": PluginType.EXTRACTORS, **plugin_definition()}
    )
    assert definition.name == "tap-cube"
    assert definition.variants[0].pip_url.startswith("git+https://")


def test_settings_groups_are_the_two_ways_to_sign_in():
    """Each group is a complete configuration: the required api_url and one credential."""
    names = {s["name"] for s in plugin_definition()["settings"]}
    groups = plugin_definition()["settings_group_validation"]
    assert groups == [["api_url", "auth_token"], ["api_url", "username", "password"]]
    assert all(set(group) <= names for group in groups)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: none of a developer's own Meltano or tap settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    env.update(MELTANO_CLI_DISABLE_VERSION_CHECK="true", MELTANO_SEND_ANONYMOUS_USAGE_STATS="false")
    env.update(extra)
    return env


def meltano(project: Path, *args: str, env: dict[str, str], timeout: float = RUN_TIMEOUT) -> str:
    log = project.parent / f"{args[0]}.log"
    with log.open("ab") as out:
        done = subprocess.run(
            [str(MELTANO), *args],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    assert done.returncode == 0, f"meltano {' '.join(args)} failed:\n{tail(log)}"
    return log.read_text(encoding="utf-8", errors="replace")


def loader_definition(name: str) -> dict:
    """A loader of this project's meltano.yml as a definition of its own (PyPI, no Hub)."""
    project = yaml.safe_load((REPO / "meltano.yml").read_text(encoding="utf-8"))
    loader = next(p for p in project["plugins"]["loaders"] if p["name"] == name)
    return {key: value for key, value in loader.items() if key != "config"}


@pytest.mark.slow
def test_definition_adds_installs_and_runs_in_a_new_project(simulator, tmp_path):
    sim = simulator(demo_assignments(), token=SIM_TOKEN)
    env = clean_env()
    meltano(tmp_path, "init", "--no_usage_stats", "project", env=env)
    project = tmp_path / "project"

    # As the README says: the definition, its pip_url pointed at a checkout.
    mine = {**plugin_definition(), "pip_url": str(REPO)}
    (tmp_path / "tap-cube.yml").write_text(yaml.safe_dump(mine), encoding="utf-8")
    (tmp_path / "target-jsonl.yml").write_text(
        yaml.safe_dump(loader_definition("target-jsonl")), encoding="utf-8"
    )
    meltano(project, "add", "--no-install", "--from-ref", "../tap-cube.yml", "tap-cube", env=env)
    meltano(
        project, "add", "--no-install", "--from-ref", "../target-jsonl.yml", "target-jsonl", env=env
    )
    added = yaml.safe_load((project / "meltano.yml").read_text(encoding="utf-8"))
    # `meltano add extractor tap-cube --from-ref …` would add a utility named tap-cube too.
    assert set(added["plugins"]) == {"extractors", "loaders"}
    assert [p["name"] for p in added["plugins"]["extractors"]] == ["tap-cube"]

    meltano(project, "install", env=env, timeout=INSTALL_TIMEOUT)
    output = tmp_path / "jsonl"
    log = meltano(
        project,
        "run",
        "tap-cube",
        "target-jsonl",
        env=clean_env(
            TAP_CUBE_API_URL=sim.url,
            TAP_CUBE_AUTH_TOKEN=SIM_TOKEN,
            TAP_CUBE_ASSIGNMENT_IDS="[101, 202]",
            TARGET_JSONL_DESTINATION_PATH=str(output),
            TARGET_JSONL_DO_TIMESTAMP_FILE="false",
        ),
    )
    assert SIM_TOKEN not in log
    customers = [
        json.loads(line)
        for line in (output / "customers.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    served = {(a, str(c["crm__customer_id"])) for a in (101, 202) for c in sim.customers(a)}
    assert {(c["assignment_id"], str(c["crm__customer_id"])) for c in customers} == served
    assert len(customers) == len(served)


def test_capabilities_are_those_the_tap_reports():
    """What Meltano is told the tap can do is what `tap-cube --about` says, no more."""
    about = subprocess.run(
        [str(MELTANO.with_name("tap-cube")), "--about", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    reported = json.loads(about)["capabilities"]
    assert sorted(meltano_yml_tap()["capabilities"]) == sorted(reported)
    # ACTIVATE_VERSION is honoured after a whole send (docs/deletions.md).
    assert "activate-version" in reported
    assert "test" in reported
