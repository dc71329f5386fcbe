"""Secrets stay secret in every form: raw, escaped, base64, and in every logger."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote, quote_plus

import pytest

from tap_cube.errors import SecretScrubber, install_scrubber, scrubber
from tests.conftest import (
    PASSWORD,
    TOKEN,
    USERNAME,
    assert_no_secrets,
    config_for,
    plain_assignment,
    run_tap,
)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("auth_token", TOKEN + "\n"),
        ("auth_token", " " + TOKEN),
        ("auth_token", TOKEN[:5] + "\t" + TOKEN[5:]),
        ("password", PASSWORD + "\r\n"),
        ("password", PASSWORD + " "),
        ("auth_token", TOKEN + "\u2603"),  # not latin-1: no HTTP header can carry it
    ],
)
def test_credentials_a_header_cannot_carry_are_refused(simulator, tmp_path, key, value):
    sim = simulator([plain_assignment(7, 5)])
    overrides = {key: value}
    if key == "password":
        overrides |= {"auth_token": None, "username": USERNAME}
    run = run_tap(config_for(sim, [7], **overrides), tmp_path)
    assert run.returncode == 1
    assert run.last_stderr_line.startswith("tap-cube: error: invalid configuration: " + key)
    assert_no_secrets(run.stdout, run.stderr)
    assert value.strip() not in run.stderr
    assert sim.requests == []


def test_server_echoing_basic_credentials_leaks_nothing(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 5)])
    header = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    echo = json.dumps({"detail": f"Bad request: Authorization was {header!r} ({PASSWORD!r})"})
    sim.fail_next("/customers/", 400, echo, times=5)
    sim.fail_next("/crm_custom_fields/", 400, echo, times=5)
    config = config_for(sim, [7], auth_token=None, username=USERNAME, password=PASSWORD)
    for level in ("INFO", "DEBUG"):
        run = run_tap(config, tmp_path, env={"TAP_CUBE_LOGLEVEL": level})
        assert run.returncode == 1
        assert "Bad request: Authorization was" in run.stderr
        assert_no_secrets(run.stdout, run.stderr)


def test_escaped_forms_are_scrubbed():
    secrets = SecretScrubber()
    secret = 'pw"\\ø\n'
    secrets.add(secret)
    for text in (secret, repr(secret), repr(secret.encode()), str(secret.encode())):
        assert "pw" not in secrets.scrub(f"value: {text}"), text


def test_loggers_and_handlers_made_later_are_scrubbed(capsys):
    install_scrubber()
    scrubber.add("later-secret-9931")
    logger = logging.getLogger("urllib3.test-later")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        logger.debug("header %s", "Token later-secret-9931")
        try:
            raise ValueError("later-secret-9931")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "Token ***" in err
    assert "later-secret-9931" not in err


ENCODABLE_TOKEN = "ab+c/d=e&f ü"


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: quote(s, safe=""),
        lambda s: quote(s, safe="").lower(),
        lambda s: quote(s),  # "/" left as is
        lambda s: quote_plus(s),
        lambda s: quote_plus(s).lower(),
        lambda s: quote(s, safe="", encoding="latin-1"),
        lambda s: "".join(f"%{byte:02x}" for byte in s.encode()),  # every byte, even letters
        lambda s: quote(quote(s, safe=""), safe=""),  # encoded twice
    ],
    ids=[
        "quote",
        "quote-lower",
        "quote-slash",
        "quote_plus",
        "plus-lower",
        "latin-1",
        "all",
        "twice",
    ],
)
def test_percent_encoded_forms_are_scrubbed(encode):
    secrets = SecretScrubber()
    secrets.add(ENCODABLE_TOKEN)
    encoded = encode(ENCODABLE_TOKEN)
    scrubbed = secrets.scrub(f"next link ?page=2&token={encoded}&x=1")
    assert scrubbed == "next link ?page=2&token=***&x=1", scrubbed


def test_token_in_a_next_link_is_scrubbed(simulator, tmp_path):
    """A server that echoes the token, percent-encoded, in a link the tap refuses."""
    token = "ab+c/d=e&f"
    sim = simulator([plain_assignment(7, 1500)], token=token)
    looping = {
        "count": 1500,
        "next": "http://elsewhere/api/v1/assignments/7/customers/?page=2&token="
        + quote(token, safe=""),
        "previous": None,
        "results": [{"crm__customer_id": "1"}],
    }
    sim.fail_next("/customers/?page=2", 200, json.dumps(looping), times=5)
    run = run_tap(config_for(sim, [7], auth_token=token, max_concurrent_requests=1), tmp_path)
    # The tap reads on by page number (the link is unusable) and says why, naming the link.
    assert "token=***" in run.stderr, run.stderr[-3000:]
    for form in (token, quote(token, safe=""), quote(token, safe="").lower()):
        assert form not in run.stderr


@pytest.mark.parametrize(
    ("key", "value"), [("auth_token", "a"), ("auth_token", "1234567"), ("password", "pw")]
)
def test_short_credentials_are_refused_naming_the_setting(tmp_path, key, value):
    """A one-letter secret would be scrubbed out of every word that contains it."""
    config = {"api_url": "https://acme.headshed.com/api/v1", "assignment_ids": [7]}
    if key == "password":
        config |= {"username": USERNAME, "password": value}
    else:
        config |= {"auth_token": value}
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    last = run.last_stderr_line
    assert last.startswith(f"tap-cube: error: invalid configuration: {key} is shorter than 8")
    assert "***" not in last  # nothing garbled
    assert f"'{value}'" not in last
