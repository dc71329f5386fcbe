"""TLS: an unverifiable certificate is named as such, at once, and never retried or ignored."""

from __future__ import annotations

import ssl

import pytest
import trustme

from tests.conftest import assert_no_secrets, config_for, plain_assignment, run_tap


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_simulator(simulator, authority):
    def start(**kwargs):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        authority.issue_cert("127.0.0.1").configure_cert(context)
        return simulator([plain_assignment(7, 700)], tls=context, **kwargs)

    return start


def test_self_signed_certificate_fails_at_once_naming_ca_bundle(tls_simulator, tmp_path):
    sim = tls_simulator()
    assert sim.url.startswith("https://")
    run = run_tap(config_for(sim, [7], max_retry_wait=5), tmp_path)
    assert run.returncode == 1
    last = run.last_stderr_line
    assert last.startswith("tap-cube: error: the TLS certificate of 127.0.0.1:")
    assert "could not be verified" in last
    assert "ca_bundle" in last
    assert "retry" not in run.stderr
    assert "Traceback" not in run.stderr
    assert_no_secrets(run.stdout, run.stderr)


def test_ca_bundle_with_the_authority_is_trusted(tls_simulator, authority, tmp_path):
    sim = tls_simulator()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    run = run_tap(config_for(sim, [7], ca_bundle=str(bundle)), tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(run.records()) == 700


def test_ca_bundle_that_is_not_pem_is_a_config_error(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    config = {
        "api_url": "https://acme.headshed.com/api/v1",
        "auth_token": "x" * 20,
        "assignment_ids": [1],
        "ca_bundle": str(bundle),
    }
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    assert "ca_bundle" in run.last_stderr_line
    assert "holds no PEM certificate" in run.last_stderr_line
