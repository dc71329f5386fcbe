"""The README's settings table is the one `tap-cube --about --format=markdown` prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def about_settings_table() -> str:
    about = subprocess.run(
        [str(Path(sys.executable).with_name("tap-cube")), "--about", "--format=markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"## Settings\n\n(.*?)\n\n", about, re.DOTALL)
    assert match, about
    return match.group(1).strip()


def test_readme_settings_table_matches_about():
    table = about_settings_table()
    text = README.read_text(encoding="utf-8")
    before, rest = text.split(START, 1)
    current, after = rest.split(END, 1)
    if os.environ.get("UPDATE_README") == "1":
        README.write_text(f"{before}{START}\n{table}\n{END}{after}", encoding="utf-8")
        current = f"\n{table}\n"
    assert current.strip() == table, (
        "README settings table is out of date; regenerate it with "
        "UPDATE_README=1 uv run pytest tests/test_readme.py"
    )


def meltano_yml_tap() -> dict:
    """The tap-cube entry of the project's meltano.yml."""
    import yaml

    project = yaml.safe_load((README.parent / "meltano.yml").read_text(encoding="utf-8"))
    return next(p for p in project["plugins"]["extractors"] if p["name"] == "tap-cube")


def plugin_definition() -> dict:
    """The plugin definition that other Meltano projects add (`meltano add --from-ref`)."""
    import yaml

    definition: dict = yaml.safe_load((README.parent / "hub" / "tap-cube.yml").read_text("utf-8"))
    return definition


@pytest.mark.parametrize("plugin", [meltano_yml_tap, plugin_definition], ids=lambda f: f.__name__)
def test_meltano_plugin_declares_every_setting_and_marks_secrets(plugin):
    """Meltano drops environment variables of undeclared settings without a word."""
    import json

    declared = {setting["name"]: setting for setting in plugin()["settings"]}
    about = json.loads(
        subprocess.run(
            [str(Path(sys.executable).with_name("tap-cube")), "--about", "--format=json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    sdk_builtin = ("stream_map", "faker_config", "flattening_", "batch_config")
    settings = about["settings"]["properties"]
    assert {name for name in declared if not name.startswith(sdk_builtin)} == {
        name for name in settings if not name.startswith(sdk_builtin)
    }
    for name, setting in settings.items():
        if name in declared:
            assert bool(declared[name].get("sensitive")) == bool(setting.get("secret")), name


def test_meltano_yml_declares_every_loader_setting_it_sets():
    """A loader setting set in meltano.yml but not declared cannot be overridden from the
    environment (TARGET_POSTGRES_<NAME>): Meltano ignores the variable without a word."""
    import yaml

    project = yaml.safe_load((README.parent / "meltano.yml").read_text(encoding="utf-8"))
    for loader in project["plugins"]["loaders"]:
        declared = {setting["name"] for setting in loader.get("settings", [])}
        assert set(loader.get("config", {})) <= declared, loader["name"]
