"""Bad input ends a run with one clear line, a non-zero exit and no secret in sight."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cube_simulator import Assignment
from tests.conftest import (
    PASSWORD,
    TOKEN,
    USERNAME,
    assert_no_secrets,
    config_for,
    plain_assignment,
    run_tap,
)


def assert_fails_with(run, *fragments: str) -> None:
    assert run.returncode != 0
    last = run.last_stderr_line
    assert last.startswith("tap-cube: error: "), run.stderr
    for fragment in fragments:
        assert fragment in last, last
    assert "Traceback" not in run.stderr
    assert_no_secrets(run.stdout, run.stderr)


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"auth_token": None}, ["no credentials: set auth_token, or username and password"]),
        ({"auth_token": None, "username": USERNAME}, ["password is missing"]),
        ({"auth_token": None, "password": PASSWORD}, ["username is missing"]),
        ({"username": USERNAME, "password": PASSWORD}, ["not both"]),
        ({"api_url": "http://acme.headshed.com/api/v1"}, ["api_url must use https://"]),
        ({"api_url": f"https://x:{PASSWORD}@acme.headshed.com/api/v1"}, ["user name or password"]),
        ({"api_url": None}, ["api_url"]),
        (
            {"assignment_ids": [], "discover_crms": False},
            ["nothing to extract", "assignment_ids", "crms", "discover_crms"],
        ),
        (
            {"crms": [{"data_owner_id": 3, "crm_type": "B2C"}], "discover_crms": True},
            ["set crms or discover_crms, not both"],
        ),
        ({"crms": [{"data_owner_id": 3, "crm_type": "B2X"}]}, ["crm_type"]),
        ({"assignment_ids": ["seven"]}, ["assignment_ids"]),
        ({"assignment_ids": None, "discover_crms": False}, ["nothing to extract"]),
        ({"max_concurrent_requests": 0}, ["max_concurrent_requests must be at least 1"]),
        ({"request_timeout": 0.0}, ["request_timeout must be greater than 0"]),
        ({"max_retry_wait": -1.5}, ["max_retry_wait must not be negative"]),
        ({"ca_bundle": "/nonexistent/ca.pem"}, ["ca_bundle", "not a readable file"]),
    ],
)
@pytest.mark.parametrize("mode", [(), ("--discover",)], ids=["sync", "discover"])
def test_invalid_config(tmp_path, overrides, fragments, mode):
    config = {
        "api_url": "https://acme.headshed.com/api/v1",
        "auth_token": TOKEN,
        "assignment_ids": [1],
    }
    config.update(overrides)
    config = {k: v for k, v in config.items() if v is not None}
    run = run_tap(config, tmp_path, *mode)
    assert_fails_with(run, "invalid configuration", *fragments)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/api/v1", "http://localhost:9/api/v1", "http://[::1]:9/api/v1"]
)
def test_loopback_may_use_http(tmp_path, url):
    config = {"api_url": url, "auth_token": TOKEN, "assignment_ids": [1], "max_retries": 0}
    run = run_tap(config, tmp_path)
    # valid config: it fails on the connection, not on validation
    assert "invalid configuration" not in run.stderr
    assert_fails_with(run, "giving up")


def test_wrong_token(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 10)])
    run = run_tap(config_for(sim, [7], auth_token="wrong-" + TOKEN), tmp_path)
    assert_fails_with(run, "authentication failed", "token authentication (auth_token)", "401")
    assert "wrong-" not in run.stderr


def test_wrong_password(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 10)])
    config = config_for(sim, [7], auth_token=None, username=USERNAME, password=PASSWORD + "x")
    run = run_tap(config, tmp_path)
    assert_fails_with(run, "authentication failed", "HTTP Basic", "401")
    assert PASSWORD + "x" not in run.stderr


def test_forbidden_assignment(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 10), Assignment(id=8, count=5, access="forbidden")])
    run = run_tap(config_for(sim, [7, 8]), tmp_path)
    assert_fails_with(run, "assignment 8 is not accessible to this user", "403")


def test_unknown_assignment(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 10)])
    run = run_tap(config_for(sim, [7, 99]), tmp_path)
    assert_fails_with(run, "assignment 99 not found", "404", "assignment_ids")


def test_other_client_error_names_status_and_detail(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1200)])
    sim.fail_next("/customers/?page=2", 400, json.dumps({"detail": "Ugyldig forespørsel."}))
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert_fails_with(run, "assignment 7", "400", "Ugyldig forespørsel.")


def test_retries_exhausted(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1200)])
    sim.fail_next(
        "/customers/?page=2", 503, "<html><body>Service Unavailable</body></html>", times=10
    )
    run = run_tap(config_for(sim, [7], max_retries=3, max_concurrent_requests=1), tmp_path)
    assert_fails_with(run, "giving up", "after 4 tries", "503")
    page2 = [r for r in sim.requests if r.query == "page=2" and r.path.endswith("/7/customers/")]
    assert len(page2) == 4


def test_server_garbage_is_retried_then_reported(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1200)])
    sim.fail_next("/customers/?page=2", 200, "<html>not json</html>", times=10)
    run = run_tap(config_for(sim, [7], max_retries=2, max_concurrent_requests=1), tmp_path)
    assert_fails_with(run, "giving up", "invalid JSON")


def test_pagination_loop_is_stopped(simulator, tmp_path):
    # Page 2 links to itself on every read: the tap reads on by page number instead of
    # looping, and since page 2 stays short the count never adds up: one line.
    sim = simulator([plain_assignment(7, 1500)])
    looping = {
        "count": 1500,
        "next": "http://elsewhere/api/v1/assignments/7/customers/?page=2",
        "previous": None,
        "results": [{"crm__customer_id": "1"}],
    }
    sim.fail_next("/customers/?page=2", 200, json.dumps(looping), times=5)
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert_fails_with(run, "next links are unusable and reading on by page number did not")
    customers = [r.query for r in sim.requests if r.path.endswith("/7/customers/")]
    assert customers.count("page=2") == 4  # once per read: no loop


def test_unexpected_error_is_one_line_with_hint(simulator, tmp_path):
    """Even an error nobody foresaw ends with one line; the traceback waits for DEBUG."""
    sim = simulator([plain_assignment(7, 10)])
    config = config_for(sim, [7])
    catalog = tmp_path / "catalog.json"
    # A catalog of the right shape whose property type is no JSON schema type.
    odd = {
        "tap_stream_id": "customers",
        "schema": {"properties": {"crm__customer_id": {"type": 5}}},
    }
    catalog.write_text(json.dumps({"streams": [odd]}))
    run = run_tap(config, tmp_path, "--catalog", str(catalog))
    assert run.returncode != 0
    assert run.last_stderr_line.startswith("tap-cube: error: ")
    assert "Traceback" not in run.stderr
    debug = run_tap(config, tmp_path, "--catalog", str(catalog), env={"TAP_CUBE_LOGLEVEL": "DEBUG"})
    assert "Traceback" in debug.stderr
    assert debug.last_stderr_line.startswith("tap-cube: error: ")


def test_rows_that_are_not_objects_are_retried_then_reported(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1200)])
    garbage = {"count": 1200, "next": None, "previous": None, "results": ["x", 1]}
    sim.fail_next("/customers/?page=2", 200, json.dumps(garbage), times=10)
    run = run_tap(config_for(sim, [7], max_retries=1, max_concurrent_requests=1), tmp_path)
    assert_fails_with(run, "giving up", "not all JSON objects")


def test_record_without_customer_id_stops_the_run(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1200)])
    rows = sim.customers(7)[500:1000]
    rows[3] = {k: v for k, v in rows[3].items() if k != "crm__customer_id"}
    page = {"count": 1200, "next": None, "previous": None, "results": rows}
    sim.fail_next("/customers/?page=2", 200, json.dumps(page))
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert_fails_with(run, "assignment 7", "a record without crm__customer_id")


@pytest.mark.parametrize(
    ("option", "content", "fragments"),
    [
        ("--config", "{bad", ["--config", "is not valid JSON", "line 1 column 2"]),
        ("--config", "[1, 2]", ["--config", "must hold a JSON object of settings"]),
        ("--state", "{bad", ["--state", "is not valid JSON"]),
        ("--state", '"done"', ["--state", "must hold a JSON object"]),
        ("--catalog", "[]", ["--catalog", 'must hold a JSON object with a "streams" list']),
        ("--catalog", "\xff", ["--catalog", "is not UTF-8 text"]),
    ],
)
def test_input_files_that_are_not_what_they_should_be(tmp_path, option, content, fragments):
    config = {
        "api_url": "https://acme.headshed.com/api/v1",
        "auth_token": TOKEN,
        "assignment_ids": [1],
    }
    bad = tmp_path / "input.json"
    bad.write_text(content, encoding="latin-1")
    if option == "--config":
        run = run_tap(config, tmp_path, "--config", str(bad))
    else:
        run = run_tap(config, tmp_path, f"{option}={bad}")
    assert_fails_with(run, str(bad), *fragments)
    assert "unexpected" not in run.last_stderr_line


def test_invalid_start_date_names_the_setting(tmp_path):
    config: dict[str, object] = {"api_url": "https://acme.headshed.com/api/v1"}
    config |= {"auth_token": TOKEN, "assignment_ids": [1], "start_date": "2024-13-45"}
    run = run_tap(config, tmp_path)
    assert_fails_with(run, "start_date '2024-13-45' is not a date; use YYYY-MM-DD")


@pytest.mark.parametrize("zone", ["Europe/Olso", "../etc/passwd", "", "+01:00"])
def test_unknown_timezone_names_the_setting(tmp_path, zone):
    config: dict[str, object] = {"api_url": "https://acme.headshed.com/api/v1"}
    config |= {"auth_token": TOKEN, "assignment_ids": [1], "timezone": zone}
    run = run_tap(config, tmp_path)
    assert_fails_with(run, f"timezone {zone!r} is not a known IANA time zone")


def test_array_setting_from_the_environment_shows_the_accepted_form(tmp_path):
    config = {"api_url": "https://acme.headshed.com/api/v1", "auth_token": TOKEN}
    run = run_tap(config, tmp_path, "--config", "ENV", env={"TAP_CUBE_ASSIGNMENT_IDS": "1,2"})
    assert_fails_with(
        run, "TAP_CUBE_ASSIGNMENT_IDS='1,2' is not a JSON array", "TAP_CUBE_ASSIGNMENT_IDS='[1, 2]'"
    )


def test_too_many_concurrent_requests_is_refused(tmp_path):
    config: dict[str, object] = {"api_url": "https://acme.headshed.com/api/v1"}
    config |= {"auth_token": TOKEN, "assignment_ids": [1], "max_concurrent_requests": 1000}
    run = run_tap(config, tmp_path)
    assert_fails_with(run, "max_concurrent_requests must be at most 32")


def test_misspelt_setting_is_named_with_the_closest_one(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 5)])
    run = run_tap(config_for(sim, [7], max_retrys=3), tmp_path)
    assert run.returncode == 0, run.stderr
    assert "unknown setting 'max_retrys' is ignored; did you mean 'max_retries'?" in run.stderr


def test_selected_stream_that_is_not_offered_is_named(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 5)])
    catalog = {
        "streams": [
            {
                "tap_stream_id": "crm_customers",
                "stream": "crm_customers",
                "schema": {"type": "object", "properties": {}},
                "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}],
            }
        ]
    }
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(catalog))
    run = run_tap(config_for(sim, [7]), tmp_path, "--catalog", str(catalog_file))
    assert run.returncode == 0, run.stderr
    assert "stream 'crm_customers' is selected but this configuration does not offer it" in (
        run.stderr
    )
    assert "it needs crms" in run.stderr


def test_redirect_message_names_the_port(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 5)])
    sim.fail_next("/customers/", 302, headers={"Location": "https://elsewhere.example:8443/x"})
    sim.fail_next(
        "/crm_custom_fields/", 302, headers={"Location": "https://elsewhere.example:8443/x"}
    )
    run = run_tap(config_for(sim, [7]), tmp_path)
    assert_fails_with(run, "https://elsewhere.example:8443")


@pytest.mark.parametrize("outcome", ["fails", "succeeds"])
def test_discovery_given_a_state_file_leaves_no_file_open(simulator, tmp_path, outcome):
    """Meltano passes --state to discovery too; nothing may print after the last line."""
    sim = simulator([plain_assignment(7, 10)])
    if outcome == "fails":
        sim.fail_next("crm_custom_fields", 401, json.dumps({"detail": "Invalid token."}))
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"bookmarks": {}}))
    # Development mode shows every ResourceWarning, as Meltano's runs showed this one.
    run = run_tap(
        config_for(sim, [7], max_retries=0),
        tmp_path,
        "--state",
        str(state),
        "--discover",
        env={"PYTHONDEVMODE": "1"},
    )
    assert "ResourceWarning" not in run.stderr
    if outcome == "fails":
        assert_fails_with(run, "authentication failed")
    else:
        assert run.returncode == 0, run.stderr
        assert {s["tap_stream_id"] for s in json.loads(run.stdout)["streams"]} >= {"customers"}


@pytest.mark.parametrize("kind", ["directory", "missing"])
@pytest.mark.parametrize("option", ["--config", "--state", "--catalog"])
def test_input_file_that_cannot_be_read_is_named(tmp_path, option, kind):
    config: dict[str, object] = {"api_url": "https://acme.headshed.com/api/v1"}
    config |= {"auth_token": TOKEN, "assignment_ids": [1]}
    path = tmp_path / "inputs" if kind == "directory" else tmp_path / "nowhere.json"
    if kind == "directory":
        path.mkdir()
    run = run_tap(config, tmp_path, option, str(path))
    assert_fails_with(run, option, str(path), "cannot be read")
    assert "unexpected" not in run.last_stderr_line


@pytest.mark.parametrize(
    ("catalog", "where"),
    [
        ({"streams": [1]}, "streams[0]"),
        ({"streams": [{"tap_stream_id": "customers"}]}, "streams[0]"),
        ({"streams": [{"tap_stream_id": "customers", "schema": 5}]}, "streams[0].schema"),
        (
            {"streams": [{"tap_stream_id": "customers", "schema": {"type": "object"}}]},
            "streams[0].schema",
        ),
        (
            {
                "streams": [
                    {
                        "tap_stream_id": "customers",
                        "schema": {"properties": {}},
                        "metadata": 5,
                    }
                ]
            },
            "streams[0].metadata",
        ),
        (
            {
                "streams": [
                    {
                        "tap_stream_id": "customers",
                        "schema": {"properties": {"a": 5}},
                        "metadata": [],
                    }
                ]
            },
            "streams[0].schema.properties.a",
        ),
        (
            {
                "streams": [
                    {
                        "tap_stream_id": "customers",
                        "schema": {"properties": {}},
                        "metadata": [{"breadcrumb": "x", "metadata": {}}],
                    }
                ]
            },
            "streams[0].metadata[0].breadcrumb",
        ),
    ],
)
def test_catalog_of_the_wrong_shape_is_named(tmp_path, catalog, where):
    config: dict[str, object] = {"api_url": "https://acme.headshed.com/api/v1"}
    config |= {"auth_token": TOKEN, "assignment_ids": [1]}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    run = run_tap(config, tmp_path, "--catalog", str(path))
    assert_fails_with(run, f"--catalog {path}", where, "--discover")
    assert "unexpected" not in run.last_stderr_line


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        ({"bookmarks": 5}, '"bookmarks" must be a JSON object'),
        ({"bookmarks": []}, '"bookmarks" must be a JSON object'),
        ({"bookmarks": {"customers": 5}}, 'bookmarks of "customers" must be a JSON object'),
        ({"bookmarks": {"customers": "done"}}, 'bookmarks of "customers" must be a JSON object'),
    ],
)
def test_state_file_of_the_wrong_shape_is_named(tmp_path, state, fragment):
    config: dict[str, object] = {"api_url": "https://acme.headshed.com/api/v1"}
    config |= {"auth_token": TOKEN, "assignment_ids": [1]}
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    run = run_tap(config, tmp_path, "--state", str(path))
    assert_fails_with(run, f"--state {path}", fragment)
    assert "unexpected" not in run.last_stderr_line


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("call_outcomes_window_days", 10**8),
        ("call_outcomes_window_days", 10**20),
        ("call_outcomes_lookback_days", 10**8),
        ("request_timeout", 1e300),
        ("max_retry_wait", 1e300),
    ],
)
def test_huge_numbers_are_refused_naming_the_setting(simulator, tmp_path, setting, value):
    sim = simulator([plain_assignment(7, 5)])
    config = config_for(sim, [7], start_date="2024-01-01", campaign_ids=[1], **{setting: value})
    run = run_tap(config, tmp_path)
    assert_fails_with(run, "invalid configuration", f"{setting} must be at most")


def test_usage_error_is_one_line_with_the_documented_status(tmp_path):
    config = {"api_url": "https://acme.headshed.com/api/v1", "auth_token": TOKEN}
    run = run_tap(config, tmp_path, "--bogus")
    assert run.returncode == 2, run.stderr
    assert run.last_stderr_line.startswith("tap-cube: error: "), run.stderr
    assert "--bogus" in run.last_stderr_line
    assert "tap-cube --help" in run.last_stderr_line
    assert "Traceback" not in run.stderr


def test_readme_documents_the_status_of_a_usage_error():
    root = Path(__file__).parent.parent
    docs = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    text = next(d.read_text(encoding="utf-8") for d in docs if "| Exit status |" in d.read_text())
    table = text.split("| Exit status |", 1)[1].split("\n\n", 1)[0]
    assert "| 2 |" in table
    assert "command line" in table.split("| 2 |", 1)[1].split("\n", 1)[0]


@pytest.mark.parametrize("mode", [(), ("--discover",)], ids=["sync", "discover"])
def test_full_disk_on_output_is_one_line(simulator, tmp_path, mode):
    """ENOSPC on stdout (`> /dev/full`): one line last, non-zero, no traceback after it."""
    sim = simulator([plain_assignment(7, 600)])
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config_for(sim, [7])))
    command = [str(Path(sys.executable).with_name("tap-cube")), "--config", str(config_file)]
    with open("/dev/full", "w") as full:
        process = subprocess.run(
            [*command, *mode], stdout=full, stderr=subprocess.PIPE, text=True, check=False
        )
    last = process.stderr.strip().splitlines()[-1]
    assert process.returncode == 1, process.stderr
    assert last.startswith("tap-cube: error: writing the output failed (No space left on device)")
    assert "Traceback" not in process.stderr
    assert "unexpected" not in last


def test_closed_output_during_discovery_is_one_line(simulator, tmp_path):
    """`tap-cube --discover | head -c 10`: the catalog cannot be written whole."""
    sim = simulator([plain_assignment(7, 5)])
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config_for(sim, [7])))
    command = [str(Path(sys.executable).with_name("tap-cube")), "--config", str(config_file)]
    process = subprocess.Popen(
        [*command, "--discover"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    process.stdout.close()  # before the catalog is written, as `head -c 10` may be
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("tap-cube: error: the output was closed before the run ended")
    )
    assert "Traceback" not in err
