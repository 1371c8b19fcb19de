"""TLS: a server given a certificate and key serves only TLS, and the client can trust it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from contentgen_service.client import ClientConfig, ContentGenClient, GenerationParams
from contentgen_service.client_errors import ContentGenUnavailable

pytestmark = pytest.mark.slow


@pytest.fixture
def certificate(tmp_path):
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to create a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=contentgen.test",
            "-addext",
            "subjectAltName=DNS:contentgen.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_a_client_trusting_the_certificate_gets_answers_over_tls(start_server, certificate, token, wait_until):
    cert, key = certificate
    server = start_server(tls_cert=cert, tls_key=key, wait=False)
    client = ContentGenClient(
        ClientConfig(
            target=server.target,
            token=token,
            tls_ca_file=cert,
            tls_server_name="contentgen.test",
        )
    )
    try:

        def answered() -> bool:
            try:
                return client.health() == "SERVING"
            except ContentGenUnavailable:
                return False

        wait_until(answered, what="the TLS server to answer")
        result = client.generate(GenerationParams(request_id="tls", user_id=1, prompt="The", max_tokens=4))
    finally:
        client.close()

    assert result.usage.completion_tokens == 4
    assert "(TLS," in server.log()


def test_a_plaintext_client_cannot_talk_to_a_tls_server(start_server, certificate, token, wait_until):
    cert, key = certificate
    server = start_server(tls_cert=cert, tls_key=key, wait=False)
    client = ContentGenClient(ClientConfig(target=server.target, token=token, max_attempts=1))
    try:
        wait_until(lambda: "serving contentgen.v1" in server.log(), what="the server to start")
        with pytest.raises(ContentGenUnavailable):
            client.generate(GenerationParams(request_id="plain", user_id=1, prompt="The", max_tokens=4), timeout=3)
    finally:
        client.close()
